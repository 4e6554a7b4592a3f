"""Summarize failure: the summary of a release whose step raised a terminal error, for the incident channel.

The state machine hands in the state as the Catch left it, the failed state's name (written by the Pass after each
Catch: the ASL is the one source of that fact), the caught error, and the execution's identity from the context
object. Sections the failing step could not write are re-read where that is cheap and read only (the migration
task, the services' deployments), so the summary shows them as they were at the failure, not one poll earlier.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from msgspec import structs

from release_steps import clients, config
from release_steps.check_services import RECENT_EVENTS, judge, rollout_state
from release_steps.ecs import EcsClient
from release_steps.models import MigrationTask, RecordStepInput, RolloutResult, SummarizeFailureInput
from release_steps.observability import logger, parse_event, step
from release_steps.record import build_record, read_state
from release_steps.timeutil import seconds_between, to_iso, utc_now

STATE_NAME = "Summarize failure"
# The errors a migration check raises after counting one more check than the state it was given holds.
_CHECK_ERRORS = frozenset({"MigrationFailedError", "MigrationTimeoutError"})
_ROLLOUT_ERRORS = frozenset({"ServiceDeploymentFailedError", "ServiceRolloutTimeoutError"})
HISTORY_EVENTS = 20  # service events searched for a dropped deployment's failure


def current_migration(migration: MigrationTask, error: str, ecs: EcsClient, container_name: str) -> MigrationTask:
    """The migration task as ECS reports it now: exit code, stop code and reason, the checks made."""
    if migration.status == "SKIPPED" or migration.done or not migration.task_arn:
        return migration
    checks = migration.checks + 1 if error in _CHECK_ERRORS else migration.checks
    task = ecs.describe_task(migration.task_arn)
    if task is None:
        return structs.replace(migration, checks=checks)
    container = task.container(container_name)
    return structs.replace(
        migration,
        status=task.phase,
        exit_code=container.exit_code if container else None,
        stop_code=task.stop_code,
        stopped_reason=task.stopped_reason,
        started_at=to_iso(task.started_at) if task.started_at else migration.started_at,
        stopped_at=to_iso(task.stopped_at) if task.stopped_at else None,
        duration_seconds=seconds_between(task.started_at, task.stopped_at),
        checks=checks,
    )


def current_rollout(rollout: RolloutResult, error: str, ecs: EcsClient) -> RolloutResult:
    """Every recorded deployment as ECS reports it now: a rolled-back one reads FAILED / rolled back, with events."""
    services, _ = ecs.describe_services([s.name for s in rollout.services])
    updated = []
    for recorded in rollout.services:
        service = services.get(recorded.name)
        if service is None or not service.is_active:
            state = "MISSING" if service is None else service.status
            updated.append(structs.replace(recorded, rollout_state=state))
            continue
        events = service.recent_events(RECENT_EVENTS)
        if not recorded.deployment_id:
            updated.append(structs.replace(recorded, last_events=events))
            continue
        deployment, problem = judge(service, recorded.deployment_id)
        if deployment is None:
            # ECS drops a rolled-back deployment from the service; its events still name it.
            failed = any(recorded.deployment_id in e and "failed" in e for e in service.recent_events(HISTORY_EVENTS))
            updated.append(
                structs.replace(
                    recorded,
                    rollout_state="FAILED / rolled back" if failed else "GONE",
                    rollout_state_reason=problem,
                    last_events=events,
                )
            )
            continue
        state = rollout_state(deployment, service)
        if not deployment.is_primary:
            state = f"{state} / rolled back"
        updated.append(
            structs.replace(
                recorded,
                rollout_state=state,
                rollout_state_reason=problem or deployment.rollout_state_reason,
                running_count=deployment.running_count,
                desired_count=deployment.desired_count,
                last_events=events if problem else [],
            )
        )
    checks = rollout.checks + 1 if error in _ROLLOUT_ERRORS and rollout.deadline else rollout.checks
    return structs.replace(rollout, services=updated, checks=checks)


def as_last_known(
    state: RecordStepInput, error: str, ecs: EcsClient, container_name: str
) -> tuple[RecordStepInput, list[str]]:
    """The state with the migration and services re-read from ECS; a lookup that fails keeps the recorded section
    and says so (never raises: the failure is known, a lookup problem must not hide it)."""
    notes: list[str] = []
    update: dict[str, Any] = {}
    if state.migration is not None:
        try:
            update["migration"] = current_migration(state.migration, error, ecs, container_name)
        except Exception as e:
            logger.warning("migration task not re-described", extra={"error": repr(e)})
            notes.append(f"migration task not re-described ({type(e).__name__}); shown as last recorded")
    if state.rollout is not None and not state.rollout.dry_run:
        try:
            update["rollout"] = current_rollout(state.rollout, error, ecs)
        except Exception as e:
            logger.warning("services not re-described", extra={"error": repr(e)})
            notes.append(f"services not re-described ({type(e).__name__}); shown as last recorded")
    return structs.replace(state, **update), notes


@step(STATE_NAME)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Summarize failure."""
    given = parse_event(SummarizeFailureInput, event, "summarize failure input")
    state, unreadable = read_state(given.state)
    state = structs.replace(state, execution=given.context, failure=given.failure)
    notes: list[str] = []
    if state.migration is not None or state.rollout is not None:
        try:
            settings = config.ecs_settings()
            ecs = EcsClient(clients.ecs(), settings.cluster)
        except Exception as e:
            notes.append(f"ECS not re-read ({type(e).__name__}); sections shown as last recorded")
        else:
            state, notes = as_last_known(state, given.failure.error, ecs, settings.migration_container_name)
    result = build_record(
        state,
        finished_at=utc_now(),
        unreadable=unreadable,
        failed_state=given.failed.state,
        notes=notes,
        failed_section=given.failed.section,
    )
    logger.info(
        "failure summarized",
        extra={"failed_state": result.record.failed_step, "error": result.record.error},
    )
    return result.to_json()
