"""Preflight of Validate release request: what the release will touch exists, before anything changes.

Every service to restart exists, is ACTIVE and uses the ECS deployment controller (Restart services checks the
same again, since a service can change in between); the migration task definition family has an ACTIVE revision
with the migration container. A service without the deployment circuit breaker is a warning, not an error: its
bad rollout ends only at the services' deadline.
"""

from __future__ import annotations

from release_steps.config import EcsSettings
from release_steps.ecs import EcsClient
from release_steps.models import ReleaseRequest
from release_steps.restart_services import describe_restartable
from release_steps.run_migration import resolve_task_definition


def preflight(request: ReleaseRequest, settings: EcsSettings, ecs: EcsClient) -> list[str]:
    """The warnings for the record; a named error (ServiceNotFoundError, MigrationTaskDefinitionError, ...) when a
    resource is missing, before the migration has changed anything."""
    services = describe_restartable(list(request.services), ecs)
    resolve_task_definition(ecs, settings)
    return [
        f"service {name}: the deployment circuit breaker is disabled, so a failing rollout ends only at the deadline "
        f"(SERVICES_TIMEOUT_SECONDS={settings.services_timeout_seconds}s)"
        for name in request.services
        if not services[name].circuit_breaker_enabled
    ]
