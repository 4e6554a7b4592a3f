"""Check migration task: judge the migration container (not sidecars) once the task stopped; enforce the deadline.

The state machine checks right after Run migration task. Still running: ``done`` stays false and the state
machine waits ``nextWaitSeconds`` (1, 2, 4 ... up to MigrationPollSeconds) and checks again, until the deadline
carried in the state, when the task is stopped and ``MigrationTimeoutError`` ends the release. Stopped: exit code 0 is
success; anything else is ``MigrationFailedError`` with the stop code, reasons and the tail of the container's
CloudWatch log, so the incident channel sees why without opening the console.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import ClientError
from msgspec import structs

from release_steps import clients, config
from release_steps.aws_errors import error_code, error_message
from release_steps.config import EcsSettings
from release_steps.ecs import EcsClient, EcsTask, LogLocation
from release_steps.errors import InvalidInputError, MigrationFailedError, MigrationTimeoutError
from release_steps.migration_log import last_event, parse_lines
from release_steps.models import MigrationStepInput, MigrationTask, PlannedMigration
from release_steps.observability import logger, parse_event, step
from release_steps.timeutil import next_poll_seconds, parse_iso, seconds_between, to_iso, utc_now

if TYPE_CHECKING:
    from mypy_boto3_logs import CloudWatchLogsClient

STEP_NAME = "Check migration task"
LOG_TAIL_MAX_CHARS = 4000  # keeps the error (and the Step Functions cause) readable and well under its limits
LOG_LINE_MAX_CHARS = 400
PLAN_LOG_MAX_PAGES = 5  # GetLogEvents pages (up to 10,000 events / 1 MB each) read for the plan; bounded
STATEMENT_MAX_CHARS = 200
EARLIER_LINES = 3


def _one_line(text: str, limit: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


@dataclass(frozen=True)
class LogTail:
    """The container's last log messages, or why there are none (``where`` names the stream either way)."""

    messages: list[str]
    where: str
    problem: str | None = None


def read_log_tail(logs: CloudWatchLogsClient, location: LogLocation | None, container: str, lines: int) -> LogTail:
    """The last ``lines`` messages of a container's log stream, or why they are unavailable (never raises)."""
    if lines == 0:
        return LogTail([], "", "log tail off (MIGRATION_LOG_TAIL_LINES=0)")
    if location is None:
        return LogTail([], "", f"no log tail: container {container} has no awslogs log configuration")
    if location.stream is None:
        return LogTail([], location.group, f"no log tail: log group {location.group} has no awslogs-stream-prefix")
    where = f"{location.group} {location.stream}"
    try:
        response = logs.get_log_events(
            logGroupName=location.group, logStreamName=location.stream, startFromHead=False, limit=lines
        )
    except ClientError as e:
        if error_code(e) == "ResourceNotFoundException":
            return LogTail(
                [], where, f"no log tail: log stream {where} does not exist (the container may never have started)"
            )
        return LogTail([], where, f"no log tail: reading {where} failed ({error_code(e)}: {error_message(e)})")
    messages = [str(event.get("message", "")) for event in response.get("events") or []][-lines:]
    if not messages:
        return LogTail([], where, f"no log tail: log stream {where} is empty")
    return LogTail(messages, where)


def log_tail(logs: CloudWatchLogsClient, location: LogLocation | None, container: str, lines: int) -> str:
    """The last ``lines`` lines of a container's log stream on one line, or why they are unavailable (never raises)."""
    tail = read_log_tail(logs, location, container, lines)
    if tail.problem:
        return tail.problem
    return _raw_tail(tail)


def _raw_tail(tail: LogTail) -> str:
    text = " | ".join(_one_line(message, LOG_LINE_MAX_CHARS) for message in tail.messages)
    if len(text) > LOG_TAIL_MAX_CHARS:
        text = "…" + text[-(LOG_TAIL_MAX_CHARS - 1) :]
    return f"last {len(tail.messages)} log lines of {tail.where}: {text}"


def runner_cause(tail: LogTail) -> str | None:
    """The runner's own account of its failure, picked from the tail by event name (``<command>_failed``): file,
    statement, SQLSTATE and PostgreSQL's message first, then at most a few earlier warnings; None without one."""
    events = parse_lines(tail.messages)
    failure = last_event(events)
    if failure is None:
        return None
    f = failure.fields
    if "pg_error" in f:
        where = f"statement {f.get('statement_number')} (line {f.get('line')})"
        cause = (
            f"{f.get('file')} failed at {where}: SQLSTATE {f.get('sqlstate') or 'unknown'}: "
            f"{_one_line(str(f.get('pg_error')), LOG_LINE_MAX_CHARS)}; statement: "
            f"{_one_line(str(f.get('statement', '')), STATEMENT_MAX_CHARS)}"
        )
        if f.get("transactional") is False:
            cause += " (no-transaction file: statements before it stay applied)"
        elif f.get("transactional") is True:
            cause += " (rolled back, history unchanged)"
    else:
        cause = _one_line(str(f.get("message", failure.event)), LOG_LINE_MAX_CHARS)
        if f.get("file"):
            cause = f"{f.get('file')}: {cause}" if str(f.get("file")) not in cause else cause
    cause += f" [runner {failure.event}: {f.get('error', 'error')}, exit code {f.get('exit_code', 'unknown')}]"
    # Earlier warnings and errors with something to say (a plan_file line has no message: the failure line has it).
    before = [
        e for e in events[: events.index(failure)] if e.level not in ("INFO", "DEBUG") and e.fields.get("message")
    ][-EARLIER_LINES:]
    if before:
        cause += "; before it: " + " | ".join(
            f"{e.level} {e.event}: {_one_line(str(e.fields.get('message', '')), 200)}".rstrip(": ") for e in before
        )
    return cause


def failure_message(task: EcsTask, settings: EcsSettings, ecs: EcsClient, logs: CloudWatchLogsClient) -> str:
    """One line: the runner's failure line when the log has one (file, statement, SQLSTATE, message), then the exit
    code, stop code and reasons of the migration container, then the log tail (raw only without a failure line)."""
    name = settings.migration_container_name
    container = task.container(name)
    if container is None:
        present = ", ".join(c.name for c in task.containers)
        container_part = f"container {name} is not in the task (containers: {present})"
    else:
        exit_code = container.exit_code if container.exit_code is not None else "none (it did not exit normally)"
        container_part = f"container {name} exit code {exit_code}"
        if container.reason:
            container_part += f", container reason: {_one_line(container.reason, LOG_LINE_MAX_CHARS)}"
    stopped_reason = _one_line(task.stopped_reason, LOG_LINE_MAX_CHARS) if task.stopped_reason else "none"
    cause: str | None = None
    try:
        location = ecs.describe_task_definition(task.task_definition_arn).log_location(name, task.id)
        tail = read_log_tail(logs, location, name, settings.migration_log_tail_lines)
        cause = runner_cause(tail)
        if tail.problem:
            log_part = tail.problem
        elif cause is not None:
            log_part = f"log: {tail.where}"
        else:
            log_part = _raw_tail(tail)
    except Exception as e:  # the verdict is known; a log lookup problem must not hide it
        logger.warning("log tail lookup failed", extra={"error": repr(e)})
        log_part = f"no log tail: the task definition lookup failed ({type(e).__name__})"
    task_part = (
        f"migration task {task.arn}: {container_part}; stop code {task.stop_code or 'none'}; "
        f"stopped reason: {stopped_reason}; {log_part}"
    )
    if cause is not None:
        return f"migration failed: {cause}; {task_part}"
    return f"{task_part.replace(': ', ' failed: ', 1)}"


# The runner logs the model's Python names (``statements_total``); ``load`` reads the state's camelCase
# (``statementsTotal``): the model's own field table maps one to the other.
_PLAN_KEYS = {info.name: info.encode_name for info in structs.fields(PlannedMigration)}


def read_plan(
    logs: CloudWatchLogsClient, location: LogLocation | None
) -> tuple[list[PlannedMigration] | None, str | None]:
    """The runner's ``plan_file`` events (marked applied by ``migration_applied``) from the container's log stream.

    The log is the channel because it is the runner's only output ECS keeps: a task's exit code is all DescribeTasks
    says. Returns (plan, None), or (None, why not) — a missing plan never hides the verdict.
    """
    if location is None or location.stream is None:
        return None, "no plan: the migration container has no awslogs stream to read it from"
    messages: list[str] = []
    token: str | None = None
    try:
        for _ in range(PLAN_LOG_MAX_PAGES):
            if token:
                page = logs.get_log_events(
                    logGroupName=location.group, logStreamName=location.stream, startFromHead=True, nextToken=token
                )
            else:
                page = logs.get_log_events(
                    logGroupName=location.group, logStreamName=location.stream, startFromHead=True
                )
            messages += [str(event.get("message", "")) for event in page.get("events") or []]
            if not page.get("events") or page.get("nextForwardToken") in (None, token):
                break
            token = page.get("nextForwardToken")
    except ClientError as e:
        return None, f"no plan: reading {location.group} {location.stream} failed ({error_code(e)}: {error_message(e)})"
    planned: dict[str, PlannedMigration] = {}
    for event in parse_lines(messages):
        if event.event == "plan_file":
            try:
                item = PlannedMigration.load({_PLAN_KEYS.get(key, key): value for key, value in event.fields.items()})
            except ValueError as e:
                return None, f"no plan: a plan_file line does not match the expected shape ({_one_line(str(e), 200)})"
            planned[item.file] = item
        elif event.event == "migration_applied" and event.fields.get("file") in planned:
            file = str(event.fields["file"])
            planned[file] = structs.replace(planned[file], applied=True, duration_ms=event.fields.get("duration_ms"))
    return list(planned.values()), None


def _plan_of(task: EcsTask, settings: EcsSettings, ecs: EcsClient, logs: CloudWatchLogsClient) -> dict[str, Any]:
    try:
        location = ecs.describe_task_definition(task.task_definition_arn).log_location(
            settings.migration_container_name, task.id
        )
        plan, note = read_plan(logs, location)
    except Exception as e:  # the verdict is known; a log lookup problem must not hide it
        logger.warning("plan lookup failed", extra={"error": repr(e)})
        plan, note = None, f"no plan: the task definition lookup failed ({type(e).__name__})"
    return {"plan": plan, "plan_note": note}


def check_migration(
    state: MigrationStepInput,
    settings: EcsSettings,
    ecs: EcsClient,
    logs: CloudWatchLogsClient,
    now: datetime | None = None,
) -> MigrationTask:
    """Judge the migration task once; ``done`` true on success, a named error on failure or timeout."""
    migration = state.migration
    if migration.status == "SKIPPED" or migration.done:
        return migration  # dry run, or already judged: nothing to look at
    if not migration.task_arn:
        raise InvalidInputError("invalid step input: migration.taskArn: missing for a migration that was started")
    now = now or utc_now()
    deadline = parse_iso(migration.deadline, "migration.deadline")
    checks = migration.checks + 1

    task = ecs.describe_task(migration.task_arn)
    if task is None:
        raise MigrationFailedError(
            f"migration task {migration.task_arn} was not found in cluster {ecs.cluster} "
            "(ECS keeps stopped tasks for about an hour)"
        )
    started_at = to_iso(task.started_at) if task.started_at else migration.started_at

    if not task.is_stopped:
        if now > deadline:
            ecs.stop_task(task.arn, f"deployflow: migration exceeded its deadline {migration.deadline}")
            raise MigrationTimeoutError(
                f"migration task {task.arn} was still {task.last_status} at its deadline {migration.deadline} "
                f"(MIGRATION_TIMEOUT_SECONDS={settings.migration_timeout_seconds}, {checks} checks); it was stopped"
            )
        wait = next_poll_seconds(checks, state.poll.migration_seconds)
        return structs.replace(
            migration, status=task.phase, checks=checks, started_at=started_at, next_wait_seconds=wait
        )

    if not task.has_completed(settings.migration_container_name):
        raise MigrationFailedError(failure_message(task, settings, ecs, logs))

    logger.info("migration succeeded", extra={"task_arn": task.arn, "checks": checks})
    return structs.replace(
        migration,
        status="STOPPED",
        done=True,
        exit_code=0,
        stop_code=task.stop_code,
        stopped_reason=task.stopped_reason,
        started_at=started_at,
        stopped_at=to_iso(task.stopped_at) if task.stopped_at else None,
        duration_seconds=seconds_between(task.started_at, task.stopped_at),
        checks=checks,
        **_plan_of(task, settings, ecs, logs),
    )


@step(STEP_NAME)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Check migration task."""
    state = parse_event(MigrationStepInput, event)
    settings = config.ecs_settings()
    ecs = EcsClient(clients.ecs(), settings.cluster)
    return check_migration(state, settings, ecs, clients.logs()).to_json()
