"""Named release scenarios on the local stack: each sets the world up, runs the real state machine, and checks
the outcome and its side effects through independent clients.

``deployflow local run --scenario NAME`` and the execution-path tests run the same code; a scenario's checks are
the evidence that it behaved as named (e.g. after ``migration-fails`` no service was restarted and the migration
history is unchanged).
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dbmigrate.files import discover_migrations

from deployflow.local.inspect import Snapshot, migration_history
from deployflow.local.stack import CLUSTER, DEFAULT_TAG, SERVICES, TOPICS, LocalStack, create_service
from deployflow.local.template import ASL_PATH, REPO_ROOT, catch_target, state_of
from deployflow.progress import ExecutionOutcome, HistoryTracker, ProgressEvent, follow, read_history
from deployflow.render import aws_cli_options, redrive_command

Observer = Callable[[ProgressEvent], None]
MAIN_TABLES = ("clients", "rules", "endpoints", "notifications")
# The states the scenarios' checks name, as the ASL names them (found by the function each one invokes).
TOPICS_STATE = state_of("CreateTopicsFunction")
VALIDATE_STATE = state_of("PrepareFunction")
RUN_MIGRATION_STATE = state_of("RunMigrationFunction")
SUMMARIZE_STATE = state_of("SummarizeFailureFunction")

BROKEN_MIGRATION = """\
-- A release's migration that fails half-way: the table and the column must not survive the rollback.
CREATE TABLE release_probe (id bigint PRIMARY KEY);
INSERT INTO release_probe VALUES (1);
ALTER TABLE clients ADD COLUMN tier text NOT NULL DEFAULT 'standard';
SELECT deployflow_no_such_function();
"""
SLOW_MIGRATION = """\
-- A migration that outlives the workflow's deadline (e.g. a table rewrite on a big table).
SELECT pg_sleep(600);
"""
PENDING_MIGRATION = """\
-- The dry run's pending file: a constant default needs no rewrite, but ALTER TABLE still takes ACCESS EXCLUSIVE.
ALTER TABLE rules ADD COLUMN priority integer NOT NULL DEFAULT 0;
"""
UNSAFE_MIGRATION = """\
-- Drops a column the running service version may still read: squawk's ban-drop-column.
ALTER TABLE notifications DROP COLUMN last_error;
"""
UNSAFE_WAIVER = (
    "-- deployflow:allow ban-drop-column: last_error unread since service v41 (2026-10), the oldest running\n"
)


@dataclass(frozen=True)
class Check:
    """One independent check of a side effect: what was checked, whether it held, what was seen."""

    description: str
    ok: bool
    detail: str = ""


@dataclass
class ScenarioResult:
    """What a scenario run produced: the executions (the scenario's main one last), snapshots, checks."""

    name: str
    expected_status: str
    expected_error: str | None
    outcomes: list[ExecutionOutcome]
    before: Snapshot
    after: Snapshot
    checks: list[Check] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)  # what the scenario ran on an execution, as printed

    @property
    def outcome(self) -> ExecutionOutcome:
        return self.outcomes[-1]

    @property
    def as_expected(self) -> bool:
        """The main execution ended as the scenario names, and every check held."""
        status_ok = self.outcome.status == self.expected_status
        error_ok = self.expected_error is None or self.outcome.error == self.expected_error
        return status_ok and error_ok and all(c.ok for c in self.checks)


@dataclass(frozen=True)
class Scenario:
    """A named scenario: what it shows, what it expects, and how it runs."""

    name: str
    summary: str
    expected_status: str
    expected_error: str | None
    body: Callable[[LocalStack, Observer | None], ScenarioResult]

    def run(self, stack: LocalStack, observer: Observer | None) -> ScenarioResult:
        """Run the scenario; its checks end with who holds the one-release lock afterwards."""
        result = self.body(stack, observer)
        result.checks.append(lock_after(stack, result.outcome))
        return result


# --- helpers ----------------------------------------------------------------------------------------------------


def execute(
    stack: LocalStack, execution_input: Any, observer: Observer | None, name: str | None = None
) -> ExecutionOutcome:
    """Start the state machine, follow the execution to its end, and hand its status-change event to the rules'
    targets as EventBridge would (moto emits none): an execution stopped at its step is notified."""
    arn = stack.start_execution(execution_input, name=name)
    outcome = follow(stack.client("stepfunctions"), arn, observer, poll_seconds=0.1, timeout_seconds=600)
    stack.deliver_status_change(arn)
    return outcome


def lock_after(stack: LocalStack, outcome: ExecutionOutcome) -> Check:
    """Who holds the one-release lock once ``outcome``'s execution ended: nobody after a success, a caught failure
    (the failure path gives it back), an abort or a timeout; the execution itself when it failed at a step (its
    redrive is its recovery: ``deployflow abandon`` it, or redrive it, before another release can start)."""
    holder = stack.lock_holder()
    kept = outcome.status == "FAILED" and SUMMARIZE_STATE not in outcome.path  # failed at its step, not caught
    expected = outcome.execution_arn if kept else None
    seen = holder.execution_arn if holder is not None else None
    name = outcome.execution_arn.rsplit(":", 1)[-1]
    what = f"the release lock is held by {name} (failed at a step)" if kept else "the release lock is free"
    return Check(what, seen == expected, f"held by {seen}" if seen else "free")


def apply_migrations(stack: LocalStack, migrations_dir: Path | None = None) -> None:
    """Bring the database to head with the real runner, as an earlier release would have."""
    env = {**stack.migration_env(), "PATH": "/usr/bin:/bin"}
    if migrations_dir is not None:
        env["MIGRATIONS_DIR"] = str(migrations_dir)
    subprocess.run([sys.executable, "-m", "dbmigrate", "migrate"], env=env, check=True, capture_output=True)


def migrations_with(stack: LocalStack, name: str, sql: str) -> Path:
    """A copy of sql/ plus one more migration file, in the stack's work directory."""
    target = stack.workdir / f"migrations-{name.removesuffix('.sql')}"
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(REPO_ROOT / "sql", target, ignore=shutil.ignore_patterns("*.md"))
    (target / name).write_text(sql, encoding="utf-8")
    return target


@contextmanager
def overrides(
    stack: LocalStack,
    *,
    task_env: Mapping[str, str] | None = None,
    function_env: Mapping[str, str] | None = None,
    failing_service: str | None = None,
    rollout_seconds: float | None = None,
) -> Iterator[None]:
    """Change the local world for one scenario, and put it back afterwards."""
    aws = stack.aws
    assert aws is not None
    saved_task = dict(aws.ecs.environment)
    saved_fn = dict(aws.lambdas.environment)
    saved_rollout = aws.ecs.rollout_seconds
    aws.ecs.environment.update(task_env or {})
    aws.lambdas.environment.update(function_env or {})
    if failing_service:
        aws.ecs.fail_rollouts(failing_service, reason="alert-matcher: health check failed (connection refused :8080)")
    if rollout_seconds is not None:
        aws.ecs.rollout_seconds = rollout_seconds
    try:
        yield
    finally:
        aws.ecs.environment.clear()
        aws.ecs.environment.update(saved_task)
        aws.lambdas.environment.clear()
        aws.lambdas.environment.update(saved_fn)
        aws.ecs.rollout_seconds = saved_rollout
        if failing_service:
            aws.ecs.complete_rollouts(failing_service)


def _unchanged(what: str, before: object, after: object) -> Check:
    return Check(f"{what} unchanged", before == after, "" if before == after else f"before {before}, after {after}")


def _nothing_changed(before: Snapshot, after: Snapshot) -> list[Check]:
    return [
        _unchanged("database tables", before.tables, after.tables),
        _unchanged("migration history", before.history, after.history),
        _unchanged("Kafka topics", before.topics, after.topics),
        _unchanged(
            "migration task definition revisions", before.task_definition_revisions, after.task_definition_revisions
        ),
        _unchanged("ECS tasks started", before.tasks_started, after.tasks_started),
        _unchanged("services' deployments", before.primary_deployments, after.primary_deployments),
    ]


def _released(stack: LocalStack, before: Snapshot, after: Snapshot) -> list[Check]:
    versions = [int(v) for v, _ in after.history]
    head = [m.version for m in discover_migrations(REPO_ROOT / "sql")]
    topics = dict(after.topics)
    restarted = [
        s for (s, d), (_, d0) in zip(after.primary_deployments, before.primary_deployments, strict=True) if d != d0
    ]
    return [
        Check(
            f"the {len(MAIN_TABLES)} main tables exist ({', '.join(MAIN_TABLES)})",
            set(MAIN_TABLES) <= set(after.tables),
            "missing: " + ", ".join(t for t in MAIN_TABLES if t not in after.tables)
            if not set(MAIN_TABLES) <= set(after.tables)
            else "",
        ),
        Check("migration history at head", versions == head, ", ".join(map(str, versions)) or "(empty)"),
        Check(
            "the four topics have 9 partitions",
            all(topics.get(t) == 9 for t in TOPICS),
            ", ".join(f"{t}={topics.get(t)}" for t in TOPICS),
        ),
        Check("every service got a new deployment", sorted(restarted) == sorted(SERVICES), ", ".join(restarted)),
    ]


def _error_mentions(outcome: ExecutionOutcome, *needles: str) -> Check:
    cause = outcome.cause or ""
    missing = [n for n in needles if n not in cause]
    return Check(f"the cause names {', '.join(needles)}", not missing, "" if not missing else cause[:400])


def _no_service_restarted(before: Snapshot, after: Snapshot) -> Check:
    return _unchanged(
        "services' deployments (no service restarted)", before.primary_deployments, after.primary_deployments
    )


def _result(
    scenario: str,
    status: str,
    error: str | None,
    outcomes: list[ExecutionOutcome],
    before: Snapshot,
    after: Snapshot,
    checks: list[Check],
) -> ScenarioResult:
    return ScenarioResult(scenario, status, error, outcomes, before, after, checks)


# --- the scenarios ------------------------------------------------------------------------------------------------


def _happy(stack: LocalStack, observer: Observer | None) -> ScenarioResult:
    before = stack.snapshot()
    outcome = execute(stack, {"imageTag": DEFAULT_TAG}, observer)
    after = stack.snapshot()
    checks = _released(stack, before, after)
    record = outcome.output or {}
    checks.append(
        Check(
            "the execution output is the deployment record",
            record.get("outcome") == "succeeded",
            str(record.get("outcome")),
        )
    )
    return _result("happy", "SUCCEEDED", None, [outcome], before, after, checks)


def _image_missing(stack: LocalStack, observer: Observer | None) -> ScenarioResult:
    before = stack.snapshot()
    outcome = execute(stack, {"imageTag": "2026-11-25.404"}, observer)
    after = stack.snapshot()
    checks = [_error_mentions(outcome, "2026-11-25.404"), *_nothing_changed(before, after)]
    return _result("image-missing", "FAILED", "ImageNotFoundError", [outcome], before, after, checks)


def _migration_fails(stack: LocalStack, observer: Observer | None) -> ScenarioResult:
    apply_migrations(stack)
    broken = migrations_with(stack, "V0002__add_client_tier.sql", BROKEN_MIGRATION)
    before = stack.snapshot()
    with overrides(stack, task_env={"MIGRATIONS_DIR": str(broken)}):
        outcome = execute(stack, {"imageTag": DEFAULT_TAG}, observer)
    after = stack.snapshot()
    checks = [
        _error_mentions(outcome, "V0002__add_client_tier.sql", "42883"),
        _unchanged("migration history", before.history, after.history),
        _unchanged("database tables (release_probe rolled back)", before.tables, after.tables),
        _column_absent(stack, "clients", "tier"),
        _no_service_restarted(before, after),
        _unchanged("Kafka topics (never reached)", before.topics, after.topics),
    ]
    return _result("migration-fails", "FAILED", "MigrationFailedError", [outcome], before, after, checks)


def _column_absent(stack: LocalStack, table: str, column: str) -> Check:
    assert stack.database is not None
    with stack.database.connect() as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM information_schema.columns WHERE table_name = %s AND column_name = %s",
            (table, column),
        )
        row = cur.fetchone()
    count = row[0] if row else 0
    return Check(f"column {table}.{column} absent (rolled back)", count == 0, f"found {count}")


def _migration_timeout(stack: LocalStack, observer: Observer | None) -> ScenarioResult:
    apply_migrations(stack)
    slow = migrations_with(stack, "V0002__rewrite_notifications.sql", SLOW_MIGRATION)
    before = stack.snapshot()
    with overrides(stack, task_env={"MIGRATIONS_DIR": str(slow)}, function_env={"MIGRATION_TIMEOUT_SECONDS": "4"}):
        outcome = execute(stack, {"imageTag": DEFAULT_TAG}, observer)
    aws = stack.aws
    assert aws is not None
    stopped = aws.ecs.wait_idle(timeout=30)
    after = stack.snapshot()
    runs = aws.ecs.runs
    last = runs[-1] if runs else None
    checks = [
        Check(
            "the migration task was stopped",
            stopped and last is not None and last.stopped,
            f"{len(runs)} task(s) started",
        ),
        _unchanged("migration history", before.history, after.history),
        _no_service_restarted(before, after),
    ]
    return _result("migration-timeout", "FAILED", "MigrationTimeoutError", [outcome], before, after, checks)


def _schema_drift(stack: LocalStack, observer: Observer | None) -> ScenarioResult:
    apply_migrations(stack)
    assert stack.database is not None
    with stack.database.connect() as conn, conn.cursor() as cur:
        # Someone "fixed" production by hand: a column dropped and an index gone, behind the runner's back.
        cur.execute("ALTER TABLE notifications DROP COLUMN last_error")
        cur.execute("DROP INDEX notifications_pending_created_at_idx")
        conn.commit()
    before = stack.snapshot()
    outcome = execute(stack, {"imageTag": DEFAULT_TAG}, observer)
    after = stack.snapshot()
    checks = [
        _error_mentions(outcome, "notifications", "last_error", "notifications_pending_created_at_idx"),
        _unchanged("migration history (the runner had nothing to do)", before.history, after.history),
        _no_service_restarted(before, after),
        _unchanged("Kafka topics (never reached)", before.topics, after.topics),
    ]
    return _result("schema-drift", "FAILED", "SchemaMismatchError", [outcome], before, after, checks)


def _kafka_down(stack: LocalStack, observer: Observer | None) -> ScenarioResult:
    stack.stop_kafka()
    before = stack.snapshot()
    outcome = execute(stack, {"imageTag": DEFAULT_TAG}, observer)
    after = stack.snapshot()
    topics_visit = [v for v in outcome.visits if v.name == TOPICS_STATE]
    attempts = topics_visit[-1].attempts if topics_visit else 0
    aws = stack.aws
    assert aws is not None
    waits = [d for d in aws.time.delays if d.kind == "retry"]
    caps = _retry_caps(TOPICS_STATE, "KafkaUnreachableError")
    checks = [
        Check("Create Kafka topics was retried (transient error)", attempts > 1, f"{attempts} attempt(s)"),
        Check(
            "retry delays back off: each within its cap (full jitter), the caps growing",
            _within_backoff([d.requested_seconds for d in waits], caps),
            ", ".join(f"{d.requested_seconds:.1f}s of {cap:g}s" for d, cap in zip(waits, caps, strict=False)),
        ),
        _no_service_restarted(before, after),
    ]
    return _result("kafka-down", "FAILED", "KafkaUnreachableError", [outcome], before, after, checks)


def _kafka_down_then_redrive(stack: LocalStack, observer: Observer | None) -> ScenarioResult:
    """kafka-down, then the broker comes back and the execution is redriven: it resumes at Create Kafka topics (the
    migration is not run again) and the release completes - one execution, one ARN, one history."""
    aws = stack.aws
    assert aws is not None
    sfn = stack.client("stepfunctions")
    stack.stop_kafka()
    before = stack.snapshot()
    arn = stack.start_execution({"imageTag": DEFAULT_TAG})
    tracker = HistoryTracker()
    failed = follow(sfn, arn, observer, poll_seconds=0.1, timeout_seconds=600, tracker=tracker)
    stack.deliver_status_change(arn)  # the stopped-at-step notification, with the command run below
    stopped = stack.snapshot()
    holder = stack.lock_holder()  # a release stopped at a step keeps the one-release lock: its redrive goes on
    stack.restart_kafka()
    command = redrive_command(arn, aws_cli_options(aws.region, None, aws.endpoint_url))
    if observer is not None:
        observer(ProgressEvent("command", command=command, at=datetime.now(UTC)))
    sfn.redrive_execution(executionArn=arn)  # the command's RedriveExecution call, made here with boto3
    outcome = follow(sfn, arn, observer, poll_seconds=0.1, timeout_seconds=600, tracker=tracker)
    after = stack.snapshot()
    described = sfn.describe_execution(executionArn=arn)
    redriven_at = [e["id"] for e in read_history(sfn, arn) if e["type"] == "ExecutionRedriven"]
    checks = [
        Check(
            "the first run stopped at Create Kafka topics with KafkaUnreachableError, uncaught (redrivable)",
            (failed.status, failed.error, failed.failed_state, failed.redrivable)
            == ("FAILED", "KafkaUnreachableError", TOPICS_STATE, True),
            f"{failed.status} {failed.error} at {failed.failed_state}",
        ),
        _unchanged("Kafka topics while the broker was down", before.topics, stopped.topics),
        Check(
            "while stopped it kept the release lock, and its redrive went on with it",
            holder is not None and holder.execution_arn == arn and outcome.status == "SUCCEEDED",
            f"held by {holder.execution_name if holder is not None else 'nobody'}; the redrive {outcome.status}",
        ),
        _no_service_restarted(before, stopped),
        Check(
            "the same execution was redriven once (redriveCount 1, one ExecutionRedriven event)",
            outcome.execution_arn == arn and described.get("redriveCount") == 1 and len(redriven_at) == 1,
            f"redriveCount {described.get('redriveCount')}, ExecutionRedriven events {redriven_at}",
        ),
        Check(
            "the redrive resumed at Create Kafka topics: the steps before it ran once",
            all(outcome.path.count(s) == 1 for s in (VALIDATE_STATE, RUN_MIGRATION_STATE))
            and outcome.path.count(TOPICS_STATE) == 2,
            " → ".join(outcome.path),
        ),
        Check(
            "one migration task ran (the redrive did not run it again)",
            after.tasks_started - before.tasks_started == 1,
            f"{after.tasks_started - before.tasks_started}",
        ),
        *_released(stack, before, after),
        _restarted_once(stack, before),
    ]
    return ScenarioResult(
        "kafka-down-then-redrive", "SUCCEEDED", None, [failed, outcome], before, after, checks, [command]
    )


def _restarted_once(stack: LocalStack, before: Snapshot) -> Check:
    """Each service completed exactly one new deployment since ``before`` (its ECS events), and it is the PRIMARY."""
    described = stack.client("ecs").describe_services(cluster=CLUSTER, services=list(SERVICES))["services"]
    old = dict(before.primary_deployments)
    new: dict[str, list[str]] = {}
    primaries: dict[str, str] = {}
    for service in described:
        name = str(service["serviceName"])
        messages = [str(e["message"]) for e in service["events"] if str(e["message"]).endswith("deployment completed.")]
        completed = [m.split("(deployment ", 1)[1].split(")", 1)[0] for m in messages if "(deployment " in m]
        new[name] = [d for d in completed if d != old.get(name)]
        primaries[name] = next(str(d["id"]) for d in service["deployments"] if d["status"] == "PRIMARY")
    return Check(
        "every service restarted once (one new deployment completed, now its PRIMARY)",
        sorted(new) == sorted(SERVICES) and all(ids == [primaries[n]] for n, ids in new.items()),
        ", ".join(f"{n}: {' '.join(ids) or 'none'}" for n, ids in sorted(new.items())),
    )


def _step_timeout(stack: LocalStack, observer: Observer | None) -> ScenarioResult:
    """The topic step outlives its function Timeout: its runtime freezes mid-invocation (as a stuck native call
    would; SIGSTOP, lambda_runtime.py) and an operator set the Timeout to 3 s. The emulator kills it and Step
    Functions fails the task with Sandbox.Timedout - not one of the workflow's terminal errors, so it is neither
    retried nor summarized."""
    aws = stack.aws
    assert aws is not None
    pool = aws.lambdas.pool
    if pool is None:
        raise RuntimeError("step-timeout needs the emulator runtime (StackOptions.lambda_runtime='emulator')")
    function = stack.function_name("CreateTopicsFunction")
    lambda_client = stack.client("lambda")
    configured = lambda_client.get_function_configuration(FunctionName=function)["Timeout"]
    before = stack.snapshot()
    lambda_client.update_function_configuration(FunctionName=function, Timeout=STEP_TIMEOUT_SECONDS)
    pool.hang_next_invocation(function)
    try:
        outcome = execute(stack, {"imageTag": DEFAULT_TAG}, observer)
        ended = datetime.now(UTC)
    finally:
        lambda_client.update_function_configuration(FunctionName=function, Timeout=configured)
    after = stack.snapshot()
    topics = [v for v in outcome.visits if v.name == TOPICS_STATE]
    errors = [e for v in topics for e, _ in v.errors]
    took = (ended - topics[-1].entered_at).total_seconds() if topics else None
    checks = [
        Check("Create Kafka topics failed with Sandbox.Timedout", errors == ["Sandbox.Timedout"], str(errors)),
        Check(
            f"the function Timeout ({STEP_TIMEOUT_SECONDS} s) ended the step",
            took is not None and STEP_TIMEOUT_SECONDS <= took < STEP_TIMEOUT_SECONDS + 10,
            f"{took:.1f}s" if took is not None else "never entered",
        ),
        Check(
            "not caught as a terminal error (no failure summary)",
            SUMMARIZE_STATE not in outcome.path,
            " -> ".join(outcome.path[-3:]),
        ),
        _error_mentions(outcome, f"Task timed out after {STEP_TIMEOUT_SECONDS}.00 seconds"),
        _no_service_restarted(before, after),
    ]
    return _result("step-timeout", "FAILED", "Sandbox.Timedout", [outcome], before, after, checks)


STEP_TIMEOUT_SECONDS = 8  # above create_topics.TIME_RESERVE_SECONDS: the step must get to run before it hangs


def _retry_caps(state: str, error: str) -> list[float]:
    """The delay cap of each retry the ASL allows ``state`` for ``error``: IntervalSeconds * BackoffRate^n, at most
    MaxDelaySeconds."""
    definition = json.loads(ASL_PATH.read_text(encoding="utf-8"))
    for retrier in definition["States"][state].get("Retry", []):
        if error in retrier["ErrorEquals"]:
            interval, rate = float(retrier.get("IntervalSeconds", 1)), float(retrier.get("BackoffRate", 2.0))
            ceiling = float(retrier.get("MaxDelaySeconds", math.inf))
            return [min(interval * rate**n, ceiling) for n in range(int(retrier.get("MaxAttempts", 3)))]
    return []


def _within_backoff(delays: list[float], caps: list[float]) -> bool:
    # Full jitter draws each delay in [0, cap]: single delays need not grow (comparing them fails now and then on a
    # correct run), but every one stays under its own cap, and the caps grow.
    return (
        len(delays) == len(caps) >= 2
        and caps[-1] > caps[0]
        and all(0 <= delay <= cap for delay, cap in zip(delays, caps, strict=True))
    )


def _service_fails(stack: LocalStack, observer: Observer | None) -> ScenarioResult:
    before = stack.snapshot()
    with overrides(stack, failing_service="alert-matcher"):
        outcome = execute(stack, {"imageTag": DEFAULT_TAG}, observer)
    after = stack.snapshot()
    checks = [_error_mentions(outcome, "alert-matcher")]
    return _result("service-fails", "FAILED", "ServiceDeploymentFailedError", [outcome], before, after, checks)


def _concurrent(stack: LocalStack, observer: Observer | None) -> ScenarioResult:
    before = stack.snapshot()
    with overrides(stack, rollout_seconds=4.0):
        first_arn = stack.start_execution({"imageTag": DEFAULT_TAG}, name=f"concurrent-first-{int(time.time())}")
        first: list[ExecutionOutcome] = []
        sfn = stack.client("stepfunctions")
        watcher = threading.Thread(target=lambda: first.append(follow(sfn, first_arn, observer, 0.1, 600)))
        watcher.start()
        wait_until_running(sfn, first_arn, state_of("CheckImageFunction"))
        second = execute(stack, {"imageTag": DEFAULT_TAG}, None, name=f"concurrent-second-{int(time.time())}")
        holder_after_refusal = stack.lock_holder()
        first_running = sfn.describe_execution(executionArn=first_arn)["status"] == "RUNNING"
        watcher.join(600)
    after = stack.snapshot()
    checks = [
        Check(
            "the second execution was refused",
            second.error == "DeploymentInProgressError",
            f"{second.status} {second.error}",
        ),
        Check(
            "the first execution succeeded",
            bool(first) and first[0].status == "SUCCEEDED",
            first[0].status if first else "not finished",
        ),
        _error_mentions(second, first_arn.rsplit(":", 1)[-1]),
        Check(
            "the refused execution's failure path left the first one's lock in place",
            first_running and holder_after_refusal is not None and holder_after_refusal.execution_arn == first_arn,
            f"first {'running' if first_running else 'already ended'}; lock held by "
            f"{holder_after_refusal.execution_name if holder_after_refusal else 'nobody'}",
        ),
        Check(
            "exactly one migration task ran",
            after.tasks_started - before.tasks_started == 1,
            f"{after.tasks_started - before.tasks_started}",
        ),
    ]
    # The refused execution is the scenario's main outcome: it is the behaviour being shown.
    return _result("concurrent", "FAILED", "DeploymentInProgressError", [*first, second], before, after, checks)


def wait_until_running(sfn: Any, arn: str, past_state: str, timeout: float = 60) -> None:
    """Wait (bounded) until a running execution has entered ``past_state``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        events = sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]
        names = [e["stateEnteredEventDetails"]["name"] for e in events if e["type"].endswith("StateEntered")]
        if past_state in names:
            return
        time.sleep(0.05)
    raise TimeoutError(f"execution {arn} did not reach {past_state!r} within {timeout}s")


def _invalid_input(stack: LocalStack, observer: Observer | None) -> ScenarioResult:
    before = stack.snapshot()
    outcome = execute(
        stack, {"imageTag": "release 42!", "services": ["alert-ingest", "billing"], "dryrun": True}, observer
    )
    after = stack.snapshot()
    checks = [
        _error_mentions(outcome, "imageTag", "dryrun"),
        Check(
            "no step after validation ran",
            outcome.path[2:4] == [catch_target(VALIDATE_STATE), SUMMARIZE_STATE],
            " → ".join(outcome.path),
        ),
        *_nothing_changed(before, after),
    ]
    return _result("invalid-input", "FAILED", "InvalidInputError", [outcome], before, after, checks)


def _dry_run(stack: LocalStack, observer: Observer | None) -> ScenarioResult:
    apply_migrations(stack)
    pending = migrations_with(stack, "V0002__add_rule_priority.sql", PENDING_MIGRATION)
    before = stack.snapshot()
    with overrides(stack, task_env={"MIGRATIONS_DIR": str(pending)}):
        outcome = execute(stack, {"imageTag": DEFAULT_TAG, "dryRun": True}, observer)
    after = stack.snapshot()
    record = outcome.output or {}
    topics = (record.get("topics") or {}).get("topics") or []
    plan = (record.get("migration") or {}).get("plan") or []
    checks = [
        Check("the record is a dry run", record.get("outcome") == "dry-run", str(record.get("outcome"))),
        Check(
            "the plan shows the pending V0002 and its ACCESS EXCLUSIVE lock",
            [(p.get("file"), p.get("lock"), p.get("lint")) for p in plan]
            == [("V0002__add_rule_priority.sql", "ACCESS EXCLUSIVE", "pass")],
            str([(p.get("file"), p.get("lock"), p.get("lint")) for p in plan]),
        ),
        Check(
            "it reports the topics it would create",
            sorted(t.get("name") for t in topics) == sorted(TOPICS)
            and all(t.get("action") == "create" for t in topics),
            ", ".join(str(t.get("action")) for t in topics),
        ),
        *_nothing_applied(before, after),
        _column_absent(stack, "rules", "priority"),
    ]
    return _result("dry-run", "SUCCEEDED", None, [outcome], before, after, checks)


def _nothing_applied(before: Snapshot, after: Snapshot) -> list[Check]:
    """A dry run's bound: one task (the read-only plan) ran, at most the release's own revision was registered."""
    return [
        _unchanged("database tables", before.tables, after.tables),
        _unchanged("migration history", before.history, after.history),
        _unchanged("Kafka topics", before.topics, after.topics),
        _unchanged("services' deployments", before.primary_deployments, after.primary_deployments),
        Check(
            "one ECS task started: the plan",
            after.tasks_started == before.tasks_started + 1,
            f"{before.tasks_started} -> {after.tasks_started}",
        ),
        Check(
            "at most the release's revision registered",
            len(after.task_definition_revisions) - len(before.task_definition_revisions) in (0, 1),
            f"{before.task_definition_revisions} -> {after.task_definition_revisions}",
        ),
    ]


def _unsafe_migration(stack: LocalStack, observer: Observer | None) -> ScenarioResult:
    apply_migrations(stack)
    waived = migrations_with(stack, "V0002__drop_last_error.sql", UNSAFE_WAIVER + UNSAFE_MIGRATION)
    with overrides(stack, task_env={"MIGRATIONS_DIR": str(waived)}):
        dry = execute(stack, {"imageTag": DEFAULT_TAG, "dryRun": True}, observer)
    unsafe = migrations_with(stack, "V0002__drop_last_error.sql", UNSAFE_MIGRATION)
    before = stack.snapshot()
    with overrides(stack, task_env={"MIGRATIONS_DIR": str(unsafe)}):
        outcome = execute(stack, {"imageTag": DEFAULT_TAG}, observer)
    after = stack.snapshot()
    plan = ((dry.output or {}).get("migration") or {}).get("plan") or []
    findings = [(f.get("rule"), bool(f.get("waived"))) for p in plan for f in p.get("findings") or []]
    checks = [
        Check("with the waiver, the dry run passes", dry.status == "SUCCEEDED", f"{dry.status} {dry.error or ''}"),
        Check(
            "its plan shows the finding as waived, lint pass",
            findings == [("ban-drop-column", True)] and [p.get("lint") for p in plan] == ["pass"],
            str(findings),
        ),
        _error_mentions(outcome, "MigrationLintError", "ban-drop-column", "nothing applied"),
        _unchanged("migration history", before.history, after.history),
        _unchanged("database tables", before.tables, after.tables),
        _column_present(stack, "notifications", "last_error"),
        _no_service_restarted(before, after),
        _unchanged("Kafka topics (never reached)", before.topics, after.topics),
    ]
    return _result("unsafe-migration", "FAILED", "MigrationFailedError", [dry, outcome], before, after, checks)


def _column_present(stack: LocalStack, table: str, column: str) -> Check:
    absent = _column_absent(stack, table, column)
    return Check(f"column {table}.{column} still there", not absent.ok, absent.detail)


def _rerun(stack: LocalStack, observer: Observer | None) -> ScenarioResult:
    before = stack.snapshot()
    first = execute(stack, {"imageTag": DEFAULT_TAG}, observer)
    middle = stack.snapshot()
    second = execute(stack, {"imageTag": DEFAULT_TAG}, observer)
    after = stack.snapshot()
    topics = ((second.output or {}).get("topics") or {}).get("topics") or []
    checks = [
        Check(
            "the first execution succeeded",
            first.status == "SUCCEEDED",
            first.status if first.error is None else f"{first.status} {first.error}",
        ),
        _unchanged("migration history on the second run", middle.history, after.history),
        _unchanged("database tables on the second run", middle.tables, after.tables),
        _unchanged("Kafka topics on the second run", middle.topics, after.topics),
        Check(
            "the second run reports every topic unchanged",
            bool(topics) and all(t.get("action") == "unchanged" for t in topics),
            ", ".join(str(t.get("action")) for t in topics),
        ),
        Check(
            "history shows each migration applied once",
            [int(v) for v, _ in migration_history(_db(stack))]
            == [m.version for m in discover_migrations(REPO_ROOT / "sql")],
            str(after.history),
        ),
    ]
    return _result("rerun", "SUCCEEDED", None, [first, second], before, after, checks)


def _service_missing(stack: LocalStack, observer: Observer | None) -> ScenarioResult:
    ecs = stack.client("ecs")
    gone = SERVICES[1]
    ecs.delete_service(cluster=CLUSTER, service=gone, force=True)
    try:
        before = stack.snapshot()
        outcome = execute(stack, {"imageTag": DEFAULT_TAG}, observer)
        after = stack.snapshot()
    finally:
        create_service(ecs, gone)
    checks = [
        _error_mentions(outcome, gone),
        Check(
            "it ended before the migration",
            RUN_MIGRATION_STATE not in outcome.path and outcome.failed_state == VALIDATE_STATE,
            f"failed at {outcome.failed_state}; " + " → ".join(outcome.path),
        ),
        _unchanged("database tables (untouched)", before.tables, after.tables),
        _unchanged("migration history", before.history, after.history),
        _unchanged("ECS tasks started (no migration task)", before.tasks_started, after.tasks_started),
        _unchanged("Kafka topics", before.topics, after.topics),
    ]
    return _result("service-missing", "FAILED", "ServiceNotFoundError", [outcome], before, after, checks)


def _bad_input_shape(stack: LocalStack, observer: Observer | None) -> ScenarioResult:
    before = stack.snapshot()
    outcome = execute(stack, [], observer)  # the point: an input that is not an object
    after = stack.snapshot()
    summary = outcome.summary or ""
    checks = [
        _error_mentions(outcome, "expected a JSON object", "got an array"),
        Check(
            "a summary was built (and published) for it",
            "FAILED at Validate release request" in summary and "as received (not validated): []" in summary,
            summary.splitlines()[0] if summary else "no summary",
        ),
        *_nothing_changed(before, after),
    ]
    return _result("bad-input-shape", "FAILED", "InvalidInputError", [outcome], before, after, checks)


def _db(stack: LocalStack) -> Any:
    assert stack.database is not None
    return stack.database


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in [
        Scenario("happy", "the whole release succeeds", "SUCCEEDED", None, _happy),
        Scenario("image-missing", "the image tag is not in ECR", "FAILED", "ImageNotFoundError", _image_missing),
        Scenario(
            "migration-fails", "a migration file fails half-way", "FAILED", "MigrationFailedError", _migration_fails
        ),
        Scenario(
            "migration-timeout",
            "the migration outlives its deadline",
            "FAILED",
            "MigrationTimeoutError",
            _migration_timeout,
        ),
        Scenario(
            "schema-drift",
            "the database changed behind the runner's back",
            "FAILED",
            "SchemaMismatchError",
            _schema_drift,
        ),
        Scenario("kafka-down", "no broker answers", "FAILED", "KafkaUnreachableError", _kafka_down),
        Scenario(
            "kafka-down-then-redrive",
            "no broker answers, then it is back and the stopped execution is redriven",
            "SUCCEEDED",
            None,
            _kafka_down_then_redrive,
        ),
        Scenario("step-timeout", "a step outlives its function Timeout", "FAILED", "Sandbox.Timedout", _step_timeout),
        Scenario(
            "service-fails",
            "a service's deployment fails and rolls back",
            "FAILED",
            "ServiceDeploymentFailedError",
            _service_fails,
        ),
        Scenario("concurrent", "a second release while one runs", "FAILED", "DeploymentInProgressError", _concurrent),
        Scenario("invalid-input", "a malformed execution input", "FAILED", "InvalidInputError", _invalid_input),
        Scenario(
            "bad-input-shape",
            "an execution input that is not an object ([])",
            "FAILED",
            "InvalidInputError",
            _bad_input_shape,
        ),
        Scenario(
            "service-missing",
            "a service to restart is gone from the cluster",
            "FAILED",
            "ServiceNotFoundError",
            _service_missing,
        ),
        Scenario("dry-run", "every check, no change", "SUCCEEDED", None, _dry_run),
        Scenario(
            "unsafe-migration",
            "a file drops a column: refused by the lint before anything is applied; with a waiver it passes",
            "FAILED",
            "MigrationFailedError",
            _unsafe_migration,
        ),
        Scenario(
            "rerun",
            "the same release twice: the second is a no-op for migrations and topics",
            "SUCCEEDED",
            None,
            _rerun,
        ),
    ]
}
