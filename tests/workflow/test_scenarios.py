"""Execution paths: every named scenario runs the real ASL on a fresh local stack (real PostgreSQL, real Kafka, moto).

Each test asserts what the scenario's own checks assert (``result.as_expected``) and, explicitly: the path taken
(wait loops shown as one marker, their shape and number of turns asserted apart), the error and the readable message
in its cause, and the side effects, read through other clients than the steps (psycopg2, a Kafka AdminClient, boto3
on the moto server, the SNS topic through an SQS subscription).
"""

from __future__ import annotations

import json
import re
import time
from datetime import datetime
from typing import Any

import pytest
from dbmigrate.files import discover_migrations

from deployflow.local.scenarios import SCENARIOS, ScenarioResult, overrides
from deployflow.local.stack import (
    CLUSTER,
    DEFAULT_TAG,
    LOG_GROUP,
    REPOSITORY,
    SERVICES,
    TASK_FAMILY,
    TOPICS,
    LocalStack,
)
from deployflow.local.template import REPO_ROOT
from deployflow.progress import ExecutionOutcome
from deployflow.render import aws_cli_options, outcome_report
from tests.cli.conftest import base_environment, run_cli
from tests.fixtures.executions import execution_history
from tests.workflow.support import (
    FAILURE_TAIL,
    LOOPS,
    MIGRATION_LOOP,
    REFUSED_PATH,
    RELEASE_PATH,
    SERVICES_LOOP,
    Inbox,
    all_tasks,
    assert_stopped_notification,
    cause_error_type,
    cause_message,
    column_exists,
    compress,
    describe,
    describe_task,
    expected_loop,
    history_rows,
    log_lines,
    loop_segment,
    loop_turns,
    primary,
    public_tables,
    relation_exists,
    retrier,
    retry_caps,
    services,
    state_output,
    topic_partitions,
    visits,
)

pytestmark = pytest.mark.workflow

HEAD_VERSIONS = [m.version for m in discover_migrations(REPO_ROOT / "sql")]
MIGRATION_FILES = [m.filename for m in discover_migrations(REPO_ROOT / "sql")]
MAIN_TABLES = {"clients", "rules", "endpoints", "notifications"}
# The step that starts each wait loop, and where its result (with the loop's deadline) sits in the state.
STARTERS = {"migration": ("Run migration task", "migration"), "services": ("Restart services", "rollout")}


# --- helpers ------------------------------------------------------------------------------------------------------


def run_scenario(stack: LocalStack, name: str) -> ScenarioResult:
    """Run the named scenario; it must end as it is named, with every one of its own checks holding."""
    result = SCENARIOS[name].run(stack, None)
    failed = [f"{c.description}: {c.detail}" for c in result.checks if not c.ok]
    assert result.as_expected, (
        f"scenario {name} expected {result.expected_status} {result.expected_error or ''}, "
        f"failed checks: {failed or 'none'}{''.join(describe(o) for o in result.outcomes)}"
    )
    return result


def assert_failed_with(outcome: ExecutionOutcome, error: str, *needles: str) -> str:
    """The execution FAILED with ``error``; its cause is the runtime's error payload and names every needle."""
    assert outcome.status == "FAILED", f"expected FAILED {error}{describe(outcome)}"
    assert outcome.error == error, f"expected error {error}{describe(outcome)}"
    assert cause_error_type(outcome) == error, f"the cause's errorType is not {error}{describe(outcome)}"
    message = cause_message(outcome)
    missing = [n for n in needles if n not in message]
    assert not missing, f"the cause does not name {missing}{describe(outcome)}"
    assert "\n  File " not in message, f"the cause's message carries a stack trace{describe(outcome)}"
    return message


def assert_path(outcome: ExecutionOutcome, expected: list[str]) -> None:
    assert compress(outcome.path) == expected, (
        f"path taken differs\n  expected: {' → '.join(expected)}{describe(outcome)}"
    )


def assert_single_attempts(outcome: ExecutionOutcome, *, except_states: tuple[str, ...] = ()) -> None:
    """No Task state was retried (each entry ran once), except the named ones."""
    retried = [
        (v.name, v.attempts, [e for e, _ in v.errors])
        for v in outcome.visits
        if v.state_type == "Task" and v.name not in except_states and v.attempts != 1
    ]
    assert not retried, f"Task states with attempts != 1: {retried}{describe(outcome)}"


def poll_seconds(outcome: ExecutionOutcome) -> dict[str, int]:
    """The poll loops' ceilings (``$.poll``), from the validation step's output."""
    poll = state_output(outcome, "Validate release request")["poll"]
    return {"migration": int(poll["migrationSeconds"]), "services": int(poll["servicesSeconds"])}


def designed_waits(ceiling: int, turns: int) -> list[int]:
    """The waits the design promises a loop: 1, 2, 4 ... seconds, doubling up to the ceiling."""
    return [min(ceiling, 2 ** min(k, 30)) for k in range(turns)]


def _parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def assert_loop(stack: LocalStack, outcome: ExecutionOutcome, loop: str, *, left_by: str) -> int:
    """The loop's states form exactly Check, Choice (Wait, Check, Choice)* — minus the last Choice when a Check
    failed — with no wait before the first check, and it waited no more often than its deadline allows. Returns the
    number of turns (waits).

    Bound: the step before the loop fixes ``deadline``; the k-th Wait sleeps the designed wait (1, 2, 4 ... s up to
    the ceiling) x time scale; every Check before the last ran before the deadline. So the waits before the last
    check sum to at most (deadline - loop start).
    """
    segment = loop_segment(outcome.path, loop)
    turns = loop_turns(outcome.path, loop)
    assert segment == expected_loop(loop, turns, left_by=left_by), (
        f"the {loop} loop is malformed: {segment}{describe(outcome)}"
    )
    starter, result_key = STARTERS[loop]
    deadline = _parse_time(state_output(outcome, starter)[result_key]["deadline"])
    started = visits(outcome, starter)[0].entered_at
    allowed = (deadline - started).total_seconds()
    waited_before_last = sum(designed_waits(poll_seconds(outcome)[loop], max(turns - 1, 0)))
    assert waited_before_last * stack.options.time_scale <= allowed, (
        f"the {loop} loop ran {turns} turns: its check before the last came after {waited_before_last} s of waits "
        f"(x{stack.options.time_scale}), past its deadline {allowed:.1f} s after the start{describe(outcome)}"
    )
    return turns


def assert_waits_recorded(stack: LocalStack, outcome: ExecutionOutcome) -> None:
    """Every Wait state slept the designed wait (scaled), one recorded delay per Wait entered, in path order."""
    poll = poll_seconds(outcome)
    seen = dict.fromkeys(LOOPS, 0)
    expected: list[float] = []
    for state in outcome.path:
        for loop, (_, wait, _) in LOOPS.items():
            if state == wait:
                seen[loop] += 1
                expected.append(float(designed_waits(poll[loop], seen[loop])[-1]))
    assert stack.aws is not None
    waits = [d for d in stack.aws.time.delays if d.kind == "wait"]
    assert [d.requested_seconds for d in waits] == expected, f"Wait delays: {waits}{describe(outcome)}"
    for d in waits:
        assert d.slept_seconds == pytest.approx(d.requested_seconds * stack.options.time_scale), f"unscaled: {d}"


def execution_input(stack: LocalStack, outcome: ExecutionOutcome) -> dict[str, Any]:
    raw = stack.client("stepfunctions").describe_execution(executionArn=outcome.execution_arn)["input"]
    parsed = json.loads(raw)
    assert isinstance(parsed, dict)
    return parsed


def database(stack: LocalStack) -> Any:
    assert stack.database is not None
    return stack.database


def bootstrap(stack: LocalStack) -> str:
    assert stack.kafka is not None
    return stack.kafka.bootstrap_plaintext


def assert_no_release_topics(stack: LocalStack) -> None:
    present = {t: n for t, n in topic_partitions(bootstrap(stack)).items() if t in TOPICS}
    assert not present, f"release topics exist in Kafka: {present}"


def assert_services_not_restarted(stack: LocalStack, result: ScenarioResult) -> None:
    """Each service's PRIMARY deployment is the one it had before the release (ECS, read now)."""
    described = services(stack.client("ecs"), CLUSTER, SERVICES)
    now = {name: primary(s)["id"] for name, s in described.items()}
    assert now == dict(result.before.primary_deployments), (
        f"a service was restarted: before {dict(result.before.primary_deployments)}, now {now}"
    )
    assert result.after.primary_deployments == result.before.primary_deployments


def assert_history_unchanged(stack: LocalStack, result: ScenarioResult) -> list[tuple[int, str, str, datetime]]:
    """The history snapshot did not change, and the table (read now with psycopg2) holds the same rows as before."""
    assert result.after.history == result.before.history, (
        f"migration history changed: before {result.before.history}, after {result.after.history}"
    )
    rows = history_rows(database(stack))
    now = [(v, applied_at) for v, _, _, applied_at in rows]
    before = [(int(v), datetime.fromisoformat(t)) for v, t in result.before.history]
    assert now == before, f"history table now {now}, before the run {before}"
    return rows


def assert_world_untouched(stack: LocalStack, result: ScenarioResult) -> None:
    """Nothing a release changes changed: snapshots equal, and the database, Kafka and ECS say so directly."""
    assert result.after == result.before, f"something changed:\n  before {result.before}\n  after  {result.after}"
    assert public_tables(database(stack)) == list(result.before.tables), "tables changed (psycopg2)"
    versions = [str(v) for v, _, _, _ in history_rows(database(stack))]
    assert versions == [v for v, _ in result.before.history], f"migration history (psycopg2) now {versions}"
    assert_no_release_topics(stack)
    ecs = stack.client("ecs")
    tasks = all_tasks(ecs, CLUSTER)
    assert tasks == [], f"ECS tasks ran: {[(t['taskArn'], t['lastStatus'], t.get('group')) for t in tasks]}"
    revisions = tuple(sorted(ecs.list_task_definitions(familyPrefix=TASK_FAMILY)["taskDefinitionArns"]))
    assert revisions == result.before.task_definition_revisions, f"task definition revisions now {revisions}"
    assert_services_not_restarted(stack, result)
    assert stack.aws is not None
    assert stack.aws.ecs.runs == [], "the ECS seam ran a task process"


def assert_notified_failure(inbox: Inbox, error: str, tag: str, failed_step: str) -> None:
    notes = inbox.notifications()
    assert len(notes) == 1, f"expected one SNS notification, got {notes}"
    note = notes[0]
    for needle in ("FAILED", error, tag):
        assert needle in note.subject, f"SNS subject {note.subject!r} does not name {needle}"
    for needle in (error, tag, failed_step):
        assert needle in note.message, f"SNS message does not name {needle}:\n{note.message}"


# --- the scenarios ------------------------------------------------------------------------------------------------


def printed(stack: LocalStack, o: ExecutionOutcome) -> str:
    """The final report exactly as ``deployflow local run`` prints it (the summary an operator pastes)."""
    assert stack.aws is not None
    return outcome_report(o, aws_cli_options(stack.aws.region, None, stack.aws.endpoint_url))


def summary_lines(o: ExecutionOutcome) -> dict[str, str]:
    """The summary's fields by label (``Cause``, ``Migration``, ...), continuation lines joined."""
    assert o.summary, f"no summary{describe(o)}"
    fields: dict[str, str] = {"headline": o.summary.splitlines()[0]}
    label = "headline"
    for line in o.summary.splitlines()[1:]:
        if line[:12].strip().endswith(":") and not line.startswith(" "):
            label = line[:12].strip().rstrip(":")
            fields[label] = line[12:]
        else:
            fields[label] += "\n" + line.strip()
    return fields


def assert_caught_summary(o: ExecutionOutcome, state: str, error: str, *cause: str) -> dict[str, str]:
    """The pasteable summary: headline naming the state, the error, the cause's root-cause text, a Next line; the
    report above it has no next line of its own (the summary's Next is the one)."""
    report = outcome_report(o).split("\n\n", 1)[0].splitlines()
    assert not [line for line in report if line.startswith("next:")], report
    fields = summary_lines(o)
    assert fields["headline"].endswith(f"FAILED at {state}"), o.summary
    assert fields["Error"] == error, o.summary
    for needle in cause:
        assert needle in fields["Cause"], f"the Cause lacks {needle!r}:\n{o.summary}"
    assert fields["Next"].strip(), o.summary
    assert "redrive" not in fields["Next"], f"a caught error ends in Release failed: no redrive\n{o.summary}"
    return fields


def test_given_a_pushed_image_when_a_release_runs_then_every_step_runs_once_and_the_record_matches_the_world(
    stack: LocalStack, inbox: Inbox
) -> None:
    result = run_scenario(stack, "happy")
    o = result.outcome

    assert (o.status, o.error) == ("SUCCEEDED", None), describe(o)
    assert_path(o, RELEASE_PATH)
    assert_loop(stack, o, "migration", left_by="choice")
    assert_loop(stack, o, "services", left_by="choice")
    assert_waits_recorded(stack, o)
    assert_single_attempts(o)

    record = o.output
    assert record is not None, describe(o)
    digest = stack.image_digests[DEFAULT_TAG]
    assert (record["outcome"], record["dryRun"]) == ("succeeded", False), record
    assert (record["imageTag"], record["imageDigest"]) == (DEFAULT_TAG, digest), record
    assert record["imageUri"].endswith(f"/{REPOSITORY}@{digest}"), record["imageUri"]

    ecs = stack.client("ecs")
    migration = record["migration"]
    assert (migration["status"], migration["exitCode"], migration["done"]) == ("STOPPED", 0, True), migration
    task = describe_task(ecs, CLUSTER, migration["taskArn"])
    assert (task["lastStatus"], task["containers"][0]["exitCode"]) == ("STOPPED", 0), task
    assert task["taskDefinitionArn"] == migration["taskDefinitionArn"], (task, migration)
    definition = ecs.describe_task_definition(taskDefinition=migration["taskDefinitionArn"])["taskDefinition"]
    image = definition["containerDefinitions"][0]["image"]
    assert image.endswith(f"@{digest}"), f"the migration ran an image not pinned to the pushed digest: {image}"

    schema = record["schema"]
    assert (schema["verdict"], schema["differences"]) == ("match", []), schema
    assert schema["appliedVersions"] == [f"V{v:04d}" for v in HEAD_VERSIONS], schema
    rows = history_rows(database(stack))
    assert [v for v, _, _, _ in rows] == HEAD_VERSIONS, rows
    assert set(public_tables(database(stack))) >= MAIN_TABLES

    topics = record["topics"]["topics"]
    assert [t["name"] for t in topics] == list(TOPICS), topics
    assert all(t["action"] == "create" and t["partitionsAfter"] == 9 for t in topics), topics
    in_kafka = topic_partitions(bootstrap(stack))
    assert {t: in_kafka.get(t) for t in TOPICS} == dict.fromkeys(TOPICS, 9), in_kafka

    described = services(ecs, CLUSTER, SERVICES)
    before = dict(result.before.primary_deployments)
    assert [s["name"] for s in record["services"]] == list(SERVICES), record["services"]
    for rollout in record["services"]:
        name = rollout["name"]
        live = primary(described[name])
        assert rollout["rolloutState"] == "COMPLETED", rollout
        assert rollout["deploymentId"] == live["id"], f"{name}: record {rollout['deploymentId']}, ECS {live['id']}"
        assert live["rolloutState"] == "COMPLETED", live
        assert live["id"] != before[name], f"{name} was not restarted: PRIMARY is still {live['id']}"

    notes = inbox.notifications()
    assert len(notes) == 1, f"expected one SNS notification, got {notes}"
    assert f"release {DEFAULT_TAG} succeeded" in notes[0].subject, notes[0].subject
    assert notes[0].message == o.summary, f"published {notes[0].message!r}, the record's summary is {o.summary!r}"
    assert digest in notes[0].message, notes[0].message
    fields = summary_lines(o)
    assert fields["headline"] == f"deployflow release of {DEFAULT_TAG} succeeded", o.summary
    for name in SERVICES:
        assert f"{name}: COMPLETED" in fields["Services"], o.summary
    assert "exit code 0" in fields["Migration"], o.summary


def test_given_an_unknown_tag_when_a_release_runs_then_it_stops_at_the_image_check_and_changes_nothing(
    stack: LocalStack, inbox: Inbox
) -> None:
    result = run_scenario(stack, "image-missing")
    o = result.outcome
    tag = execution_input(stack, o)["imageTag"]
    assert tag not in stack.image_digests

    assert_failed_with(o, "ImageNotFoundError", tag, REPOSITORY)
    assert_path(
        o,
        [
            "Receive release request",
            "Validate release request",
            "Check migration image",
            "Check migration image failed",
            *FAILURE_TAIL,
        ],
    )
    assert o.failed_state == "Check migration image", describe(o)
    assert_single_attempts(o)  # terminal: not retried
    assert_world_untouched(stack, result)
    assert_notified_failure(inbox, "ImageNotFoundError", tag, "Check migration image")
    fields = assert_caught_summary(o, "Check migration image", "ImageNotFoundError", tag, REPOSITORY)
    assert fields["Migration"] == "not reached", o.summary
    assert fields["Services"] == "not reached", o.summary


def test_given_a_migration_that_fails_half_way_then_the_workflow_stops_before_the_services_and_history_is_intact(
    stack: LocalStack, inbox: Inbox
) -> None:
    result = run_scenario(stack, "migration-fails")
    o = result.outcome
    failing_file = "V0002__add_client_tier.sql"

    task_arn = state_output(o, "Run migration task")["migration"]["taskArn"]
    task = describe_task(stack.client("ecs"), CLUSTER, task_arn)
    exit_code = task["containers"][0]["exitCode"]
    assert task["lastStatus"] == "STOPPED", task
    assert exit_code not in (None, 0), task
    stream = f"migration/migration/{task_arn.rsplit('/', 1)[-1]}"
    last_line = log_lines(stack.client("logs"), LOG_GROUP, stream)[-1]
    assert failing_file in last_line, f"the runner's last log line does not name the file: {last_line}"
    message = assert_failed_with(
        o, "MigrationFailedError", task_arn, failing_file, "SQLSTATE 42883", f"exit code {exit_code}", LOG_GROUP
    )
    # The cause leads with the runner's own failure line (picked by its event name), read here from the real log.
    runner_lines = [json.loads(line) for line in log_lines(stack.client("logs"), LOG_GROUP, stream) if line[:1] == "{"]
    [failure] = [line for line in runner_lines if line["event"] == "migrate_failed"]
    assert (failure["file"], failure["sqlstate"]) == (failing_file, "42883"), failure
    assert message.startswith(
        f"migration failed: {failing_file} failed at statement {failure['statement_number']} (line {failure['line']}): "
        f"SQLSTATE 42883: {failure['pg_error']}; statement: {failure['statement']}"
    ), f"the cause does not lead with the runner's failure line {failure}{describe(o)}"

    assert_path(
        o,
        [
            "Receive release request",
            "Validate release request",
            "Check migration image",
            "Run migration task",
            MIGRATION_LOOP,
            "Check migration task failed",
            *FAILURE_TAIL,
        ],
    )
    assert o.failed_state == "Check migration task", describe(o)
    assert_loop(stack, o, "migration", left_by="error")
    for state in ("Verify schema", "Create Kafka topics", "Restart services"):
        assert state not in o.path, f"{state} ran after a failed migration{describe(o)}"

    db = database(stack)
    rows = assert_history_unchanged(stack, result)
    assert [v for v, _, _, _ in rows] == HEAD_VERSIONS, f"history after the failed file: {rows}"
    assert not relation_exists(db, "release_probe"), "release_probe survived the failed migration's rollback"
    assert not column_exists(db, "clients", "tier"), "clients.tier survived the failed migration's rollback"
    assert public_tables(db) == list(result.before.tables)
    assert_services_not_restarted(stack, result)
    assert_no_release_topics(stack)
    assert_notified_failure(inbox, "MigrationFailedError", DEFAULT_TAG, "Check migration task")
    fields = assert_caught_summary(
        o,
        "Check migration task",
        "MigrationFailedError",
        "migration failed: V0002__add_client_tier.sql failed at statement 4 (line 5): SQLSTATE 42883: "
        "function deployflow_no_such_function() does not exist; statement: SELECT deployflow_no_such_function()",
        "(rolled back, history unchanged)",
    )
    assert fields["Cause"].startswith("migration failed: V0002__add_client_tier.sql"), "the root cause comes first"
    assert "exit code 8, stop code EssentialContainerExited" in fields["Migration"], o.summary
    assert "running" not in fields["Migration"], o.summary
    assert (fields["Schema"], fields["Topics"], fields["Services"]) == ("not reached",) * 3, o.summary


def test_given_a_migration_past_its_deadline_then_the_check_loop_ends_and_the_task_is_stopped(
    stack: LocalStack,
) -> None:
    result = run_scenario(stack, "migration-timeout")
    o = result.outcome

    task_arn = state_output(o, "Run migration task")["migration"]["taskArn"]
    checks = len(visits(o, "Check migration task"))
    assert_failed_with(
        o,
        "MigrationTimeoutError",
        task_arn,
        "still RUNNING",
        "MIGRATION_TIMEOUT_SECONDS",
        f"{checks} checks",
        "it was stopped",
    )
    assert_path(
        o,
        [
            "Receive release request",
            "Validate release request",
            "Check migration image",
            "Run migration task",
            MIGRATION_LOOP,
            "Check migration task failed",
            *FAILURE_TAIL,
        ],
    )
    turns = assert_loop(stack, o, "migration", left_by="error")
    assert turns >= 2, f"the check loop should have polled several times before the deadline{describe(o)}"
    assert_waits_recorded(stack, o)
    assert o.failed_state == "Check migration task", describe(o)

    task = describe_task(stack.client("ecs"), CLUSTER, task_arn)
    assert task["lastStatus"] == "STOPPED", task
    assert task.get("stopCode") == "UserInitiated", f"the task was not stopped by the workflow: {task}"
    assert "deadline" in task.get("stoppedReason", ""), task
    assert stack.aws is not None
    assert all(run.stopped for run in stack.aws.ecs.runs), "a migration task process still runs"

    for state in ("Verify schema", "Create Kafka topics", "Restart services"):
        assert state not in o.path, f"{state} ran after a migration timeout{describe(o)}"
    assert_history_unchanged(stack, result)
    assert_services_not_restarted(stack, result)
    fields = assert_caught_summary(o, "Check migration task", "MigrationTimeoutError", "it was stopped")
    cause_checks = re.search(r"(\d+) checks\)", fields["Cause"])
    assert cause_checks, o.summary
    assert f"{cause_checks.group(1)} checks" in fields["Migration"], f"the checks differ from the cause's:\n{o.summary}"
    assert "stop code UserInitiated" in fields["Migration"], o.summary


def test_given_a_migration_past_its_deadline_then_no_database_session_keeps_running_it(stack: LocalStack) -> None:
    result = run_scenario(stack, "migration-timeout")
    db = database(stack)
    leftover: list[tuple[Any, ...]] = []
    for _ in range(50):  # bounded: up to ~5 s for PostgreSQL to notice that the client went away
        with db.connect() as conn, conn.cursor() as cur:
            cur.execute(
                "SELECT pid, state, query FROM pg_stat_activity "
                "WHERE query ILIKE %s AND pid <> pg_backend_pid() AND datname = current_database()",
                ("%pg_sleep%",),
            )
            leftover = cur.fetchall()
        if not leftover:
            break
        time.sleep(0.1)
    assert not leftover, (
        f"the stopped migration's statement still runs in PostgreSQL: {leftover}{describe(result.outcome)}"
    )


def test_given_schema_drift_when_a_release_runs_then_verify_schema_names_the_drift_and_nothing_follows(
    stack: LocalStack, inbox: Inbox
) -> None:
    result = run_scenario(stack, "schema-drift")
    o = result.outcome

    message = assert_failed_with(
        o, "SchemaMismatchError", "notifications.last_error", "notifications_pending_created_at_idx"
    )
    assert "column missing" in message, describe(o)
    assert "index missing" in message, describe(o)
    assert_path(
        o,
        [
            "Receive release request",
            "Validate release request",
            "Check migration image",
            "Run migration task",
            MIGRATION_LOOP,
            "Verify schema",
            "Verify schema failed",
            *FAILURE_TAIL,
        ],
    )
    assert o.failed_state == "Verify schema", describe(o)
    assert_single_attempts(o)  # a mismatch is terminal: not retried
    assert_loop(stack, o, "migration", left_by="choice")
    assert "Create Kafka topics" not in o.path, describe(o)
    assert "Restart services" not in o.path, describe(o)

    assert_no_release_topics(stack)
    assert_services_not_restarted(stack, result)
    assert_history_unchanged(stack, result)
    assert not column_exists(database(stack), "notifications", "last_error"), "the drift was silently repaired"
    assert_notified_failure(inbox, "SchemaMismatchError", DEFAULT_TAG, "Verify schema")
    fields = assert_caught_summary(
        o, "Verify schema", "SchemaMismatchError", "notifications.last_error", "notifications_pending_created_at_idx"
    )
    assert fields["Schema"] == "failed here (SchemaMismatchError), no result recorded", o.summary


def test_given_kafka_down_then_create_topics_retries_with_capped_backoff_and_fails_with_the_named_error(
    stack: LocalStack, inbox: Inbox
) -> None:
    # The broker refuses at once: a 1 s client timeout per attempt keeps the test short, the retries are the ASL's.
    with overrides(stack, function_env={"KAFKA_TIMEOUT_SECONDS": "1"}):
        result = run_scenario(stack, "kafka-down")
    o = result.outcome

    assert_failed_with(o, "KafkaUnreachableError", bootstrap(stack), "Kafka not reachable")
    # A transient error whose retries ran out is not caught: the execution fails at the step (a redrive resumes
    # there) and the EventBridge rule, not the workflow, notifies (the local stack hands it the status-change event).
    assert_path(
        o,
        [
            "Receive release request",
            "Validate release request",
            "Check migration image",
            "Run migration task",
            MIGRATION_LOOP,
            "Verify schema",
            "Create Kafka topics",
        ],
    )
    assert o.failed_state == "Create Kafka topics", describe(o)
    assert_single_attempts(o, except_states=("Create Kafka topics",))

    policy = retrier("Create Kafka topics", "KafkaUnreachableError")
    max_attempts = int(policy["MaxAttempts"])
    [topics_visit] = visits(o, "Create Kafka topics")
    assert topics_visit.attempts == 1 + max_attempts, (
        f"expected 1 + MaxAttempts ({max_attempts}) attempts, got {topics_visit.attempts}{describe(o)}"
    )
    assert [e for e, _ in topics_visit.errors] == ["KafkaUnreachableError"] * (1 + max_attempts), topics_visit.errors

    assert stack.aws is not None
    retries = [d for d in stack.aws.time.delays if d.kind == "retry"]
    caps = retry_caps(policy)
    assert len(retries) == max_attempts, f"retry delays {retries}, expected {max_attempts}"
    assert caps == sorted(caps), f"the ASL's caps do not back off: {caps}"
    assert caps[-1] > caps[0], f"the ASL's caps do not back off: {caps}"
    for n, (delay, cap) in enumerate(zip(retries, caps, strict=True)):
        assert 0 <= delay.requested_seconds <= cap, (
            f"retry {n + 1}: {delay.requested_seconds:.2f}s outside full-jitter bound [0, {cap}] "
            f"(IntervalSeconds {policy['IntervalSeconds']} * BackoffRate {policy['BackoffRate']}^{n}, "
            f"MaxDelaySeconds {policy.get('MaxDelaySeconds')})"
        )
        assert delay.slept_seconds == pytest.approx(delay.requested_seconds * stack.options.time_scale), delay
    assert sum(d.requested_seconds for d in retries) <= sum(caps)

    assert "Restart services" not in o.path, describe(o)
    assert_services_not_restarted(stack, result)
    # Not the workflow's summary: ReleaseStoppedAtStepRule's target, with the state, attempts and redrive command.
    stopped = assert_stopped_notification(stack.client("stepfunctions"), inbox, o.execution_arn, stack.aws.region)
    assert f"attempts: {1 + max_attempts} at Create Kafka topics" in stopped, stopped
    assert stopped[0].startswith(
        f"deployflow release {o.execution_arn.rsplit(':', 1)[-1]} FAILED at Create Kafka topics"
    )
    assert [(d.rule, d.function, d.error) for d in stack.deliveries] == [
        ("ReleaseStoppedAtStepRule", "NotifyStoppedFunction", None)
    ]

    # The report as printed: the state, the error, the real duration and attempts, the exact redrive command.
    report = printed(stack, o).splitlines()
    assert o.start_date is not None
    assert o.stop_date is not None
    took = (o.stop_date - o.start_date).total_seconds()
    assert report[0].startswith(f"FAILED at Create Kafka topics in {took:.1f}s:"), report
    slept = sum(d.slept_seconds for d in retries)
    assert took >= slept, f"the report's duration {took:.1f}s is shorter than the retry waits {slept:.1f}s"
    assert f"attempts: {1 + max_attempts} at Create Kafka topics" in report, report
    assert "error: KafkaUnreachableError" in report, report
    assert any(line.startswith("cause: Kafka not reachable") for line in report), report
    assert report[-1] == (
        "next: fix the cause, then resume at this state: aws stepfunctions redrive-execution --execution-arn "
        f"{o.execution_arn} --region {stack.aws.region} --endpoint-url {stack.aws.endpoint_url}"
    ), report


def test_given_kafka_down_then_back_when_the_stopped_execution_is_redriven_then_it_resumes_at_the_topics_and_succeeds(
    stack: LocalStack, inbox: Inbox
) -> None:
    with overrides(stack, function_env={"KAFKA_TIMEOUT_SECONDS": "1"}):
        result = run_scenario(stack, "kafka-down-then-redrive")
    failed, o = result.outcomes
    arn = failed.execution_arn
    sfn = stack.client("stepfunctions")
    assert stack.aws is not None

    # Before the redrive: stopped at the step, uncaught, as kafka-down.
    assert_failed_with(failed, "KafkaUnreachableError", bootstrap(stack), "Kafka not reachable")
    assert failed.failed_state == "Create Kafka topics", describe(failed)
    max_attempts = int(retrier("Create Kafka topics", "KafkaUnreachableError")["MaxAttempts"])
    before_report = printed(stack, failed).splitlines()
    assert before_report[0].startswith("FAILED at Create Kafka topics in "), before_report
    assert f"attempts: {1 + max_attempts} at Create Kafka topics" in before_report, before_report
    # The scenario ran exactly the command the report gave.
    assert result.commands == [
        f"aws stepfunctions redrive-execution --execution-arn {arn} --region {stack.aws.region} "
        f"--endpoint-url {stack.aws.endpoint_url}"
    ]
    assert before_report[-1] == "next: fix the cause, then resume at this state: " + result.commands[0]

    # The one-release lock: kept by the stopped execution, given back when its redrive succeeded (Release lock).
    lock_checks = {c.description: c.ok for c in result.checks if "lock" in c.description}
    assert lock_checks == {
        "while stopped it kept the release lock, and its redrive went on with it": True,
        "the release lock is free": True,
    }, lock_checks
    assert stack.lock_holder() is None

    # After: the same execution, resumed at Create Kafka topics, the rest of the release run once.
    assert (o.execution_arn, o.status, o.error, o.redrive_count) == (arn, "SUCCEEDED", None, 1), describe(o)
    topics_at = RELEASE_PATH.index("Create Kafka topics")
    assert_path(o, [*RELEASE_PATH[: topics_at + 1], *RELEASE_PATH[topics_at:]])
    stopped, resumed = visits(o, "Create Kafka topics")
    assert (stopped.attempts, stopped.failed, resumed.attempts, resumed.failed) == (1 + max_attempts, True, 1, False)
    assert stopped.stopped_at is not None
    assert resumed.entered_at > stopped.stopped_at
    assert_single_attempts(o, except_states=("Create Kafka topics",))
    events = execution_history(sfn, arn)
    redriven = [i for i, e in enumerate(events) if e["type"] == "ExecutionRedriven"]
    assert len(redriven) == 1, [e["type"] for e in events]
    assert events[redriven[0] - 1]["type"] == "ExecutionFailed"
    assert events[redriven[0] + 1]["stateEnteredEventDetails"]["name"] == "Create Kafka topics"
    assert [e["id"] for e in events] == list(range(1, len(events) + 1)), "one history, ids continuing"
    after_report = printed(stack, o).splitlines()
    assert o.running_seconds is not None
    assert after_report[0].startswith(f"SUCCEEDED in {o.running_seconds:.1f}s, redriven once: "), after_report
    runs = after_report[2]
    assert runs.startswith("runs: first "), after_report
    assert " FAILED at Create Kafka topics (KafkaUnreachableError); redrive 1 " in runs, runs
    assert runs.endswith(" SUCCEEDED"), runs
    assert not any(line.startswith("next:") for line in after_report), after_report
    described = sfn.describe_execution(executionArn=arn)
    assert (described["redriveCount"], described["redriveStatus"]) == (1, "NOT_REDRIVABLE"), described
    with pytest.raises(sfn.exceptions.ExecutionNotRedrivable):
        sfn.redrive_execution(executionArn=arn)

    # The world, read through other clients: the release is complete, each service restarted once.
    in_kafka = topic_partitions(bootstrap(stack))
    assert {t: in_kafka.get(t) for t in TOPICS} == dict.fromkeys(TOPICS, 9), in_kafka
    assert [v for v, _, _, _ in history_rows(database(stack))] == HEAD_VERSIONS
    now = {name: primary(s)["id"] for name, s in services(stack.client("ecs"), CLUSTER, SERVICES).items()}
    before = dict(result.before.primary_deployments)
    assert all(now[name] != before[name] for name in SERVICES), (before, now)
    assert len(stack.aws.ecs.runs) == 1, "the migration task ran again"
    notes = inbox.notifications()
    assert len(notes) == 2, f"expected the stopped-at-step notification, then the success one, got {notes}"
    assert notes[0].subject == f"deployflow {arn.rsplit(':', 1)[-1]}: FAILED at Create Kafka topics", notes[0].subject
    assert f"aws stepfunctions redrive-execution --execution-arn {arn} --region {stack.aws.region}" in notes[0].message
    assert f"release {DEFAULT_TAG} succeeded" in notes[1].subject, notes[1].subject

    # `deployflow watch ARN` after the redrive follows the whole history to SUCCEEDED.
    env = {**base_environment(), **stack.client_environment()}
    watched = run_cli(["watch", arn, "--endpoint-url", str(stack.aws.endpoint_url), "--poll", "0.2"], env)
    assert watched.returncode == 0, watched.explain()
    lines = [line[13:] for line in watched.stderr.splitlines() if line.startswith("  ") and line[10:11] == "Z"]
    stop = lines.index("■ execution FAILED")
    assert lines[stop + 1] == "⤼ execution redriven (redrive 1): resumes where it stopped", watched.explain()
    assert lines[stop + 2] == "▶ Create Kafka topics (#2)", watched.explain()
    assert lines[-1] == "■ execution SUCCEEDED", watched.explain()
    assert ", redriven once: " in watched.stderr, watched.explain()
    assert json.loads(watched.stdout)["executionArn"] == arn, watched.explain()


def test_given_a_step_outliving_its_function_timeout_then_the_task_fails_with_sandbox_timedout_uncaught(
    stack: LocalStack, inbox: Inbox
) -> None:
    result = run_scenario(stack, "step-timeout")
    o = result.outcome

    assert o.status == "FAILED", describe(o)
    assert o.error == "Sandbox.Timedout", describe(o)
    assert cause_error_type(o) == "Sandbox.Timedout", describe(o)
    assert o.failed_state == "Create Kafka topics", describe(o)
    [topics_visit] = visits(o, "Create Kafka topics")
    # Not in any Retry of the state (a timed-out step may have half-done its work): one attempt, then the end.
    assert topics_visit.attempts == 1, topics_visit
    assert "Summarize failure" not in o.path, describe(o)
    # Not the workflow's summary (it does not own the error): the stopped-at-step notification, one attempt.
    assert stack.aws is not None
    stopped = assert_stopped_notification(stack.client("stepfunctions"), inbox, o.execution_arn, stack.aws.region)
    assert "attempts: 1 at Create Kafka topics" in stopped, stopped
    assert "error: Sandbox.Timedout" in stopped, stopped
    assert_services_not_restarted(stack, result)
    # The emulator killed the timed-out runtime; the function's next invocation gets a fresh one that works.
    response = stack.client("lambda").invoke(
        FunctionName=stack.function_name("CreateTopicsFunction"), Payload=b'{"not": "a release"}'
    )
    assert json.loads(response["Payload"].read())["errorType"] == "InvalidInputError"


def test_given_a_service_whose_deployment_fails_then_the_release_fails_naming_it_and_its_rollback(
    stack: LocalStack, inbox: Inbox
) -> None:
    result = run_scenario(stack, "service-fails")
    o = result.outcome
    failing = "alert-matcher"

    new_ids = {s["name"]: s["deploymentId"] for s in state_output(o, "Restart services")["rollout"]["services"]}
    assert sorted(new_ids) == sorted(SERVICES), new_ids
    assert_failed_with(
        o,
        "ServiceDeploymentFailedError",
        failing,
        new_ids[failing],
        "rolled back",
        "health check failed (connection refused :8080)",
    )
    assert_path(
        o,
        [
            "Receive release request",
            "Validate release request",
            "Check migration image",
            "Run migration task",
            MIGRATION_LOOP,
            "Verify schema",
            "Create Kafka topics",
            "Restart services",
            SERVICES_LOOP,
            "Check services failed",
            *FAILURE_TAIL,
        ],
    )
    assert o.failed_state == "Check services", describe(o)
    assert_loop(stack, o, "services", left_by="error")
    assert "Build deployment record" not in o.path, describe(o)

    ecs = stack.client("ecs")
    described = services(ecs, CLUSTER, SERVICES)
    deployments = {d["id"]: d for d in described[failing]["deployments"]}
    assert primary(described[failing])["id"] != new_ids[failing], "the failed deployment is still PRIMARY"
    failed_deployment = deployments.get(new_ids[failing])
    assert failed_deployment is None or failed_deployment["rolloutState"] == "FAILED", failed_deployment
    stopped = [t for t in all_tasks(ecs, CLUSTER) if t.get("startedBy") == new_ids[failing]]
    assert stopped, f"no stopped task of {failing}'s failed deployment"
    assert all(t["lastStatus"] == "STOPPED" and t["containers"][0].get("exitCode") != 0 for t in stopped), stopped
    for name in SERVICES:
        if name == failing:
            continue
        live = primary(described[name])
        assert live["id"] == new_ids[name], f"{name}: PRIMARY {live['id']}, the release started {new_ids[name]}"
        assert live["rolloutState"] in ("IN_PROGRESS", "COMPLETED"), live

    assert [v for v, _, _, _ in history_rows(database(stack))] == HEAD_VERSIONS  # the migration did run before
    assert_notified_failure(inbox, "ServiceDeploymentFailedError", DEFAULT_TAG, "Check services")
    fields = assert_caught_summary(o, "Check services", "ServiceDeploymentFailedError", "alert-matcher", "rolled back")
    services_text = fields["Services"]
    assert "alert-matcher: FAILED / rolled back" in services_text, o.summary
    assert "event: (service alert-matcher)" in services_text, "the rolled-back service shows its last events"
    for name in SERVICES:
        if name != "alert-matcher":
            line = next(line for line in services_text.splitlines() if f"{name}: " in line)
            assert line.strip().startswith(f"{name}: COMPLETED"), f"as last known, not one poll earlier:\n{o.summary}"
    # The rollback's truth: the previous revision is PRIMARY again and its tasks still serve (its rollout may have
    # completed by the time Summarize failure read it: the local rollout takes 0.5 s).
    rolled_back_to = primary(described[failing])
    now_primary = re.escape(f"PRIMARY is now {rolled_back_to['id']} ({rolled_back_to['taskDefinition']}, rollout ")
    assert re.search(now_primary + r"(IN_PROGRESS|COMPLETED), 2/2 running\)", services_text), o.summary
    assert "alert-matcher failed)" in services_text, f"the footer says why the rollout ended:\n{o.summary}"
    assert "not finished" not in services_text, f"a failed rollout is not an unfinished one:\n{o.summary}"
    assert f"aws ecs describe-services --cluster {CLUSTER} --services {failing} " in fields["Next"], o.summary
    assert "; the migration already ran (it stays applied); their events: aws ecs" in fields["Next"], o.summary
    rollback_event = next(e for e in services_text.splitlines() if "rolling back to deployment" in e)
    assert primary(described[failing])["id"] in rollback_event, "the rollback event names the deployment now PRIMARY"


def test_given_a_release_running_when_another_starts_then_the_second_is_refused_and_one_migration_runs(
    stack: LocalStack, inbox: Inbox
) -> None:
    result = run_scenario(stack, "concurrent")
    assert len(result.outcomes) == 2, [o.execution_arn for o in result.outcomes]
    first, second = result.outcomes

    first_name = first.execution_arn.rsplit(":", 1)[-1]
    assert_failed_with(second, "DeploymentInProgressError", first_name, first.execution_arn)
    assert second.path == REFUSED_PATH, describe(second)
    assert_single_attempts(second)  # refused once, never retried

    assert first.status == "SUCCEEDED", describe(first)
    assert_path(first, RELEASE_PATH)
    assert first.output is not None, describe(first)
    assert first.output["outcome"] == "succeeded", first.output

    sfn = stack.client("stepfunctions")
    first_run = sfn.describe_execution(executionArn=first.execution_arn)
    second_run = sfn.describe_execution(executionArn=second.execution_arn)
    assert first_run["startDate"] <= second_run["startDate"] <= first_run["stopDate"], "the runs did not overlap"

    migrations = [t for t in all_tasks(stack.client("ecs"), CLUSTER) if t.get("group") == f"family:{TASK_FAMILY}"]
    assert len(migrations) == 1, f"expected one migration task, ECS has {[t['taskArn'] for t in migrations]}"
    assert result.after.tasks_started - result.before.tasks_started == 1

    notes = inbox.notifications()
    subjects = sorted(n.subject for n in notes)
    assert len(notes) == 2, f"expected two notifications (one per execution), got {subjects}"
    assert any("succeeded" in s for s in subjects), subjects
    assert any("DeploymentInProgressError" in s for s in subjects), subjects
    assert_caught_summary(
        second, "Validate release request", "DeploymentInProgressError", first.execution_arn.rsplit(":", 1)[-1]
    )


def test_given_malformed_input_then_validation_fails_naming_each_field_and_nothing_else_runs(
    stack: LocalStack, inbox: Inbox
) -> None:
    result = run_scenario(stack, "invalid-input")
    o = result.outcome
    bad = execution_input(stack, o)

    assert_failed_with(o, "InvalidInputError", "imageTag", "dryrun")
    assert o.path == REFUSED_PATH, describe(o)
    assert o.failed_state == "Validate release request", describe(o)
    assert_single_attempts(o)  # never retry an invalid input
    assert_world_untouched(stack, result)
    assert_notified_failure(inbox, "InvalidInputError", bad["imageTag"], "Validate release request")
    fields = assert_caught_summary(o, "Validate release request", "InvalidInputError", "imageTag", "dryrun")
    assert fields["Request"].startswith("as received (not validated): "), o.summary
    assert fields["Execution"].startswith(o.execution_arn.rsplit(":", 1)[-1]), o.summary


def test_given_a_dry_run_then_the_plan_task_reports_pending_v0002_with_its_lock_and_nothing_is_applied(
    stack: LocalStack, inbox: Inbox
) -> None:
    result = run_scenario(stack, "dry-run")
    o = result.outcome

    assert (o.status, o.error) == ("SUCCEEDED", None), describe(o)
    assert_path(o, RELEASE_PATH)
    assert "Check migration task" in o.path, f"the plan task is judged like a migration{describe(o)}"
    assert loop_turns(o.path, "services") == 0, f"a dry run waited for services{describe(o)}"
    assert_single_attempts(o)

    record = o.output
    assert record is not None, describe(o)
    assert (record["outcome"], record["dryRun"]) == ("dry-run", True), record
    assert record["imageDigest"] == stack.image_digests[DEFAULT_TAG], record
    migration = record["migration"]
    assert migration["exitCode"] == 0, migration
    (planned,) = migration["plan"]
    assert (planned["file"], planned["lock"], planned["lint"], planned["applied"]) == (
        "V0002__add_rule_priority.sql",
        "ACCESS EXCLUSIVE",
        "pass",
        False,
    ), planned
    assert [(s["number"], s["kind"], s["lock"]) for s in planned["statements"]] == [
        (1, "AlterTable", "ACCESS EXCLUSIVE")
    ]
    summary = o.summary or ""
    assert "Plan:" in summary
    assert "V0002__add_rule_priority.sql: ACCESS EXCLUSIVE; lint pass" in summary, summary

    # The one task was the plan: the same task definition with the command override, exit 0, read-only.
    ecs = stack.client("ecs")
    (task,) = all_tasks(ecs, CLUSTER)
    assert task["taskArn"] == migration["taskArn"]
    assert task["taskDefinitionArn"] == migration["taskDefinitionArn"]
    assert task["overrides"]["containerOverrides"] == [{"name": "migration", "command": ["plan"]}], task["overrides"]
    assert (task["lastStatus"], task["containers"][0]["exitCode"]) == ("STOPPED", 0), task
    assert public_tables(database(stack)) == sorted(result.before.tables), "a dry run changed the tables"
    assert [str(v) for v, _, _, _ in history_rows(database(stack))] == [v for v, _ in result.before.history]
    assert_no_release_topics(stack)
    assert_services_not_restarted(stack, result)
    notes = inbox.notifications()
    assert len(notes) == 1, f"expected one SNS notification, got {notes}"
    assert notes[0].subject.endswith(f": dry run of {DEFAULT_TAG} passed"), notes[0].subject
    fields = summary_lines(o)
    assert fields["headline"].startswith(f"deployflow dry run of {DEFAULT_TAG} passed: nothing was changed"), o.summary
    assert "Error" not in fields, o.summary
    assert notes[0].message == o.summary, f"published {notes[0].message!r}, the record's summary is {o.summary!r}"


def test_given_a_file_that_drops_a_column_then_the_lint_refuses_it_before_anything_is_applied_unless_waived(
    stack: LocalStack,
) -> None:
    result = run_scenario(stack, "unsafe-migration")
    dry, unsafe = result.outcomes

    assert dry.status == "SUCCEEDED", describe(dry)
    assert dry.output is not None
    (planned,) = dry.output["migration"]["plan"]
    assert [(f["rule"], f["line"]) for f in planned["findings"]] == [("ban-drop-column", 3)], planned
    assert planned["findings"][0]["waived"].startswith("last_error unread since service v41"), planned

    assert_path(
        unsafe,
        [
            "Receive release request",
            "Validate release request",
            "Check migration image",
            "Run migration task",
            MIGRATION_LOOP,
            "Check migration task failed",
            *FAILURE_TAIL,
        ],
    )
    unsafe_fields = assert_caught_summary(
        unsafe, "Check migration task", "MigrationFailedError", "ban-drop-column", "nothing applied"
    )
    assert "PostgreSQL" not in unsafe_fields["Next"].split("or the failing statement")[0], unsafe.summary
    assert "before it:" not in unsafe_fields["Cause"], f"the plan_file line repeats the finding:\n{unsafe.summary}"
    message = assert_failed_with(
        unsafe, "MigrationFailedError", "exit code 11", "MigrationLintError", "ban-drop-column", "nothing applied"
    )
    assert "lock_acquired" not in message, "the lint runs before the advisory lock"
    assert [str(v) for v, _, _, _ in history_rows(database(stack))] == [v for v, _ in result.before.history]
    assert_services_not_restarted(stack, result)


def test_given_a_finished_release_when_it_runs_again_then_migrations_and_topics_are_a_no_op(stack: LocalStack) -> None:
    result = run_scenario(stack, "rerun")
    assert len(result.outcomes) == 2
    first, second = result.outcomes
    for outcome in (first, second):
        assert outcome.status == "SUCCEEDED", describe(outcome)
        assert_path(outcome, RELEASE_PATH)
    assert first.output is not None, describe(first)
    assert second.output is not None, describe(second)

    # History: one row per file, applied during the first execution, untouched by the second.
    sfn = stack.client("stepfunctions")
    first_run = sfn.describe_execution(executionArn=first.execution_arn)
    second_run = sfn.describe_execution(executionArn=second.execution_arn)
    rows = history_rows(database(stack))
    assert [v for v, _, _, _ in rows] == HEAD_VERSIONS, rows
    for _, name, _, applied_at in rows:
        assert first_run["startDate"] <= applied_at <= first_run["stopDate"] < second_run["startDate"], (
            f"{name} applied at {applied_at}, outside the first execution "
            f"({first_run['startDate']} .. {first_run['stopDate']}); second started {second_run['startDate']}"
        )

    # The second migration task ran, at head, and exited 0.
    one, two = first.output["migration"], second.output["migration"]
    assert two["taskArn"] != one["taskArn"], (one, two)
    assert (two["exitCode"], two["registeredNewRevision"]) == (0, False), two
    task = describe_task(stack.client("ecs"), CLUSTER, two["taskArn"])
    assert (task["lastStatus"], task["containers"][0]["exitCode"]) == ("STOPPED", 0), task
    stream = f"migration/migration/{two['taskArn'].rsplit('/', 1)[-1]}"
    events = [json.loads(line) for line in log_lines(stack.client("logs"), LOG_GROUP, stream) if line.startswith("{")]
    finished = [e for e in events if e.get("event") == "migrate_finished"]
    assert [(e["applied"], e["already_applied"]) for e in finished] == [([], len(HEAD_VERSIONS))], (
        f"the second runner was not a no-op at head: {events}"
    )
    revisions = stack.client("ecs").list_task_definitions(familyPrefix=TASK_FAMILY)["taskDefinitionArns"]
    assert len(revisions) == 2, f"expected the bootstrap revision and one pinned revision: {revisions}"

    # Topics: unchanged, and reported so.
    topics = second.output["topics"]["topics"]
    assert [(t["name"], t["action"], t["partitionsBefore"], t["partitionsAfter"]) for t in topics] == [
        (name, "unchanged", 9, 9) for name in TOPICS
    ], topics
    in_kafka = topic_partitions(bootstrap(stack))
    assert {t: in_kafka.get(t) for t in TOPICS} == dict.fromkeys(TOPICS, 9), in_kafka
    schema = second.output["schema"]
    assert (schema["verdict"], schema["pendingMigrations"]) == ("match", []), schema
    fields = summary_lines(second)
    assert fields["headline"] == f"deployflow release of {DEFAULT_TAG} succeeded", second.summary
    assert fields["Topics"] == "unchanged " + ", ".join(TOPICS), second.summary


def test_given_a_service_gone_from_the_cluster_then_the_preflight_ends_the_release_before_the_migration(
    stack: LocalStack, inbox: Inbox
) -> None:
    result = run_scenario(stack, "service-missing")
    o = result.outcome

    assert_path(o, REFUSED_PATH)
    fields = assert_caught_summary(o, "Validate release request", "ServiceNotFoundError", f"{SERVICES[1]} (INACTIVE)")
    assert (fields["Migration"], fields["Services"]) == ("not reached", "not reached"), o.summary
    assert fields["Next"].endswith("; nothing was changed: the migration did not run"), o.summary
    assert result.before.tables == result.after.tables, "the database changed"
    assert result.before.history == result.after.history
    assert result.before.tasks_started == result.after.tasks_started, "a migration task was started"
    assert_notified_failure(inbox, "ServiceNotFoundError", DEFAULT_TAG, "Validate release request")


def test_given_an_input_that_is_not_an_object_then_it_is_refused_with_a_summary_and_a_notification(
    stack: LocalStack, inbox: Inbox
) -> None:
    result = run_scenario(stack, "bad-input-shape")
    o = result.outcome

    assert_path(o, REFUSED_PATH)
    fields = assert_caught_summary(
        o, "Validate release request", "InvalidInputError", "expected a JSON object", "got an array"
    )
    assert fields["Request"] == "as received (not validated): []", o.summary
    assert fields["Execution"].startswith(o.execution_arn.rsplit(":", 1)[-1]), o.summary
    notes = inbox.notifications()
    assert len(notes) == 1, notes
    assert notes[0].message == o.summary
    assert "InvalidInputError at Validate release request" in notes[0].subject, notes[0].subject


TESTED = {
    "bad-input-shape",
    "service-missing",
    "happy",
    "image-missing",
    "migration-fails",
    "migration-timeout",
    "schema-drift",
    "kafka-down",
    "kafka-down-then-redrive",
    "step-timeout",
    "service-fails",
    "concurrent",
    "invalid-input",
    "dry-run",
    "rerun",
    "unsafe-migration",
}


def test_every_named_scenario_has_an_execution_path_test() -> None:
    untested, gone = set(SCENARIOS) - TESTED, TESTED - set(SCENARIOS)
    assert not untested, f"scenarios without an execution-path test: {untested}"
    assert not gone, f"tests for scenarios that no longer exist: {gone}"
