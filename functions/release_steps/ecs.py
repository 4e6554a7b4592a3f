"""A small ECS wrapper for the steps: typed views of tasks, task definitions and services (fabfuel/ecs-deploy style).

Responses are wrapped in small objects that answer the questions the steps ask (``has_completed``, ``has_failed``,
``is_primary``, ``container(name)``) so the steps read as policy, not as dictionary digging. ``EcsClient`` wraps a
boto3 ECS client bound to one cluster: it pages and batches, turns throttling into ``AwsThrottlingError`` and a
missing cluster into ``ConfigurationError`` (the cluster comes from the stack's ``ECS_CLUSTER``); other
``ClientError`` s are left to the step, which knows what it asked for.
"""

from __future__ import annotations

import contextlib
import copy
import re
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from botocore.exceptions import ClientError

from release_steps.aws_errors import error_code, error_message, is_throttling, throttling_error
from release_steps.errors import ConfigurationError

if TYPE_CHECKING:
    from mypy_boto3_ecs import ECSClient
    from mypy_boto3_ecs.type_defs import (
        ContainerDefinitionOutputTypeDef,
        ContainerTypeDef,
        DeploymentTypeDef,
        FailureTypeDef,
        ServiceTypeDef,
        TagTypeDef,
        TaskDefinitionTypeDef,
        TaskTypeDef,
    )

TaskPhase = Literal["PENDING", "RUNNING", "STOPPED"]

# ECS task lifecycle: https://docs.aws.amazon.com/AmazonECS/latest/developerguide/task-lifecycle-explanation.html
_PENDING_STATES = frozenset({"PROVISIONING", "PENDING", "ACTIVATING"})
_STOPPED_STATES = frozenset({"STOPPED", "DELETED"})
_TASK_DEFINITION_ARN = re.compile(r":task-definition/(?P<family>[^:/]+):(?P<revision>\d+)$")
_DESCRIBE_TASKS_BATCH = 100  # DescribeTasks accepts up to 100 tasks
_DESCRIBE_SERVICES_BATCH = 10  # DescribeServices accepts up to 10 services


def _str_or_none(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


def _datetime_or_none(value: Any) -> datetime | None:
    return value if isinstance(value, datetime) else None


def _timestamp(value: Any) -> float:
    return value.timestamp() if isinstance(value, datetime) else 0.0


def _tags(raw: Sequence[TagTypeDef] | None) -> dict[str, str]:
    return {tag["key"]: tag.get("value", "") for tag in raw or [] if "key" in tag}


@dataclass(frozen=True)
class EcsFailure:
    """One entry of an ECS ``failures`` list (RunTask, DescribeServices, DescribeTasks)."""

    arn: str | None
    reason: str
    detail: str | None = None

    @classmethod
    def from_response(cls, data: FailureTypeDef) -> EcsFailure:
        reason = str(data.get("reason") or "unknown")
        return cls(_str_or_none(data.get("arn")), reason, _str_or_none(data.get("detail")))

    @property
    def is_capacity(self) -> bool:
        """Whether ECS could not place the task *now*: resources, agent, or Fargate capacity (clears by itself)."""
        text = f"{self.reason} {self.detail or ''}".lower()
        return self.reason.startswith("RESOURCE:") or self.reason == "AGENT" or "capacity" in text

    def __str__(self) -> str:
        detail = f" ({self.detail})" if self.detail else ""
        return f"{self.arn or 'unknown resource'}: {self.reason}{detail}"


class EcsContainer:
    """One container of a described task."""

    def __init__(self, data: ContainerTypeDef) -> None:
        self.name = str(data.get("name", ""))
        self.image = _str_or_none(data.get("image"))
        self.last_status = _str_or_none(data.get("lastStatus"))
        self.exit_code = _int_or_none(data.get("exitCode"))
        self.reason = _str_or_none(data.get("reason"))


class EcsTask:
    """A described ECS task; ``has_completed`` judges one named container (sidecars don't count)."""

    def __init__(self, data: TaskTypeDef) -> None:
        self.data = data
        self.arn = str(data["taskArn"])
        self.id = self.arn.rsplit("/", 1)[-1]
        self.last_status = str(data.get("lastStatus") or "PENDING")
        self.desired_status = _str_or_none(data.get("desiredStatus"))
        self.stop_code = _str_or_none(data.get("stopCode"))
        self.stopped_reason = _str_or_none(data.get("stoppedReason"))
        self.task_definition_arn = str(data.get("taskDefinitionArn", ""))
        self.started_by = _str_or_none(data.get("startedBy"))
        self.group = _str_or_none(data.get("group"))
        self.created_at = _datetime_or_none(data.get("createdAt"))
        self.started_at = _datetime_or_none(data.get("startedAt"))
        self.stopped_at = _datetime_or_none(data.get("stoppedAt"))
        self.tags = _tags(data.get("tags"))
        self.containers = [EcsContainer(c) for c in data.get("containers") or []]

    @property
    def phase(self) -> TaskPhase:
        """The lifecycle state folded into PENDING (not yet running), RUNNING (running or stopping), STOPPED."""
        if self.last_status in _STOPPED_STATES:
            return "STOPPED"
        if self.last_status in _PENDING_STATES:
            return "PENDING"
        return "RUNNING"

    @property
    def is_stopped(self) -> bool:
        return self.phase == "STOPPED"

    def container(self, name: str) -> EcsContainer | None:
        return next((c for c in self.containers if c.name == name), None)

    def has_completed(self, container_name: str) -> bool:
        """The task stopped and the named container exited 0."""
        container = self.container(container_name)
        return self.is_stopped and container is not None and container.exit_code == 0


@dataclass(frozen=True)
class LogLocation:
    """Where a container's ``awslogs`` driver writes; ``stream`` is None when it cannot be derived."""

    group: str
    stream: str | None
    region: str | None


class EcsTaskDefinition:
    """A described task definition revision (with its tags)."""

    def __init__(self, data: TaskDefinitionTypeDef, tags: Sequence[TagTypeDef] | None = None) -> None:
        self.data = data
        self.arn = str(data["taskDefinitionArn"])
        self.family = str(data.get("family", ""))
        self.revision = int(data.get("revision", 0))
        self.network_mode = _str_or_none(data.get("networkMode"))
        self.tags = [dict(tag) for tag in tags or []]

    @property
    def container_names(self) -> list[str]:
        return [str(c.get("name")) for c in self.data.get("containerDefinitions") or []]

    def container(self, name: str) -> ContainerDefinitionOutputTypeDef | None:
        return next((c for c in self.data.get("containerDefinitions") or [] if c.get("name") == name), None)

    def log_location(self, container_name: str, task_id: str) -> LogLocation | None:
        """The CloudWatch stream of a container of a task: ``<prefix>/<container>/<task-id>`` (awslogs driver)."""
        container = self.container(container_name)
        config = container.get("logConfiguration") if container else None
        options = (config.get("options") if config else None) or {}
        if config is None or config.get("logDriver") != "awslogs" or not options.get("awslogs-group"):
            return None
        prefix = options.get("awslogs-stream-prefix")
        stream = f"{prefix}/{container_name}/{task_id}" if prefix else None
        return LogLocation(str(options["awslogs-group"]), stream, _str_or_none(options.get("awslogs-region")))

    def registration_with_image(
        self, container_name: str, image: str, registrable_fields: Collection[str]
    ) -> dict[str, Any]:
        """RegisterTaskDefinition arguments copying this revision, with one container's image replaced.

        Only the fields RegisterTaskDefinition accepts are copied: a described revision also carries read-only
        fields (``taskDefinitionArn``, ``revision``, ``status``, ``compatibilities``, ``requiresAttributes``,
        ``registeredAt``, ...) that the API rejects.
        """
        registration: dict[str, Any] = {k: copy.deepcopy(v) for k, v in self.data.items() if k in registrable_fields}
        for container in registration.get("containerDefinitions") or []:
            if container.get("name") == container_name:
                container["image"] = image
        if self.tags and "tags" in registrable_fields:
            registration["tags"] = copy.deepcopy(self.tags)
        return registration


class EcsDeployment:
    """One deployment of a service (ECS deployment controller)."""

    def __init__(self, data: DeploymentTypeDef) -> None:
        self.id = str(data.get("id", ""))
        self.status = _str_or_none(data.get("status"))
        self.rollout_state = _str_or_none(data.get("rolloutState"))
        self.rollout_state_reason = _str_or_none(data.get("rolloutStateReason"))
        self.task_definition = _str_or_none(data.get("taskDefinition"))
        self.running_count = _int_or_none(data.get("runningCount"))
        self.desired_count = _int_or_none(data.get("desiredCount"))
        self.failed_tasks = _int_or_none(data.get("failedTasks"))
        self.created_at = _datetime_or_none(data.get("createdAt"))

    @property
    def is_primary(self) -> bool:
        return self.status == "PRIMARY"

    @property
    def has_completed(self) -> bool:
        return self.rollout_state == "COMPLETED"

    @property
    def has_failed(self) -> bool:
        return self.rollout_state == "FAILED"


class EcsService:
    """A described service."""

    def __init__(self, data: ServiceTypeDef) -> None:
        self.data = data
        self.name = str(data.get("serviceName", ""))
        self.arn = str(data.get("serviceArn", ""))
        self.status = _str_or_none(data.get("status"))
        self.task_definition = _str_or_none(data.get("taskDefinition"))
        self.running_count = _int_or_none(data.get("runningCount"))
        self.desired_count = _int_or_none(data.get("desiredCount"))
        controller = data.get("deploymentController")
        self.deployment_controller = str((controller.get("type") if controller else None) or "ECS")
        self.deployments = [EcsDeployment(d) for d in data.get("deployments") or []]

    @property
    def is_active(self) -> bool:
        return self.status == "ACTIVE"

    @property
    def circuit_breaker_enabled(self) -> bool:
        """The deployment circuit breaker is on: a failing rollout is stopped (and rolled back) by ECS itself."""
        configuration = self.data.get("deploymentConfiguration")
        breaker = configuration.get("deploymentCircuitBreaker") if configuration else None
        return bool(breaker and breaker.get("enable"))

    @property
    def primary_deployment(self) -> EcsDeployment | None:
        return next((d for d in self.deployments if d.is_primary), None)

    def deployment(self, deployment_id: str) -> EcsDeployment | None:
        return next((d for d in self.deployments if d.id == deployment_id), None)

    def recent_events(self, limit: int) -> list[str]:
        """The newest ``limit`` service event messages, newest first."""
        events = sorted(self.data.get("events") or [], key=lambda e: _timestamp(e.get("createdAt")), reverse=True)
        return [" ".join(str(e.get("message", "")).split()) for e in events[:limit]]


@dataclass(frozen=True)
class RunTaskResult:
    """RunTask's answer: the started tasks and ECS's ``failures``."""

    tasks: list[EcsTask]
    failures: list[EcsFailure]


def task_definition_revision(arn: str) -> tuple[str, int] | None:
    """``(family, revision)`` of a task definition ARN, or None when it isn't one."""
    match = _TASK_DEFINITION_ARN.search(arn)
    return (match["family"], int(match["revision"])) if match else None


def _chunks(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class EcsClient:
    """The ECS calls the steps make, against one cluster."""

    def __init__(self, client: ECSClient, cluster: str) -> None:
        self.client = client
        self.cluster = cluster

    # --- plumbing ---------------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _errors(self, operation: str) -> Iterator[None]:
        """Errors of one ECS call (by its API name, ``RunTask``) translated as described in the module docstring."""
        try:
            yield
        except ClientError as e:
            if is_throttling(e):
                raise throttling_error(e, f"ecs:{operation}") from e
            if error_code(e) == "ClusterNotFoundException":
                raise ConfigurationError(
                    f"ECS cluster {self.cluster!r} (ECS_CLUSTER) was not found: {error_message(e)}"
                ) from e
            raise

    @property
    def registrable_task_definition_fields(self) -> frozenset[str]:
        """The members RegisterTaskDefinition accepts, from the SDK's own service model."""
        shape = self.client.meta.service_model.operation_model("RegisterTaskDefinition").input_shape
        return frozenset(shape.members) if shape is not None else frozenset()

    # --- task definitions -------------------------------------------------------------------------------------

    def latest_task_definition(self, family: str) -> EcsTaskDefinition | None:
        """The latest ACTIVE revision of a family, or None when the family has none."""
        revisions: list[tuple[int, str]] = []
        with self._errors("ListTaskDefinitions"):
            pages = self.client.get_paginator("list_task_definitions").paginate(
                familyPrefix=family, status="ACTIVE", sort="DESC"
            )
            for page in pages:
                for arn in page.get("taskDefinitionArns", []):
                    parsed = task_definition_revision(arn)
                    if parsed and parsed[0] == family:
                        revisions.append((parsed[1], arn))
        if not revisions:
            return None
        return self.describe_task_definition(max(revisions)[1])

    def describe_task_definition(self, arn: str) -> EcsTaskDefinition:
        with self._errors("DescribeTaskDefinition"):
            response = self.client.describe_task_definition(taskDefinition=arn, include=["TAGS"])
        return EcsTaskDefinition(response["taskDefinition"], response.get("tags"))

    def register_task_definition(self, registration: Mapping[str, Any]) -> EcsTaskDefinition:
        with self._errors("RegisterTaskDefinition"):
            response = self.client.register_task_definition(**registration)
        return EcsTaskDefinition(response["taskDefinition"], response.get("tags"))

    # --- tasks ------------------------------------------------------------------------------------------------

    def run_task(self, **params: Any) -> RunTaskResult:
        with self._errors("RunTask"):
            response = self.client.run_task(cluster=self.cluster, **params)
        return RunTaskResult(
            tasks=[EcsTask(t) for t in response.get("tasks") or []],
            failures=[EcsFailure.from_response(f) for f in response.get("failures") or []],
        )

    def describe_tasks(self, arns: Sequence[str], include_tags: bool = False) -> list[EcsTask]:
        """Described tasks, in batches; unknown ARNs are simply absent from the result."""
        tasks: list[EcsTask] = []
        for batch in _chunks(list(dict.fromkeys(arns)), _DESCRIBE_TASKS_BATCH):
            with self._errors("DescribeTasks"):
                if include_tags:
                    response = self.client.describe_tasks(cluster=self.cluster, tasks=batch, include=["TAGS"])
                else:
                    response = self.client.describe_tasks(cluster=self.cluster, tasks=batch)
            tasks.extend(EcsTask(t) for t in response.get("tasks") or [])
        return tasks

    def describe_task(self, arn: str) -> EcsTask | None:
        return next((t for t in self.describe_tasks([arn]) if t.arn == arn or t.id == arn.rsplit("/", 1)[-1]), None)

    def find_tasks(self, family: str, started_by: str, tag_key: str, tag_value: str) -> list[EcsTask]:
        """Running and recently stopped tasks of a family started by ``started_by`` and carrying the tag."""
        arns: list[str] = []
        statuses: tuple[Literal["RUNNING", "STOPPED"], ...] = ("RUNNING", "STOPPED")
        with self._errors("ListTasks"):
            for desired_status in statuses:
                pages = self.client.get_paginator("list_tasks").paginate(
                    cluster=self.cluster, family=family, desiredStatus=desired_status
                )
                for page in pages:
                    arns.extend(page.get("taskArns", []))
        if not arns:
            return []
        return [
            task
            for task in self.describe_tasks(arns, include_tags=True)
            if task.started_by == started_by and task.tags.get(tag_key) == tag_value
        ]

    def stop_task(self, arn: str, reason: str) -> None:
        with self._errors("StopTask"):
            self.client.stop_task(cluster=self.cluster, task=arn, reason=reason[:255])

    def stopped_service_tasks(self, service_name: str, deployment_id: str, limit: int) -> list[EcsTask]:
        """Up to ``limit`` stopped tasks a service deployment started (ECS sets ``startedBy`` to the deployment id)."""
        with self._errors("ListTasks"):
            response = self.client.list_tasks(
                cluster=self.cluster, serviceName=service_name, desiredStatus="STOPPED", maxResults=100
            )
        arns = response.get("taskArns") or []
        if not arns:
            return []
        tasks = [t for t in self.describe_tasks(arns) if t.started_by == deployment_id]
        tasks.sort(key=lambda t: _timestamp(t.stopped_at or t.created_at), reverse=True)
        return tasks[:limit]

    # --- services ---------------------------------------------------------------------------------------------

    def describe_services(self, names: Sequence[str]) -> tuple[dict[str, EcsService], list[EcsFailure]]:
        """Described services by name (batches of 10) and the failures (e.g. ``MISSING``) for the rest."""
        services: dict[str, EcsService] = {}
        failures: list[EcsFailure] = []
        for batch in _chunks(list(dict.fromkeys(names)), _DESCRIBE_SERVICES_BATCH):
            with self._errors("DescribeServices"):
                response = self.client.describe_services(cluster=self.cluster, services=batch)
            for data in response.get("services") or []:
                service = EcsService(data)
                services[service.name] = service
            failures.extend(EcsFailure.from_response(f) for f in response.get("failures") or [])
        return services, failures

    def force_new_deployment(self, service_name: str) -> EcsService:
        with self._errors("UpdateService"):
            response = self.client.update_service(cluster=self.cluster, service=service_name, forceNewDeployment=True)
        return EcsService(response["service"])
