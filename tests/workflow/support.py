"""Helpers for the execution-path tests: the path an execution took, the ASL's retry policy, independent probes.

The probes read the world through other clients than the code under test: psycopg2 for PostgreSQL, a Kafka
AdminClient's metadata for the topics, boto3 (moto server) for ECS, CloudWatch Logs and SQS.
"""

from __future__ import annotations

import json
import os
import re
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg2
from confluent_kafka.admin import AdminClient
from release_steps import messages

from deployflow.local.postgres import ConnectionParams
from deployflow.local.template import ASL_PATH
from deployflow.progress import ExecutionOutcome, StateVisit

ASL: dict[str, Any] = json.loads(ASL_PATH.read_text(encoding="utf-8"))

# The wait loops of the ASL: (Choice, Wait, Check). A path shows each loop as one marker; the loop's own shape and
# its number of turns are asserted separately.
LOOPS: dict[str, tuple[str, str, str]] = {
    "migration": ("Migration task finished?", "Wait for migration task", "Check migration task"),
    "services": ("Services rolled out?", "Wait for services", "Check services"),
}
MIGRATION_LOOP = "⟲ migration"
SERVICES_LOOP = "⟲ services"
_MARKERS = {"migration": MIGRATION_LOOP, "services": SERVICES_LOOP}

FAILURE_TAIL = ["Summarize failure", "Notify failure", "Release lock after failure", "Release failed"]
# A release refused by its first step: nothing after validation runs.
REFUSED_PATH = ["Receive release request", "Validate release request", "Validate release request failed", *FAILURE_TAIL]
SUCCESS_TAIL = [
    "Build deployment record",
    "Release lock",
    "Notify success",
    "Return deployment record",
    "Release succeeded",
]
RELEASE_PATH = [
    "Receive release request",
    "Validate release request",
    "Check migration image",
    "Run migration task",
    MIGRATION_LOOP,
    "Verify schema",
    "Create Kafka topics",
    "Restart services",
    SERVICES_LOOP,
    *SUCCESS_TAIL,
]


def _loop_of(state: str) -> str | None:
    return next((loop for loop, states in LOOPS.items() if state in states), None)


def compress(path: Iterable[str]) -> list[str]:
    """The path with each contiguous run of a wait loop's states shown as one marker (``⟲ migration``)."""
    out: list[str] = []
    for state in path:
        loop = _loop_of(state)
        if loop is None:
            out.append(state)
        elif not out or out[-1] != _MARKERS[loop]:
            out.append(_MARKERS[loop])
    return out


def loop_segment(path: Sequence[str], loop: str) -> list[str]:
    """The raw states of ``loop`` as entered (they must form one contiguous run; empty if never entered)."""
    states = LOOPS[loop]
    indexes = [i for i, state in enumerate(path) if state in states]
    if not indexes:
        return []
    segment = list(path[indexes[0] : indexes[-1] + 1])
    if any(state not in states for state in segment):
        raise AssertionError(f"the {loop} loop was entered twice, or interleaved with other states: {segment}")
    return segment


def expected_loop(loop: str, turns: int, *, left_by: str) -> list[str]:
    """The exact run of a loop with ``turns`` waits, left by the Choice (``done``) or by an error of the Check: the
    first check comes right after the start step, with no wait before it."""
    choice, wait, check = LOOPS[loop]
    states = [check, choice, *[s for _ in range(turns) for s in (wait, check, choice)]]
    if left_by == "error":
        return states[:-1]
    if left_by != "choice":
        raise ValueError(left_by)
    return states


def loop_turns(path: Sequence[str], loop: str) -> int:
    """How many times the loop waited (Wait states entered)."""
    return sum(1 for state in path if state == LOOPS[loop][1])


def cause_message(outcome: ExecutionOutcome) -> str:
    """The error message inside the cause (a Lambda error's cause is the runtime's JSON error payload)."""
    return messages.cause_message(outcome.cause)


def cause_error_type(outcome: ExecutionOutcome) -> str | None:
    """The ``errorType`` of the runtime's JSON error payload in the cause, if the cause is one."""
    try:
        payload = json.loads(outcome.cause or "")
    except ValueError:
        return None
    return str(payload.get("errorType")) if isinstance(payload, dict) else None


def describe(outcome: ExecutionOutcome) -> str:
    """A few lines that say what the execution did: for assertion messages."""
    return (
        f"\n  execution {outcome.execution_arn.rsplit(':', 1)[-1]}: {outcome.status} error={outcome.error} "
        f"failed_state={outcome.failed_state}"
        f"\n  path: {' → '.join(compress(outcome.path))}"
        f"\n  raw path: {' → '.join(outcome.path)}"
        f"\n  cause: {cause_message(outcome)[:1200]}"
    )


def visits(outcome: ExecutionOutcome, state: str) -> list[StateVisit]:
    return [v for v in outcome.visits if v.name == state]


def state_output(outcome: ExecutionOutcome, state: str) -> dict[str, Any]:
    """The JSON output of the last visit of ``state`` (from the history's StateExited event)."""
    raw = outcome.state_outputs.get(state)
    if raw is None:
        raise AssertionError(f"state {state!r} recorded no output{describe(outcome)}")
    parsed = json.loads(raw)
    assert isinstance(parsed, dict)
    return parsed


# --- the ASL ------------------------------------------------------------------------------------------------------


def retrier(state: str, error: str) -> dict[str, Any]:
    """The Retry entry of ``state`` in the real ASL whose ErrorEquals names ``error``."""
    for entry in ASL["States"][state].get("Retry", []):
        if error in entry["ErrorEquals"]:
            return dict(entry)
    raise AssertionError(f"the ASL's {state!r} has no retrier for {error}")


def retry_caps(entry: dict[str, Any]) -> list[float]:
    """The cap of each retry's delay: IntervalSeconds * BackoffRate^n, at most MaxDelaySeconds (n from 0)."""
    interval = float(entry.get("IntervalSeconds", 1))
    rate = float(entry.get("BackoffRate", 2.0))
    ceiling = float(entry.get("MaxDelaySeconds", float("inf")))
    return [min(interval * rate**n, ceiling) for n in range(int(entry.get("MaxAttempts", 3)))]


# --- independent probes -------------------------------------------------------------------------------------------


def public_tables(db: ConnectionParams) -> list[str]:
    with psycopg2.connect(db.dsn()) as conn, conn.cursor() as cur:
        cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename")
        return [str(row[0]) for row in cur.fetchall()]


def relation_exists(db: ConnectionParams, name: str) -> bool:
    with psycopg2.connect(db.dsn()) as conn, conn.cursor() as cur:
        cur.execute("SELECT to_regclass(%s) IS NOT NULL", (f"public.{name}",))
        row = cur.fetchone()
        return bool(row and row[0])


def column_exists(db: ConnectionParams, table: str, column: str) -> bool:
    with psycopg2.connect(db.dsn()) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM information_schema.columns "
            "WHERE table_schema = 'public' AND table_name = %s AND column_name = %s",
            (table, column),
        )
        row = cur.fetchone()
        return bool(row and row[0])


def history_rows(db: ConnectionParams) -> list[tuple[int, str, str, datetime]]:
    """(version, name, checksum, applied_at) of the runner's history table via psycopg2; [] if it has none."""
    if not relation_exists(db, "deployflow_schema_history"):
        return []
    with psycopg2.connect(db.dsn()) as conn, conn.cursor() as cur:
        cur.execute("SELECT version, name, checksum, applied_at FROM deployflow_schema_history ORDER BY version")
        return [(int(v), str(n), str(c), t) for v, n, c, t in cur.fetchall()]


def topic_partitions(bootstrap: str, timeout: float = 10.0) -> dict[str, int]:
    """User topics and their partition counts, from a metadata request of a fresh AdminClient."""
    admin = AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": int(timeout * 1000)})
    metadata = admin.list_topics(timeout=timeout)
    return {name: len(t.partitions) for name, t in metadata.topics.items() if not name.startswith("__")}


def services(ecs: Any, cluster: str, names: Sequence[str]) -> dict[str, dict[str, Any]]:
    """DescribeServices, by service name."""
    described = ecs.describe_services(cluster=cluster, services=list(names))["services"]
    return {str(s["serviceName"]): s for s in described}


def primary(service: dict[str, Any]) -> dict[str, Any]:
    found = [d for d in service["deployments"] if d["status"] == "PRIMARY"]
    assert len(found) == 1, f"{service['serviceName']}: expected one PRIMARY deployment, got {service['deployments']}"
    return dict(found[0])


def all_tasks(ecs: Any, cluster: str) -> list[dict[str, Any]]:
    """Every task of the cluster, running or stopped (DescribeTasks)."""
    arns = [
        arn
        for status in ("RUNNING", "STOPPED")
        for arn in ecs.list_tasks(cluster=cluster, desiredStatus=status)["taskArns"]
    ]
    if not arns:
        return []
    return list(ecs.describe_tasks(cluster=cluster, tasks=arns)["tasks"])


def describe_task(ecs: Any, cluster: str, task_arn: str) -> dict[str, Any]:
    tasks = ecs.describe_tasks(cluster=cluster, tasks=[task_arn])["tasks"]
    assert len(tasks) == 1, f"DescribeTasks {task_arn}: {tasks}"
    return dict(tasks[0])


def log_lines(logs: Any, group: str, stream: str) -> list[str]:
    events = logs.get_log_events(logGroupName=group, logStreamName=stream, startFromHead=True)["events"]
    return [str(e["message"]) for e in events]


# --- the SNS topic, read through an SQS subscription ----------------------------------------------------------------


@dataclass(frozen=True)
class Notification:
    subject: str
    message: str


class Inbox:
    """An SQS queue subscribed to the stack's SNS topic (moto delivers SNS to SQS on publish)."""

    def __init__(self, sqs: Any, queue_url: str) -> None:
        self._sqs = sqs
        self._url = queue_url
        self._received: list[Notification] = []

    def notifications(self) -> list[Notification]:
        """Every notification received so far, oldest first (the queue is drained into the inbox)."""
        while True:
            batch = self._sqs.receive_message(QueueUrl=self._url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
            messages = batch.get("Messages", [])
            if not messages:
                return list(self._received)
            for message in messages:
                envelope = json.loads(message["Body"])
                self._received.append(Notification(str(envelope.get("Subject", "")), str(envelope["Message"])))
                self._sqs.delete_message(QueueUrl=self._url, ReceiptHandle=message["ReceiptHandle"])


# --- processes and ports --------------------------------------------------------------------------------------------


def refuses_connections(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(2.0)
        try:
            sock.connect((host, port))
        except OSError:
            return True
        return False


def process_state(pid: int) -> str | None:
    """The /proc state letter of a process (``R``, ``S``, ``Z`` ...), or None if there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # /proc/PID/stat: "pid (comm) state ppid ..." and comm may contain spaces or parentheses.
    return stat.rsplit(")", 1)[1].split()[0]


def alive(pid: int) -> bool:
    """The process exists and is not a zombie (os.kill(pid, 0) also succeeds on zombies)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return process_state(pid) not in (None, "Z")


def descendants(root: int) -> dict[int, str]:
    """Every process below ``root`` in the process tree: pid to its command line (from /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found: dict[int, str] = {}
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        for pid, ppid in parents.items():
            if ppid == parent and pid not in found:
                try:
                    cmdline = (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                except OSError:
                    cmdline = "?"
                found[pid] = f"[{process_state(pid)}] {cmdline.strip()[:200]}"
                frontier.append(pid)
    return found


# --- the notification of an execution stopped at its step ------------------------------------------------------------


def assert_stopped_notification(sfn: Any, inbox: Inbox, execution_arn: str, region: str) -> list[str]:
    """The one notification of an execution stopped at its step, checked line by line against the execution as
    DescribeExecution and its raw history (read forward, in full, here) tell it; its lines."""
    description = sfn.describe_execution(executionArn=execution_arn)
    events: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"executionArn": execution_arn, "maxResults": 1000}
    while True:
        page = sfn.get_execution_history(**kwargs)
        events += page["events"]
        if not page.get("nextToken"):
            break
        kwargs["nextToken"] = page["nextToken"]
    last_entry = max(i for i, e in enumerate(events) if e["type"].endswith("StateEntered"))
    state = events[last_entry]["stateEnteredEventDetails"]["name"]
    attempts = sum(e["type"] in ("LambdaFunctionScheduled", "TaskScheduled") for e in events[last_entry:])
    took = (description["stopDate"] - description["startDate"]).total_seconds()

    notes = inbox.notifications()
    assert len(notes) == 1, f"expected the one notification of the stopped execution, got {notes}"
    [note] = notes
    lines = note.message.splitlines()
    status, name = description["status"], description["name"]
    assert note.subject == f"deployflow {name}: {status} at {state}", note.subject
    headline = re.fullmatch(
        rf"deployflow release {re.escape(name)} {status} at {re.escape(state)} in (\d+\.\d)s", lines[0]
    )
    assert headline, f"headline {lines[0]!r}: expected {status} at {state} with the duration"
    assert abs(float(headline.group(1)) - took) <= 0.06, (
        f"duration {headline.group(1)}s, the execution took {took:.3f}s"
    )
    assert lines[1] == f"execution: {execution_arn}"
    rest = lines[2:]
    if attempts:
        assert rest.pop(0) == f"attempts: {attempts} at {state}", lines
    error = description.get("error")
    expected_error = error or (
        "States.Timeout (the execution ran past its TimeoutSeconds)" if status == "TIMED_OUT" else "(none given)"
    )
    assert rest.pop(0) == f"error: {expected_error}", lines
    if description.get("cause"):
        message = " ".join(messages.cause_message(description["cause"]).split())
        clipped = message if len(message) <= 1500 else message[:1499] + "…"
        assert rest.pop(0) == f"cause: {clipped}", lines
    assert rest == [
        "next: fix the cause, then resume at this state: aws stepfunctions redrive-execution "
        f"--execution-arn {execution_arn} --region {region}"
    ], lines
    return lines
