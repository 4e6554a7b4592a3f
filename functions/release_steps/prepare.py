"""Validate release request: parse the execution input, apply the stack's defaults, take the one-release lock."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import ClientError
from msgspec import ValidationError, structs

from release_steps import clients, config, lock
from release_steps.aws_errors import error_code, error_message, translate_throttling
from release_steps.config import EcsSettings, LockSettings, ReleaseSettings
from release_steps.ecs import EcsClient
from release_steps.errors import ConfigurationError, DeploymentInProgressError, InvalidInputError
from release_steps.messages import clip, describe_every_field, json_type
from release_steps.models import (
    ExecutionContext,
    PollSettings,
    PrepareEvent,
    ReleaseInput,
    ReleaseRequest,
    ReleaseState,
)
from release_steps.observability import logger, parse_event, step
from release_steps.preflight import preflight
from release_steps.timeutil import to_iso, utc_now

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_stepfunctions import SFNClient

STEP_NAME = "Validate release request"


@dataclass(frozen=True)
class ReleaseClients:
    """The AWS clients the first step uses beside ECS: the lock table's and Step Functions' (the holder's status)."""

    dynamodb: DynamoDBClient
    sfn: SFNClient


NAMES_LISTED = 10
NAME_MAX_CHARS = 80


def _names(names: list[str]) -> str:
    """Input-derived names for a message: each clipped, at most NAMES_LISTED of them."""
    shown = ", ".join(repr(clip(n, NAME_MAX_CHARS)) for n in names[:NAMES_LISTED])
    return shown + (f" and {len(names) - NAMES_LISTED} more" if len(names) > NAMES_LISTED else "")


def validate_request(raw_input: Any, settings: ReleaseSettings) -> ReleaseRequest:
    """The typed request with defaults applied; any problem is an ``InvalidInputError`` naming the field."""
    if not isinstance(raw_input, dict):
        raise InvalidInputError(
            'invalid execution input: expected a JSON object such as {"imageTag": "2026-11-23.4"}, '
            f"got {json_type(raw_input)}"
        )
    try:
        release_input = ReleaseInput.load(raw_input)
    except ValidationError as e:
        raise InvalidInputError(describe_every_field(ReleaseInput, raw_input, e, "execution input")) from e

    services = release_input.services if release_input.services is not None else list(settings.services)
    duplicates = sorted(name for name, count in Counter(services).items() if count > 1)
    if duplicates:
        raise InvalidInputError(f"invalid execution input: services: listed more than once: {_names(duplicates)}")
    unknown = [name for name in services if name not in settings.services]
    if unknown:
        raise InvalidInputError(
            f"invalid execution input: services: unknown service(s) {_names(unknown)}; "
            f"this stack releases: {', '.join(settings.services)}"
        )
    return ReleaseRequest(image_tag=release_input.image_tag, services=services, dry_run=release_input.dry_run)


def _status_of(sfn: SFNClient, holder: lock.LockHolder) -> str:
    """The holder's execution status for the refusal (``FAILED``, ``RUNNING`` ...); unknown if it cannot be read."""
    try:
        with translate_throttling("states:DescribeExecution"):
            described = sfn.describe_execution(executionArn=holder.execution_arn)
    except ClientError as e:
        return f"of unknown status ({error_code(e)})"
    status = str(described.get("status", "UNKNOWN"))
    redrive = described.get("redriveStatus")
    return f"{status}, redrive {redrive}" if status == "FAILED" and redrive else status


def take_release_lock(
    execution: ExecutionContext, request: ReleaseRequest, lock_table: str, dynamodb: DynamoDBClient, sfn: SFNClient
) -> None:
    """Take the one-release lock for this execution (again, if it holds it: a retry or a redrive of this step), or
    refuse with ``DeploymentInProgressError`` naming the holder and the two ways out."""
    holder = lock.LockHolder(
        execution_arn=execution.id,
        execution_name=execution.name,
        image_tag=request.image_tag,
        dry_run=request.dry_run,
        execution_start_time=execution.start_time,
        acquired_at=to_iso(utc_now()),
    )
    with translate_throttling("dynamodb:UpdateItem"):
        try:
            other = lock.acquire(dynamodb, lock_table, holder)
        except ClientError as e:
            if error_code(e) in {"ResourceNotFoundException", "AccessDeniedException", "ValidationException"}:
                raise ConfigurationError(
                    f"the release lock table {lock_table!r} (LOCK_TABLE_NAME) cannot be written: "
                    f"{error_code(e)}: {error_message(e)}"
                ) from e
            raise
    if other is not None:
        raise DeploymentInProgressError(lock.refusal(other, _status_of(sfn, other)))
    logger.info("release lock taken", extra={"lock_table": lock_table, "image_tag": request.image_tag})


def prepare(
    event: PrepareEvent,
    settings: ReleaseSettings,
    lock_settings: LockSettings,
    clients_for: ReleaseClients,
    ecs_settings: EcsSettings,
    ecs: EcsClient,
) -> ReleaseState:
    """Validate the request first (bad input touches nothing), take the one-release lock, then check that what the
    release will touch exists (preflight) before any step changes anything."""
    request = validate_request(event.input, settings)
    take_release_lock(event.execution, request, lock_settings.table_name, clients_for.dynamodb, clients_for.sfn)
    warnings = preflight(request, ecs_settings, ecs)
    if warnings:
        logger.warning("preflight warnings", extra={"warnings": warnings})
    return ReleaseState(
        request=structs.replace(request, warnings=warnings),
        execution=event.execution,
        poll=PollSettings(
            migration_seconds=settings.migration_poll_seconds, services_seconds=settings.services_poll_seconds
        ),
    )


@step(STEP_NAME)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Validate release request."""
    prepare_event = parse_event(PrepareEvent, event, "release step input")
    ecs_settings = config.ecs_settings()
    ecs = EcsClient(clients.ecs(), ecs_settings.cluster)
    aws = ReleaseClients(dynamodb=clients.dynamodb(), sfn=clients.stepfunctions())
    return prepare(prepare_event, config.release_settings(), config.lock_settings(), aws, ecs_settings, ecs).to_json()
