"""Validate release request: parse the execution input, apply the stack's defaults, never overlap another release."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import ClientError
from pydantic import ValidationError

from release_steps import clients, config
from release_steps.aws_errors import error_code, error_message, translate_throttling
from release_steps.config import EcsSettings, ReleaseSettings
from release_steps.ecs import EcsClient
from release_steps.errors import DeploymentInProgressError, InvalidInputError
from release_steps.messages import clip, describe_validation_error, json_type
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
from release_steps.timeutil import parse_iso, to_iso

if TYPE_CHECKING:
    from mypy_boto3_stepfunctions import SFNClient
    from mypy_boto3_stepfunctions.type_defs import ExecutionListItemTypeDef

STEP_NAME = "Validate release request"


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
        release_input = ReleaseInput.model_validate(raw_input)
    except ValidationError as e:
        raise InvalidInputError(describe_validation_error(e, "execution input")) from e

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


def _to_millis(moment: datetime) -> datetime:
    # Step Functions reports start times in milliseconds; compare at that precision so a tie is a tie.
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def _running_executions(execution: ExecutionContext, sfn: SFNClient) -> list[ExecutionListItemTypeDef]:
    running: list[ExecutionListItemTypeDef] = []
    with translate_throttling("states:ListExecutions"):
        try:
            paginator = sfn.get_paginator("list_executions")
            for page in paginator.paginate(stateMachineArn=execution.state_machine_arn, statusFilter="RUNNING"):
                running.extend(page.get("executions", []))
        except ClientError as e:
            if error_code(e) in {"StateMachineDoesNotExist", "InvalidArn"}:
                raise InvalidInputError(
                    f"invalid step input: execution.stateMachineArn: {execution.state_machine_arn!r} "
                    f"cannot be listed ({error_code(e)}: {error_message(e)})"
                ) from e
            raise
    return running


def ensure_no_other_release(execution: ExecutionContext, sfn: SFNClient) -> None:
    """Refuse when another RUNNING execution of this state machine started first (a tie goes to the lower name).

    Of two simultaneous starts exactly one proceeds: each sees the other, and only the later (or, at the same
    millisecond, the higher-named) one finds an earlier rival. ListExecutions is documented as eventually
    consistent, so two starts within its propagation delay can still miss each other; a strict lock would need a
    conditional write (e.g. DynamoDB), which this stack does not have.
    """
    running = _running_executions(execution, sfn)
    mine = next((e for e in running if e.get("executionArn") == execution.id), None)
    my_start = _to_millis(
        mine["startDate"] if mine is not None else parse_iso(execution.start_time, "execution.startTime")
    )
    my_key = (my_start, execution.name)
    rivals = sorted(
        (
            (_to_millis(e["startDate"]), str(e["name"]), str(e["executionArn"]))
            for e in running
            if e.get("executionArn") != execution.id
        ),
        key=lambda rival: (rival[0], rival[1]),
    )
    earlier = [rival for rival in rivals if (rival[0], rival[1]) < my_key]
    if earlier:
        started, name, arn = earlier[0]
        raise DeploymentInProgressError(
            f"another release is running: execution {name} ({arn}) started {to_iso(started)}, before this one "
            f"({execution.name}, started {to_iso(my_start)}); releases never overlap: wait for it to finish "
            f"or stop it with `aws stepfunctions stop-execution --execution-arn {arn}`"
        )
    if rivals:
        logger.info("later executions are running; they will refuse to start", extra={"later": [r[2] for r in rivals]})


def prepare(
    event: PrepareEvent, settings: ReleaseSettings, sfn: SFNClient, ecs_settings: EcsSettings, ecs: EcsClient
) -> ReleaseState:
    """Validate the request first (bad input touches nothing), make sure no other release is running, then check
    that what the release will touch exists (preflight) before any step changes anything."""
    request = validate_request(event.input, settings)
    ensure_no_other_release(event.execution, sfn)
    warnings = preflight(request, ecs_settings, ecs)
    if warnings:
        logger.warning("preflight warnings", extra={"warnings": warnings})
    return ReleaseState(
        request=request.model_copy(update={"warnings": warnings}),
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
    return prepare(prepare_event, config.release_settings(), clients.stepfunctions(), ecs_settings, ecs).to_json()
