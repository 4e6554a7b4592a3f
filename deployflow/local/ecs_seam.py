"""ECS seam: moto's RunTask really runs the task's container command, and service deployments roll out.

What moto 5.2.5 gives natively, and what this seam changes (both are checked by tests/canary/test_ecs_seam.py):

RunTask
  moto creates the task in RUNNING; each DescribeTasks advances it one step (DEACTIVATING, STOPPING,
  DEPROVISIONING, STOPPED) with the container's exitCode 0, nothing runs, and ``clientToken`` is ignored. The seam:
  - maps the container's image to a local command (``images``: ECR repository name to the command standing in for
    the image's entrypoint) and runs ``command + container command`` (the RunTask override's command first) as a
    subprocess in a background thread, with the task definition's environment, its ``secrets`` resolved from moto's
    Secrets Manager / SSM, the override's environment and the local stack's ``environment`` (which wins);
  - keeps the task RUNNING until the process exits, then STOPPED with the container's real ``exitCode``,
    ``stopCode`` ``EssentialContainerExited``, ``stoppedReason`` ``Essential container in task exited`` and
    ``stoppedAt``; an image with no local command, a missing log group or secret stops the task at once with
    ``TaskFailedToStart`` and the reason ECS gives (``CannotPullContainerError``, ``ResourceInitializationError``);
  - writes the output lines (stdout and stderr) as they come to CloudWatch Logs in moto when the container has an
    ``awslogs`` log configuration: group ``awslogs-group``, stream ``<awslogs-stream-prefix>/<container>/<task id>``;
  - honours ``clientToken`` as ECS does: the same token in the same cluster with the same parameters returns the
    original tasks (nothing runs again); with other parameters it is a ``ConflictException``;
  - StopTask on a running task sends SIGTERM to its process group (SIGKILL after ``stop_grace_seconds``); the task
    stops with ``stopCode`` ``UserInitiated`` and the given reason.
  Only the task definition's first container is modelled (moto models one container per task). moto fails RunTask
  (TypeError, HTTP 500) when a container definition has neither memory nor memoryReservation, which Fargate allows
  (the task's memory is enough): the seam counts such a container's memory as 0.

UpdateService / DescribeServices
  moto keeps one deployment forever: its rolloutState is IN_PROGRESS (COMPLETED only if the MOTO_ECS_SERVICE_RUNNING
  variable is at least the desired count) and ``forceNewDeployment`` only renames it in place. The seam:
  - on UpdateService with ``forceNewDeployment`` or a new task definition, adds a new PRIMARY deployment (new id,
    rolloutState IN_PROGRESS) and keeps the previous ones as ACTIVE;
  - ``rollout_seconds`` after a deployment's createdAt (checked whenever services or tasks are read), completes it:
    rolloutState COMPLETED, running = desired, older deployments drained, service events "has reached a steady
    state" and "deployment completed"; or, for a service marked with :meth:`EcsSeam.fail_rollouts`, fails it:
    rolloutState FAILED, failedTasks, a STOPPED task (startedBy = the deployment id, group ``service:<name>``,
    ``EssentialContainerExited``, the container's exit code) and a "deployment failed" event; if the service's
    deploymentConfiguration enables the circuit breaker's rollback, a rollback deployment (the previous task
    definition) becomes PRIMARY and completes, and the failed deployment disappears from the list, as on ECS.
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import json
import logging
import os
import re
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from deployflow.local._patching import AttributePatch, PatchSet, Seam

logger = logging.getLogger(__name__)

STOP_CODE_EXITED = "EssentialContainerExited"
STOP_CODE_USER = "UserInitiated"
STOP_CODE_FAILED_TO_START = "TaskFailedToStart"
REASON_EXITED = "Essential container in task exited"

_REGISTRY_HOST = re.compile(r"^[^/]*[.:][^/]*$|^localhost$")


def image_repository(image: str) -> str:
    """The repository of an image reference: ``<account>.dkr.ecr.<region>.amazonaws.com/team/app@sha256:..`` gives
    ``team/app``; ``app:1.2`` gives ``app``."""
    name = image.split("@", 1)[0]
    first, sep, rest = name.partition("/")
    if sep and _REGISTRY_HOST.match(first):
        name = rest
    last_slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > last_slash:
        name = name[:colon]
    return name


def _now() -> datetime.datetime:
    from moto.core.utils import utcnow

    return utcnow()


def _exit_code(returncode: int) -> int:
    # A process killed by a signal reports -N here; a container reports 128 + N.
    return 128 - returncode if returncode < 0 else returncode


def _freeze_status(task: Any, status: str) -> None:
    """Pin a moto Task's status (it is a ManagedState that DescribeTasks would otherwise advance on its own)."""
    task._transitions = [(status, status)]
    task.last_status = status


@dataclass
class TaskRun:
    """A task the seam runs (or failed to start): its command, its output and, once stopped, its exit code."""

    task_arn: str
    cluster: str
    container_name: str
    command: tuple[str, ...]
    log_group: str | None
    log_stream: str | None
    exit_code: int | None = None
    stop_code: str | None = None
    stopped_reason: str | None = None
    output: deque[str] = field(default_factory=lambda: deque(maxlen=10_000))
    _task: Any = field(default=None, repr=False)
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)
    _kill_timer: threading.Timer | None = field(default=None, repr=False)
    _stop_reason: str | None = field(default=None, repr=False)
    _done: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def task_id(self) -> str:
        return self.task_arn.rsplit("/", 1)[-1]

    @property
    def stopped(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the task stopped; True if it did within ``timeout``."""
        return self._done.wait(timeout)


@dataclass
class _TokenRecord:
    fingerprint: str
    task_arns: list[str]


@dataclass(frozen=True)
class _RolloutFailure:
    reason: str
    exit_code: int


@dataclass
class _Plan:
    failure: _RolloutFailure | None
    rollback: bool = False


class _StartFailure(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class EcsSeam(Seam):
    """Runs ECS tasks' commands and rolls service deployments out while installed.

    ``images``: ECR repository name (``image_repository``; the last path segment also matches) to the local command
    that stands in for the image's entrypoint, e.g. ``{"alerting-migrations": [sys.executable, "-m", "dbmigrate"]}``.
    ``environment``: added to every task's container environment, over the task definition's (the local database).
    ``base_environment``: what a container starts from (default: this process's environment when the seam is made,
    never a Lambda invocation's). ``unmapped_images``: ``"fail"`` stops a task whose image has no command with
    CannotPullContainerError; ``"moto"`` leaves it to moto's native behaviour.
    """

    def __init__(
        self,
        *,
        images: Mapping[str, Sequence[str]] | None = None,
        environment: Mapping[str, str] | None = None,
        base_environment: Mapping[str, str] | None = None,
        cwd: Path | str | None = None,
        rollout_seconds: float = 0.5,
        stop_grace_seconds: float = 5.0,
        unmapped_images: Literal["fail", "moto"] = "fail",
    ) -> None:
        self.images: dict[str, tuple[str, ...]] = {k: tuple(v) for k, v in (images or {}).items()}
        self.environment: dict[str, str] = dict(environment or {})
        self.base_environment: dict[str, str] = dict(base_environment if base_environment is not None else os.environ)
        self.cwd = str(cwd) if cwd is not None else None
        self.rollout_seconds = rollout_seconds
        self.stop_grace_seconds = stop_grace_seconds
        self.unmapped_images = unmapped_images
        self._lock = threading.RLock()
        self._runs: dict[str, TaskRun] = {}
        self._tokens: dict[tuple[str, str, str, str], _TokenRecord] = {}
        self._failing: dict[str, _RolloutFailure] = {}
        self._plans: dict[str, _Plan] = {}

    # -- what the local stack and tests use ------------------------------------------------------------------------

    @property
    def runs(self) -> list[TaskRun]:
        with self._lock:
            return list(self._runs.values())

    def run_for(self, task_arn_or_id: str) -> TaskRun | None:
        task_id = task_arn_or_id.rsplit("/", 1)[-1]
        with self._lock:
            return next((r for r in self._runs.values() if r.task_id == task_id), None)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until every task the seam started has stopped; True if all did within ``timeout``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for run in self.runs:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not run.wait(remaining):
                return False
        return True

    def fail_rollouts(self, service: str, *, reason: str = "tasks failed to start", exit_code: int = 1) -> None:
        """Deployments of ``service`` started from now on fail (rolloutState FAILED) instead of completing."""
        with self._lock:
            self._failing[service] = _RolloutFailure(reason=reason, exit_code=exit_code)

    def complete_rollouts(self, service: str) -> None:
        """Deployments of ``service`` started from now on complete (the default)."""
        with self._lock:
            self._failing.pop(service, None)

    def reset(self) -> None:
        """Stop every running task and forget tokens, runs and rollout plans (after moto's backends are reset)."""
        self.shutdown()
        with self._lock:
            self._runs.clear()
            self._tokens.clear()
            self._plans.clear()

    def shutdown(self, timeout: float = 10.0) -> None:
        """Kill every task process still running and wait for the runner threads."""
        for run in self.runs:
            process = run._process
            if process is not None and process.poll() is None:
                _signal_group(process, signal.SIGKILL)
        for run in self.runs:
            if run._thread is not None:
                run._thread.join(timeout)

    # -- RunTask ---------------------------------------------------------------------------------------------------

    def _command_for(self, image: str) -> tuple[str, ...] | None:
        repository = image_repository(image)
        command = self.images.get(repository)
        if command is None:
            command = self.images.get(repository.rsplit("/", 1)[-1])
        return command

    def _start(self, backend: Any, task: Any, overrides: Mapping[str, Any] | None) -> None:
        task_definition = backend.describe_task_definition(task.task_definition_arn)
        container_def: dict[str, Any] = task_definition.container_definitions[0]
        container_name = str(container_def.get("name", ""))
        container_override: dict[str, Any] = next(
            (o for o in (overrides or {}).get("containerOverrides", []) or [] if o.get("name") == container_name),
            {},
        )
        image = str(container_def.get("image", ""))
        entrypoint = self._command_for(image)
        if entrypoint is None and self.unmapped_images == "moto":
            return
        # moto already lists the task: pin it before the process starts, or a DescribeTasks from another thread (an
        # in-flight step of another execution reading the family's tasks) would advance it to STOPPED, no exit code.
        _freeze_status(task, "PROVISIONING")

        args = container_override.get("command") or container_def.get("command") or []
        command = tuple(entrypoint or ()) + tuple(str(a) for a in args)
        log_group, log_stream, logs_backend = self._log_target(backend, task, container_def, container_name)
        run = TaskRun(
            task_arn=task.task_arn,
            cluster=task.cluster_name,
            container_name=container_name,
            command=command,
            log_group=log_group,
            log_stream=log_stream,
            _task=task,
        )
        with self._lock:
            self._runs[task.task_arn] = run

        now = _now()
        task.created_at = now
        task.desired_status = "RUNNING"
        container = task.containers[0]
        container.exitCode = None
        try:
            if entrypoint is None:
                raise _StartFailure(
                    f"CannotPullContainerError: the local stack maps no command to image {image!r} "
                    f"(repository {image_repository(image)!r})"
                )
            env = dict(self.base_environment)
            env.update({e["name"]: str(e.get("value", "")) for e in container_def.get("environment", []) or []})
            env.update(self._resolve_secrets(backend, container_def.get("secrets", []) or []))
            env.update({e["name"]: str(e.get("value", "")) for e in container_override.get("environment", []) or []})
            env.update(self.environment)
            if log_group is not None and log_stream is not None:
                self._open_log_stream(logs_backend, log_group, log_stream, container_def)
            try:
                process = subprocess.Popen(
                    list(command),
                    env=env,
                    cwd=self.cwd,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            except OSError as e:
                raise _StartFailure(f"CannotStartContainerError: {e}") from e
        except _StartFailure as failure:
            self._finish(run, exit_code=None, stop_code=STOP_CODE_FAILED_TO_START, reason=failure.reason)
            return

        task.started_at = _now()
        task.connectivity = "CONNECTED"
        _freeze_status(task, "RUNNING")
        container.last_status = "RUNNING"
        container.runtime_id = f"local-{process.pid}"
        run._process = process
        thread = threading.Thread(
            target=self._pump, args=(run, logs_backend), name=f"ecs-task-{run.task_id}", daemon=True
        )
        run._thread = thread
        thread.start()

    def _log_target(
        self, backend: Any, task: Any, container_def: Mapping[str, Any], container_name: str
    ) -> tuple[str | None, str | None, Any]:
        log_config = container_def.get("logConfiguration") or {}
        if log_config.get("logDriver") != "awslogs":
            return None, None, None
        options: dict[str, str] = log_config.get("options") or {}
        group = options.get("awslogs-group")
        if not group:
            return None, None, None
        from moto.logs.models import logs_backends

        region = options.get("awslogs-region") or task.region_name
        prefix = options.get("awslogs-stream-prefix")
        task_id = task.task_arn.rsplit("/", 1)[-1]
        stream = f"{prefix}/{container_name}/{task_id}" if prefix else task_id
        return group, stream, logs_backends[backend.account_id][region]

    @staticmethod
    def _open_log_stream(logs_backend: Any, group: str, stream: str, container_def: Mapping[str, Any]) -> None:
        options = (container_def.get("logConfiguration") or {}).get("options") or {}
        if group not in logs_backend.groups:
            if str(options.get("awslogs-create-group", "")).lower() != "true":
                raise _StartFailure(
                    "ResourceInitializationError: failed to validate logger args: create stream has been retried 1 "
                    "times: failed to create Cloudwatch log stream: ResourceNotFoundException: The specified log "
                    f"group does not exist. ({group})"
                )
            logs_backend.create_log_group(group, {})
        if stream not in logs_backend.groups[group].streams:
            logs_backend.create_log_stream(group, stream)

    @staticmethod
    def _resolve_secrets(backend: Any, secrets: Sequence[Mapping[str, str]]) -> dict[str, str]:
        resolved: dict[str, str] = {}
        for secret in secrets:
            name, value_from = secret["name"], secret["valueFrom"]
            try:
                resolved[name] = _secret_value(backend.account_id, backend.region_name, value_from)
            except Exception as e:
                raise _StartFailure(
                    "ResourceInitializationError: unable to pull secrets or registry auth: "
                    f"unable to retrieve secret from asm or ssm ({value_from}): {e}"
                ) from e
        return resolved

    def _pump(self, run: TaskRun, logs_backend: Any) -> None:
        process = run._process
        assert process is not None
        assert process.stdout is not None
        try:
            for raw in process.stdout:
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                run.output.append(line)
                if logs_backend is not None and run.log_group and run.log_stream:
                    try:
                        logs_backend.put_log_events(
                            run.log_group, run.log_stream, [{"timestamp": int(time.time() * 1000), "message": line}]
                        )
                    except Exception:  # the backend was reset under a running task: keep the process going
                        logger.debug("dropped a log line of task %s", run.task_id, exc_info=True)
            returncode = process.wait()
        finally:
            if process.stdout is not None:
                process.stdout.close()
        with self._lock:
            requested = run._stop_reason
            if run._kill_timer is not None:
                run._kill_timer.cancel()
        if requested is not None:
            self._finish(run, _exit_code(returncode), STOP_CODE_USER, requested)
        else:
            self._finish(run, _exit_code(returncode), STOP_CODE_EXITED, REASON_EXITED)

    def _finish(self, run: TaskRun, exit_code: int | None, stop_code: str, reason: str) -> None:
        task = run._task
        now = _now()
        task.desired_status = "STOPPED"
        task.stop_code = stop_code
        task.stopped_reason = reason
        task.stopping_at = getattr(task, "stopping_at", None) or now
        task.execution_stopped_at = now
        task.stopped_at = now
        container = task.containers[0]
        container.last_status = "STOPPED"
        container.exitCode = exit_code
        if stop_code == STOP_CODE_FAILED_TO_START:
            container.reason = reason
        _freeze_status(task, "STOPPED")
        run.exit_code = exit_code
        run.stop_code = stop_code
        run.stopped_reason = reason
        run._done.set()

    def _stop(self, run: TaskRun, reason: str) -> None:
        with self._lock:
            process = run._process
            if run.stopped or process is None or run._stop_reason is not None:
                return
            run._stop_reason = reason
            task = run._task
            task.desired_status = "STOPPED"
            task.stopping_at = _now()
            timer = threading.Timer(self.stop_grace_seconds, _signal_group, args=(process, signal.SIGKILL))
            timer.daemon = True
            run._kill_timer = timer
        _signal_group(process, signal.SIGTERM)
        timer.start()

    # -- service deployments ---------------------------------------------------------------------------------------

    def _new_deployment(self, service: Any, task_definition: str | None) -> dict[str, Any]:
        from moto.moto_api._internal import mock_random

        deployment_id = f"ecs-svc/{mock_random.randint(0, 32**12)}"
        now = _now()
        return {
            "id": deployment_id,
            "status": "PRIMARY",
            "taskDefinition": task_definition,
            "desiredCount": service.desired_count,
            "pendingCount": service.desired_count,
            "runningCount": 0,
            "failedTasks": 0,
            "createdAt": now,
            "updatedAt": now,
            "launchType": service.launch_type,
            "platformVersion": service.platform_version,
            "platformFamily": "EC2" if service.launch_type == "EC2" else "FARGATE",
            "networkConfiguration": service.network_configuration or None,
            "rolloutState": "IN_PROGRESS",
            "rolloutStateReason": f"ECS deployment {deployment_id} in progress.",
        }

    @staticmethod
    def _event(service: Any, message: str) -> None:
        from moto.moto_api._internal import mock_random

        service.events.insert(0, {"id": str(mock_random.uuid4()), "createdAt": _now(), "message": message})

    def _advance_rollouts(self, backend: Any) -> None:
        with self._lock:
            now = _now()
            for service in list(backend.services.values()):
                if service.status != "ACTIVE" or not service.deployments:
                    continue
                primary = service.deployments[0]
                if primary.get("status") != "PRIMARY" or primary.get("rolloutState") != "IN_PROGRESS":
                    continue
                if now < primary["createdAt"] + datetime.timedelta(seconds=self.rollout_seconds):
                    continue
                plan = self._plans.get(primary["id"], _Plan(failure=None))
                if plan.failure is None:
                    self._complete(service, primary)
                else:
                    self._fail(backend, service, primary, plan.failure)

    def _complete(self, service: Any, deployment: dict[str, Any]) -> None:
        deployment.update(
            rolloutState="COMPLETED",
            rolloutStateReason=f"ECS deployment {deployment['id']} completed.",
            runningCount=service.desired_count,
            pendingCount=0,
            updatedAt=_now(),
        )
        service.deployments = [deployment]
        service.running_count = service.desired_count
        service.pending_count = 0
        self._event(service, f"(service {service.name}) has reached a steady state.")
        self._event(service, f"(service {service.name}) (deployment {deployment['id']}) deployment completed.")

    def _fail(self, backend: Any, service: Any, deployment: dict[str, Any], failure: _RolloutFailure) -> None:
        failed_tasks = max(1, int(service.desired_count))
        deployment.update(
            rolloutState="FAILED",
            rolloutStateReason=f"ECS deployment circuit breaker: {failure.reason}.",
            failedTasks=failed_tasks,
            runningCount=0,
            pendingCount=0,
            updatedAt=_now(),
        )
        task = self._stopped_service_task(backend, service, deployment, failure)
        if task is not None:
            self._event(service, f"(service {service.name}) has started 1 tasks: (task {task.id}).")
        self._event(
            service, f"(service {service.name}) (deployment {deployment['id']}) deployment failed: {failure.reason}."
        )

        breaker = (getattr(service, "deployment_configuration", None) or {}).get("deploymentCircuitBreaker") or {}
        previous = next((d for d in service.deployments[1:] if d.get("taskDefinition")), None)
        if breaker.get("enable") and breaker.get("rollback") and previous is not None:
            rollback = self._new_deployment(service, previous["taskDefinition"])
            # The previous revision's tasks never stopped: a rolling update at the default minimumHealthyPercent
            # (100) drains them only once new tasks are healthy, and these never were. They serve on.
            running = int(previous.get("runningCount") or 0)
            rollback.update(runningCount=running, pendingCount=max(0, int(service.desired_count) - running))
            self._plans[rollback["id"]] = _Plan(failure=None, rollback=True)
            deployment["status"] = "ACTIVE"
            service.task_definition = previous["taskDefinition"]
            service.deployments = [rollback, deployment]
            self._event(
                service,
                f"(service {service.name}) rolling back to deployment {rollback['id']} "
                f"(task definition {previous['taskDefinition']}): "
                f"deployment {deployment['id']} failed ({failure.reason}).",
            )

    def _stopped_service_task(
        self, backend: Any, service: Any, deployment: dict[str, Any], failure: _RolloutFailure
    ) -> Any:
        from moto.ecs.models import Task

        if not deployment.get("taskDefinition"):
            return None
        task_definition = backend.describe_task_definition(deployment["taskDefinition"])
        networking = service.network_configuration or None
        if task_definition.network_mode == "awsvpc" and not networking:
            # moto insists on a network configuration for awsvpc tasks; the ENI is not what this task is about.
            task_definition = copy.copy(task_definition)
            task_definition.network_mode = "bridge"
        task: Any = Task(
            cluster=backend.clusters[service.cluster_name],
            task_definition=task_definition,
            container_instance_arn=None,
            resource_requirements=None,
            backend=backend,
            group=f"service:{service.name}",
            launch_type=service.launch_type or "",
            started_by=deployment["id"],
            networking_configuration=networking,
        )
        now = _now()
        task.created_at = now
        task.started_at = now
        task.desired_status = "STOPPED"
        task.stop_code = STOP_CODE_EXITED
        task.stopped_reason = REASON_EXITED
        task.stopping_at = now
        task.execution_stopped_at = now
        task.stopped_at = now
        container = task.containers[0]
        container.last_status = "STOPPED"
        container.exitCode = failure.exit_code
        container.reason = failure.reason
        _freeze_status(task, "STOPPED")
        backend.tasks.setdefault(service.cluster_name, {})[task.task_arn] = task
        return task

    # -- installation ----------------------------------------------------------------------------------------------

    def install(self) -> None:
        from moto.core.responses import ActionResult
        from moto.ecs.exceptions import ECSException
        from moto.ecs.models import EC2ContainerServiceBackend
        from moto.ecs.responses import EC2ContainerServiceResponse

        seam = self
        original_run_task = EC2ContainerServiceBackend.run_task
        original_stop_task = EC2ContainerServiceBackend.stop_task
        original_update_service = EC2ContainerServiceBackend.update_service
        original_describe_services = EC2ContainerServiceBackend.describe_services
        original_describe_tasks = EC2ContainerServiceBackend.describe_tasks
        original_list_tasks = EC2ContainerServiceBackend.list_tasks
        original_run_task_response = EC2ContainerServiceResponse.run_task
        original_create_service_response = EC2ContainerServiceResponse.create_service

        original_requirements = EC2ContainerServiceBackend._calculate_task_resource_requirements

        def calculate_task_resource_requirements(task_definition: Any) -> Any:
            # Fargate containers may leave memory to the task; moto adds None and fails (HTTP 500) without this.
            memory_keys = ("memory", "memoryReservation", "Memory", "MemoryReservation")
            if all(any(c.get(k) is not None for k in memory_keys) for c in task_definition.container_definitions):
                return original_requirements(task_definition)
            defaulted = copy.copy(task_definition)
            defaulted.container_definitions = [
                c if any(c.get(k) is not None for k in memory_keys) else {**c, "memory": 0}
                for c in task_definition.container_definitions
            ]
            return original_requirements(defaulted)

        class ConflictException(ECSException):
            code = "ConflictException"

            def __init__(self, message: str, resource_ids: list[str]) -> None:
                super().__init__(message)
                self.resource_ids = resource_ids

        def run_task(
            backend: Any, cluster_str: str, task_definition_str: str, count: int, overrides: Any, *a: Any, **kw: Any
        ) -> list[Any]:
            tasks: list[Any] = original_run_task(backend, cluster_str, task_definition_str, count, overrides, *a, **kw)
            for task in tasks:
                seam._start(backend, task, overrides)
            return tasks

        def stop_task(backend: Any, cluster_str: str, task_str: str, reason: str) -> Any:
            run = seam.run_for(task_str)
            if run is None or run._process is None:
                return original_stop_task(backend, cluster_str, task_str, reason)
            seam._stop(run, reason or "Task stopped by user")
            return run._task

        def update_service(backend: Any, service_properties: dict[str, Any]) -> Any:
            service = backend._get_service(
                service_properties.get("cluster", "default"), service_properties["service"].split("/")[-1]
            )
            before = [dict(d) for d in service.deployments]
            task_definition_before = service.task_definition
            force = bool(service_properties.get("force_new_deployment"))
            updated = original_update_service(backend, service_properties)
            if service.deployment_controller.get("type", "ECS") != "ECS":
                return updated
            if force or service.task_definition != task_definition_before:
                with seam._lock:
                    deployment = seam._new_deployment(updated, updated.task_definition)
                    failure = seam._failing.get(updated.name)
                    if failure is not None:
                        seam._plans[deployment["id"]] = _Plan(failure=failure)
                    for old in before:  # moto renamed the PRIMARY in place: put the old ones back, demoted
                        old["status"] = "ACTIVE"
                    updated.deployments = [deployment, *before]
            return updated

        def describe_services(backend: Any, *a: Any, **kw: Any) -> Any:
            seam._advance_rollouts(backend)
            return original_describe_services(backend, *a, **kw)

        def describe_tasks(backend: Any, *a: Any, **kw: Any) -> Any:
            seam._advance_rollouts(backend)
            return original_describe_tasks(backend, *a, **kw)

        def list_tasks(backend: Any, *a: Any, **kw: Any) -> Any:
            seam._advance_rollouts(backend)
            return original_list_tasks(backend, *a, **kw)

        def run_task_response(response: Any) -> Any:
            token = response._get_param("clientToken")
            if not token:
                return original_run_task_response(response)
            backend = response.ecs_backend
            cluster = backend._get_cluster(response._get_param("cluster", "default"))
            params = {k: v for k, v in (response._get_params() or {}).items() if k != "clientToken"}
            fingerprint = json.dumps(params, sort_keys=True, default=str)
            key = (backend.account_id, backend.region_name, cluster.name, str(token))
            with seam._lock:
                known = seam._tokens.get(key)
                if known is not None:
                    if known.fingerprint != fingerprint:
                        raise ConflictException(
                            "The request uses the same client token as a previous, but non-identical request. "
                            "Do not reuse a client token with different requests, unless the requests are identical.",
                            known.task_arns,
                        )
                    cluster_tasks = backend.tasks.get(cluster.name, {})
                    tasks = [cluster_tasks[arn] for arn in known.task_arns if arn in cluster_tasks]
                    return ActionResult({"tasks": tasks, "failures": []})
                result = original_run_task_response(response)
                payload: Any = result.result if isinstance(result, ActionResult) else None
                created = (payload or {}).get("tasks", [])
                seam._tokens[key] = _TokenRecord(fingerprint=fingerprint, task_arns=[t.task_arn for t in created])
                return result

        def create_service_response(response: Any) -> Any:
            result = original_create_service_response(response)
            configuration = response._get_param("deploymentConfiguration")
            if configuration and isinstance(result, ActionResult):
                payload: Any = result.result
                service = (payload or {}).get("service")
                if service is not None:
                    service.deployment_configuration = configuration
            return result

        patches = PatchSet(
            "ecs",
            [
                AttributePatch(EC2ContainerServiceBackend, "run_task", run_task),
                AttributePatch(
                    EC2ContainerServiceBackend,
                    "_calculate_task_resource_requirements",
                    staticmethod(calculate_task_resource_requirements),
                ),
                AttributePatch(EC2ContainerServiceBackend, "stop_task", stop_task),
                AttributePatch(EC2ContainerServiceBackend, "update_service", update_service),
                AttributePatch(EC2ContainerServiceBackend, "describe_services", describe_services),
                AttributePatch(EC2ContainerServiceBackend, "describe_tasks", describe_tasks),
                AttributePatch(EC2ContainerServiceBackend, "list_tasks", list_tasks),
                AttributePatch(EC2ContainerServiceResponse, "run_task", run_task_response),
                AttributePatch(EC2ContainerServiceResponse, "create_service", create_service_response),
            ],
        )
        self._apply_patches(patches)

    def uninstall(self) -> None:
        self.shutdown()
        self._revert_patches()


def _signal_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)


def _secret_value(account_id: str, region: str, value_from: str) -> str:
    """A container secret's value from moto: a Secrets Manager ARN (optionally ``:json-key:stage:version``) or an SSM
    parameter name / ARN."""
    if value_from.startswith("arn:") and ":secretsmanager:" in value_from:
        from moto.secretsmanager.models import secretsmanager_backends

        parts = value_from.split(":")
        secret_arn = ":".join(parts[:7])
        json_key = parts[7] if len(parts) > 7 and parts[7] else None
        stage = parts[8] if len(parts) > 8 and parts[8] else None
        version = parts[9] if len(parts) > 9 and parts[9] else None
        secret_region = parts[3] or region
        backend: Any = secretsmanager_backends[account_id][secret_region]
        value = backend.get_secret_value(secret_arn, version, stage)
        text = str(value.get("SecretString", ""))
        if json_key is None:
            return text
        return str(json.loads(text)[json_key])
    from moto.ssm.models import ssm_backends

    parameter_region = (value_from.split(":")[3] or region) if value_from.startswith("arn:") else region
    parameter = ssm_backends[account_id][parameter_region].get_parameter(value_from)  # moto strips an ARN itself
    if parameter is None:
        raise KeyError(f"parameter {value_from} not found")
    return str(parameter.value)
