"""Restart services: force a new deployment of each requested service and record the deployment to follow.

Every service is checked before any is restarted, so a bad name or an inactive service changes nothing. The new
PRIMARY deployment id of each service is what Check services follows; a dry run only describes.
UpdateService takes no idempotency token: a retried step (throttling, Lambda service error) forces the services
once more, which is harmless: the newest deployment supersedes the previous one and is the one recorded.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import ClientError

from release_steps import clients, config
from release_steps.aws_errors import error_code, error_message
from release_steps.config import EcsSettings
from release_steps.ecs import EcsClient, EcsService
from release_steps.errors import (
    ServiceDeploymentFailedError,
    ServiceNotFoundError,
    UnsupportedDeploymentControllerError,
)
from release_steps.models import ReleaseState, RolloutResult, ServiceRollout
from release_steps.observability import logger, parse_event, step
from release_steps.timeutil import deadline_after, utc_now

STEP_NAME = "Restart services"
DRY_RUN_STATE = "SKIPPED"


def describe_restartable(names: list[str], ecs: EcsClient) -> dict[str, EcsService]:
    """Every requested service, ACTIVE and ECS-controlled; otherwise a named error before anything changes."""
    services, _ = ecs.describe_services(names)
    problems = []
    for name in names:
        service = services.get(name)
        if service is None:
            problems.append(f"{name} (MISSING)")
        elif not service.is_active:
            problems.append(f"{name} ({service.status})")
    if problems:
        raise ServiceNotFoundError(
            f"service(s) not found or not ACTIVE in cluster {ecs.cluster}: {', '.join(problems)}; nothing was restarted"
        )
    not_ecs = [f"{n} ({s.deployment_controller})" for n, s in services.items() if s.deployment_controller != "ECS"]
    if not_ecs:
        raise UnsupportedDeploymentControllerError(
            f"cannot force a new deployment of service(s) not using the ECS deployment controller in cluster "
            f"{ecs.cluster}: {', '.join(not_ecs)}; nothing was restarted"
        )
    return services


def _rollout(service: EcsService, state: str | None = None, reason: str | None = None) -> ServiceRollout:
    primary = service.primary_deployment
    return ServiceRollout(
        name=service.name,
        service_arn=service.arn,
        deployment_id=primary.id if primary else None,
        task_definition=(primary.task_definition if primary else None) or service.task_definition,
        rollout_state=state or (primary.rollout_state if primary else None) or "IN_PROGRESS",
        rollout_state_reason=reason or (primary.rollout_state_reason if primary else None),
        running_count=primary.running_count if primary else service.running_count,
        desired_count=primary.desired_count if primary else service.desired_count,
    )


def restart_services(
    state: ReleaseState, settings: EcsSettings, ecs: EcsClient, now: datetime | None = None
) -> RolloutResult:
    """Force a new deployment of every requested service (all checked first); a dry run only reports."""
    now = now or utc_now()
    names = list(state.request.services)
    deadline = deadline_after(now, settings.services_timeout_seconds)
    services = describe_restartable(names, ecs)

    if state.request.dry_run:
        rollouts = [
            _rollout(
                services[name],
                DRY_RUN_STATE,
                f"dry run: would force a new deployment of {services[name].task_definition}",
            )
            for name in names
        ]
        return RolloutResult(services=rollouts, done=True, deadline=deadline, dry_run=True)

    rollouts = []
    for name in names:
        try:
            updated = ecs.force_new_deployment(name)
        except ClientError as e:
            restarted = ", ".join(r.name for r in rollouts) or "none"
            raise ServiceDeploymentFailedError(
                f"UpdateService (forceNewDeployment) of service {name} in cluster {ecs.cluster} failed: "
                f"{error_code(e)}: {error_message(e)}; already restarted: {restarted}"
            ) from e
        if updated.primary_deployment is None:
            raise ServiceDeploymentFailedError(
                f"service {name} in cluster {ecs.cluster} reports no PRIMARY deployment after UpdateService"
            )
        rollouts.append(_rollout(updated))
        logger.info("service restarted", extra={"service": name, "deployment_id": rollouts[-1].deployment_id})
    return RolloutResult(services=rollouts, done=False, deadline=deadline)


@step(STEP_NAME)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Restart services."""
    state = parse_event(ReleaseState, event)
    settings = config.ecs_settings()
    return restart_services(state, settings, EcsClient(clients.ecs(), settings.cluster)).to_json()
