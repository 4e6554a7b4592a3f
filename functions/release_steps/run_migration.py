"""Run migration task: start the migration as a one-off ECS task with the checked, digest-pinned image.

Idempotent: a task this execution already started is found by its tags and adopted, so a retried or redriven step
never starts a second migration. RunTask's ``clientToken`` is fixed per invocation (the Lambda request id), which
makes the SDK's own retries of one call safe; it differs between attempts because ECS answers a repeated token with
its first answer, so a retry after a placement failure would otherwise get the same failure until the token expires.
The latest ACTIVE revision of the family is reused when its migration container already runs this image; otherwise a
new revision is registered that differs only in that image. A dry run runs the same digest-pinned task definition
with a command override, the runner's read-only ``plan`` (pending files, their locks, lint findings), which Check
migration task reads from the log. It applies nothing; when no revision runs the image yet it registers the one the
release would (and then reuses), as the plan must run in the image that holds the files.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import ClientError
from msgspec import structs

from release_steps import clients, config
from release_steps.aws_errors import error_code, error_message
from release_steps.config import EcsSettings
from release_steps.ecs import EcsClient, EcsTask, EcsTaskDefinition
from release_steps.errors import (
    ConfigurationError,
    EcsCapacityError,
    MigrationTaskDefinitionError,
    MigrationTaskStartError,
)
from release_steps.models import ImageStepInput, MigrationTask
from release_steps.observability import logger, parse_event, step
from release_steps.timeutil import deadline_after, to_iso, utc_now

STEP_NAME = "Run migration task"
STARTED_BY = "deployflow"
EXECUTION_TAG = "deployflow:execution"
IMAGE_TAG_TAG = "deployflow:image-tag"
PLAN_COMMAND = ("plan",)  # `python -m dbmigrate plan`: the image's entrypoint is `python -m dbmigrate`


def client_token(execution_id: str, attempt: str) -> str:
    """RunTask's idempotency token: 64 hex characters (the API allows up to 64, ASCII 33-126), one per attempt.

    ``attempt`` is the invocation's Lambda request id: a Step Functions retry and a redrive are new invocations.
    """
    return hashlib.sha256(f"{execution_id}|{STEP_NAME}|{attempt}".encode()).hexdigest()


def resolve_task_definition(ecs: EcsClient, settings: EcsSettings) -> EcsTaskDefinition:
    family = settings.migration_task_family
    current = ecs.latest_task_definition(family)
    if current is None:
        raise MigrationTaskDefinitionError(
            f"task definition family {family!r} (MIGRATION_TASK_FAMILY) has no ACTIVE revision"
        )
    if current.container(settings.migration_container_name) is None:
        raise MigrationTaskDefinitionError(
            f"container {settings.migration_container_name!r} (MIGRATION_CONTAINER_NAME) is not in task definition "
            f"family {family!r} (latest ACTIVE revision {current.arn} has: {', '.join(current.container_names)})"
        )
    return current


def _network_configuration(definition: EcsTaskDefinition, settings: EcsSettings) -> dict[str, Any]:
    """awsvpc tasks need subnets (and take security groups); bridge/host tasks on EC2 take no network config."""
    if definition.network_mode != "awsvpc":
        return {}
    if not settings.migration_subnets:
        raise ConfigurationError(
            f"task definition {definition.arn} uses networkMode awsvpc but MIGRATION_SUBNETS is empty"
        )
    awsvpc: dict[str, Any] = {
        "subnets": list(settings.migration_subnets),
        "assignPublicIp": "ENABLED" if settings.migration_assign_public_ip else "DISABLED",
    }
    if settings.migration_security_groups:
        awsvpc["securityGroups"] = list(settings.migration_security_groups)
    return {"networkConfiguration": {"awsvpcConfiguration": awsvpc}}


def _started(
    task: EcsTask, settings: EcsSettings, task_definition_arn: str, registered: bool, now: datetime
) -> MigrationTask:
    return MigrationTask(
        cluster=settings.cluster,
        task_definition_arn=task_definition_arn,
        registered_new_revision=registered,
        task_arn=task.arn,
        status=task.phase,
        done=False,
        started_at=to_iso(task.started_at) if task.started_at else None,
        deadline=deadline_after(task.created_at or now, settings.migration_timeout_seconds),
    )


def _run(ecs: EcsClient, definition: EcsTaskDefinition, params: dict[str, Any]) -> EcsTask:
    where = f"task definition {definition.arn} on cluster {ecs.cluster}"
    try:
        result = ecs.run_task(taskDefinition=definition.arn, **params)
    except ClientError as e:
        message = error_message(e)
        if "No Container Instances were found" in message:
            raise EcsCapacityError(f"ECS could not place {where} now: {message}") from e
        raise MigrationTaskStartError(f"ECS refused to start {where}: {error_code(e)}: {message}") from e
    if result.tasks:
        return result.tasks[0]
    failures = "; ".join(str(f) for f in result.failures) or "no task and no failure reported"
    if result.failures and all(f.is_capacity for f in result.failures):
        raise EcsCapacityError(f"ECS could not place {where} now: {failures}")
    raise MigrationTaskStartError(f"ECS refused to start {where}: {failures}")


def run_migration(
    state: ImageStepInput, settings: EcsSettings, ecs: EcsClient, attempt: str, now: datetime | None = None
) -> MigrationTask:
    """Start (or adopt) this execution's migration task; in a dry run, the same task runs the read-only plan.

    ``attempt`` names this invocation (its Lambda request id) for RunTask's ``clientToken``.
    """
    now = now or utc_now()
    container = settings.migration_container_name
    image = state.image.image_uri
    current = resolve_task_definition(ecs, settings)
    current_image = (current.container(container) or {}).get("image")
    needs_revision = current_image != image

    network = _network_configuration(current, settings)
    execution_id = state.execution.id
    adopted = ecs.find_tasks(current.family, STARTED_BY, EXECUTION_TAG, execution_id)
    if adopted:
        task = max(adopted, key=lambda t: (t.created_at.timestamp() if t.created_at else 0.0, t.arn))
        logger.info("adopting the migration task this execution already started", extra={"task_arn": task.arn})
        return _started(task, settings, task.task_definition_arn, registered=False, now=now)

    definition = current
    if needs_revision:
        registration = current.registration_with_image(container, image, ecs.registrable_task_definition_fields)
        definition = ecs.register_task_definition(registration)
        logger.info("registered migration task definition", extra={"arn": definition.arn, "image": image})

    dry_run = state.request.dry_run
    task = _run(
        ecs,
        definition,
        {
            **(_plan_override(container) if dry_run else {}),
            "count": 1,
            "launchType": settings.migration_launch_type,
            "startedBy": STARTED_BY,
            "tags": [
                {"key": EXECUTION_TAG, "value": execution_id},
                {"key": IMAGE_TAG_TAG, "value": state.request.image_tag},
            ],
            "clientToken": client_token(execution_id, attempt),
            **network,
        },
    )
    logger.info(
        "migration task started",
        extra={"task_arn": task.arn, "task_definition": definition.arn, "command": PLAN_COMMAND if dry_run else None},
    )
    started = _started(task, settings, definition.arn, registered=needs_revision, now=now)
    if not dry_run:
        return started
    registered = (
        f"registered {definition.arn} for image {image} (a revision is inert until a task runs it; the release "
        "reuses it)"
        if needs_revision
        else f"reused {definition.arn}"
    )
    return structs.replace(
        started, dry_run_note=f"dry run: {registered}; ran `{' '.join(PLAN_COMMAND)}` (read-only) in it"
    )


def _plan_override(container: str) -> dict[str, Any]:
    """The dry run's RunTask override: the same image and task definition, the runner's read-only `plan` command."""
    return {"overrides": {"containerOverrides": [{"name": container, "command": list(PLAN_COMMAND)}]}}


@step(STEP_NAME)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Run migration task."""
    state = parse_event(ImageStepInput, event)
    settings = config.ecs_settings()
    ecs = EcsClient(clients.ecs(), settings.cluster)
    return run_migration(state, settings, ecs, attempt=context.aws_request_id).to_json()
