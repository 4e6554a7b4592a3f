"""Check services: follow each service's recorded deployment until it COMPLETED, failed, was rolled back or timed out.

A deployment that FAILED, disappeared, or stopped being PRIMARY (the circuit breaker rolled back to another one)
is ``ServiceDeploymentFailedError``; its message carries the service's recent events and why its new tasks
stopped. Deployments still IN_PROGRESS past the deadline are ``ServiceRolloutTimeoutError``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from msgspec import structs

from release_steps import clients, config
from release_steps.config import EcsSettings
from release_steps.ecs import EcsClient, EcsDeployment, EcsService, EcsTask
from release_steps.errors import InvalidInputError, ServiceDeploymentFailedError, ServiceRolloutTimeoutError
from release_steps.models import RolloutResult, RolloutStepInput, ServiceRollout
from release_steps.observability import logger, parse_event, step
from release_steps.timeutil import next_poll_seconds, parse_iso, utc_now

STEP_NAME = "Check services"
RECENT_EVENTS = 3
STOPPED_TASKS = 3
TEXT_MAX_CHARS = 300


def _short(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= TEXT_MAX_CHARS else flat[: TEXT_MAX_CHARS - 1] + "…"


def rollout_state(deployment: EcsDeployment, service: EcsService) -> str:
    """The deployment's rolloutState; when ECS reports none, COMPLETED once it is alone and at its desired count."""
    if deployment.rollout_state:
        return deployment.rollout_state
    alone = len(service.deployments) == 1
    at_count = deployment.running_count is not None and deployment.running_count == deployment.desired_count
    return "COMPLETED" if alone and at_count else "IN_PROGRESS"


def _describe_stopped(task: EcsTask) -> str:
    parts = [f"task {task.id}: {_short(task.stopped_reason or 'no stopped reason')}"]
    if task.stop_code:
        parts.append(f"stop code {task.stop_code}")
    for container in task.containers:
        if container.exit_code not in (None, 0) or container.reason:
            detail = f"container {container.name} exit code {container.exit_code}"
            if container.reason:
                detail += f" ({_short(container.reason)})"
            parts.append(detail)
    return ", ".join(parts)


def diagnostics(service: EcsService, deployment_id: str, ecs: EcsClient) -> str:
    """The service's recent events and the stopped reasons of the deployment's tasks (bounded, never raises)."""
    events = service.recent_events(RECENT_EVENTS)
    text = "recent events: " + (" | ".join(_short(e) for e in events) if events else "none")
    try:
        stopped = ecs.stopped_service_tasks(service.name, deployment_id, STOPPED_TASKS)
        text += "; stopped tasks: " + (" | ".join(_describe_stopped(t) for t in stopped) if stopped else "none")
    except Exception as e:  # the verdict is known; a diagnostics problem must not hide it
        logger.warning("stopped task lookup failed", extra={"service": service.name, "error": repr(e)})
        text += f"; stopped tasks: unavailable ({type(e).__name__})"
    return text


def describe_primary(service: EcsService) -> str:
    """The deployment serving now, as on-call needs it after a rollback: ``ecs-svc/1 (arn…:4, rollout IN_PROGRESS,
    0/2 running)``: whether the previous revision is back up yet, not only its name."""
    primary = service.primary_deployment
    if primary is None:
        return "none"
    facts = [primary.task_definition or "task definition not reported", f"rollout {rollout_state(primary, service)}"]
    if primary.running_count is not None and primary.desired_count is not None:
        facts.append(f"{primary.running_count}/{primary.desired_count} running")
    return f"{primary.id} ({', '.join(facts)})"


def judge(service: EcsService, deployment_id: str) -> tuple[EcsDeployment | None, str | None]:
    """The recorded deployment and, when it can no longer succeed, why (gone, FAILED, or no longer PRIMARY)."""
    deployment = service.deployment(deployment_id)
    now_primary = describe_primary(service)
    if deployment is None:
        return None, f"deployment {deployment_id} is gone; PRIMARY is now {now_primary}"
    if deployment.has_failed:
        reason = _short(deployment.rollout_state_reason or "no reason given")
        rolled_back = "" if deployment.is_primary else f"; rolled back, PRIMARY is now {now_primary}"
        return deployment, f"deployment {deployment_id} FAILED: {reason}{rolled_back}"
    if not deployment.is_primary:
        return deployment, (
            f"deployment {deployment_id} is no longer PRIMARY (status {deployment.status}): rolled back, "
            f"PRIMARY is now {now_primary}"
        )
    return deployment, None


def check_services(
    state: RolloutStepInput, settings: EcsSettings, ecs: EcsClient, now: datetime | None = None
) -> RolloutResult:
    """Judge every recorded deployment once; ``done`` true when all COMPLETED."""
    rollout = state.rollout
    if rollout.dry_run or rollout.done:
        return rollout
    now = now or utc_now()
    deadline = parse_iso(rollout.deadline, "rollout.deadline")
    services, _ = ecs.describe_services([r.name for r in rollout.services])

    updated: list[ServiceRollout] = []
    failed: list[str] = []
    in_progress: list[ServiceRollout] = []
    for index, recorded in enumerate(rollout.services):
        if not recorded.deployment_id:
            raise InvalidInputError(f"invalid step input: rollout.services.{index}.deploymentId: missing")
        service = services.get(recorded.name)
        if service is None or not service.is_active:
            status = "MISSING" if service is None else service.status
            failed.append(f"{recorded.name}: the service is {status} (deployment {recorded.deployment_id})")
            continue
        deployment, problem = judge(service, recorded.deployment_id)
        if deployment is None or problem is not None:
            failed.append(f"{recorded.name}: {problem}; {diagnostics(service, recorded.deployment_id, ecs)}")
            continue
        current = structs.replace(
            recorded,
            rollout_state=rollout_state(deployment, service),
            rollout_state_reason=deployment.rollout_state_reason,
            running_count=deployment.running_count,
            desired_count=deployment.desired_count,
        )
        updated.append(current)
        if current.rollout_state != "COMPLETED":
            in_progress.append(current)

    if failed:
        raise ServiceDeploymentFailedError(
            f"service deployment failed in cluster {ecs.cluster}: " + " || ".join(failed)
        )
    checks = rollout.checks + 1
    if in_progress and now > deadline:
        still = ", ".join(
            f"{r.name} (deployment {r.deployment_id}, {r.rollout_state}, running {r.running_count}/{r.desired_count})"
            for r in in_progress
        )
        raise ServiceRolloutTimeoutError(
            f"service deployments still in progress at the deadline {rollout.deadline} "
            f"(SERVICES_TIMEOUT_SECONDS={settings.services_timeout_seconds}, {checks} checks) "
            f"in cluster {ecs.cluster}: {still}"
        )
    wait = next_poll_seconds(checks, state.poll.services_seconds)
    return structs.replace(rollout, services=updated, done=not in_progress, checks=checks, next_wait_seconds=wait)


@step(STEP_NAME)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Check services."""
    state = parse_event(RolloutStepInput, event)
    settings = config.ecs_settings()
    return check_services(state, settings, EcsClient(clients.ecs(), settings.cluster)).to_json()
