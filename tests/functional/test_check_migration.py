"""Check migration task: the migration container's verdict, the deadline, and the failure message (moto ECS + logs).

moto 5.2.5 never finishes a task the way ECS does (see ``ReleaseWorld.stop_container``): the tests stop tasks
through moto's backend objects, and freeze moto's task lifecycle where a task must stay RUNNING.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from dbmigrate.errors import MigrationStatementError
from dbmigrate.events import JsonLines
from dbmigrate.files import parse_migration
from dbmigrate.plan import describe
from release_steps import check_migration
from release_steps.errors import InvalidInputError, MigrationFailedError, MigrationTimeoutError
from release_steps.models import MigrationStepInput, MigrationTask
from release_steps.timeutil import to_iso

from tests.functional.release_world import CLUSTER, CONTAINER, LOG_PREFIX, SIDECAR, ReleaseWorld, load_event

FUTURE = to_iso(datetime.now(UTC) + timedelta(hours=1))
PAST = to_iso(datetime.now(UTC) - timedelta(minutes=1))


@pytest.fixture
def world(release_world: ReleaseWorld) -> ReleaseWorld:
    release_world.create_cluster()
    return release_world


@pytest.fixture
def task_arn(world: ReleaseWorld) -> str:
    """A migration task started by Run migration task's rules, RUNNING in moto."""
    return world.run_migration_task(world.register_migration_task())


def make_event(task_arn: str | None, deadline: str = FUTURE, **migration: Any) -> dict[str, Any]:
    event = load_event("check_migration")
    event["migration"].update({"taskArn": task_arn, "deadline": deadline, "checks": 2, **migration})
    return event


def invoke(event: dict[str, Any], context: Any) -> MigrationTask:
    return MigrationTask.load(check_migration.lambda_handler(event, context))


def failure_of(event: dict[str, Any], context: Any) -> str:
    with pytest.raises(MigrationFailedError) as raised:
        invoke(event, context)
    message = raised.value.message
    assert message.startswith("migration task ")
    assert "\n" not in message, "messages are one line"
    return message


def test_given_the_events_file_when_parsed_then_it_is_a_migration_step_input() -> None:
    state = MigrationStepInput.load(load_event("check_migration"))

    assert state.migration.task_arn is not None
    assert state.migration.done is False


def test_given_a_running_task_before_its_deadline_when_checked_then_not_done_and_checks_counted(
    world: ReleaseWorld, task_arn: str, release_context: Any, frozen_task_lifecycle: None
) -> None:
    result = invoke(make_event(task_arn), release_context)

    assert result.done is False
    assert result.status == "RUNNING"
    assert result.checks == 3
    assert result.next_wait_seconds == 4, "third check: the wait doubles from 1 s (1, 2, 4 ...)"
    assert result.task_arn == task_arn
    assert world.backend_task(task_arn).desired_status == "RUNNING", "a check does not touch a running task"


def test_given_a_running_task_past_its_deadline_when_checked_then_it_is_stopped_and_timeout_error(
    world: ReleaseWorld, task_arn: str, release_context: Any, frozen_task_lifecycle: None
) -> None:
    with pytest.raises(MigrationTimeoutError) as raised:
        invoke(make_event(task_arn, deadline=PAST), release_context)

    assert task_arn in raised.value.message
    assert PAST in raised.value.message
    task = world.backend_task(task_arn)
    assert task.desired_status == "STOPPED", "the timed-out migration is stopped"
    assert PAST in task.stopped_reason, "the stop reason names the deadline"


def test_given_a_task_stopped_with_exit_code_0_when_checked_then_done_with_exit_code_and_duration(
    world: ReleaseWorld, task_arn: str, release_context: Any
) -> None:
    started = datetime(2026, 11, 23, 10, 16, 2, 481000, tzinfo=UTC)
    world.stop_container(
        task_arn, 0, started_at=started, stopped_at=started + timedelta(seconds=46, microseconds=531000)
    )

    result = invoke(make_event(task_arn), release_context)

    assert result.done is True
    assert result.status == "STOPPED"
    assert result.exit_code == 0
    assert result.stop_code == "EssentialContainerExited"
    assert result.started_at == "2026-11-23T10:16:02.481Z"
    assert result.stopped_at == "2026-11-23T10:16:49.012Z"
    assert result.duration_seconds == 46.531
    assert result.checks == 3


def test_given_a_success_after_the_deadline_when_checked_then_the_result_counts_not_the_clock(
    world: ReleaseWorld, task_arn: str, release_context: Any
) -> None:
    world.stop_container(task_arn, 0)

    assert invoke(make_event(task_arn, deadline=PAST), release_context).done is True


def test_given_motos_own_task_lifecycle_when_checked_repeatedly_then_done_once_it_reports_stopped(
    world: ReleaseWorld, task_arn: str, release_context: Any
) -> None:
    # moto advances a task one state per DescribeTasks (RUNNING -> ... -> STOPPED), container exit code 0.
    event = make_event(task_arn)
    seen = []
    for _ in range(6):
        result = invoke(event, release_context)
        seen.append(result.status)
        if result.done:
            break
        event["migration"] = result.to_json()

    assert seen == ["RUNNING", "RUNNING", "RUNNING", "STOPPED"], "DEACTIVATING/STOPPING/DEPROVISIONING are RUNNING"
    assert result.exit_code == 0


def test_given_a_non_zero_exit_when_checked_then_migration_failed_carries_codes_reasons_and_log_tail(
    world: ReleaseWorld, task_arn: str, release_context: Any
) -> None:
    task_id = task_arn.rsplit("/", 1)[-1]
    world.write_log(f"{LOG_PREFIX}/{CONTAINER}/{task_id}", [f"line {i}" for i in range(1, 11)])
    world.stop_container(task_arn, 3, container_reason="migration 0007_rules.sql: lock timeout")

    message = failure_of(make_event(task_arn), release_context)

    assert task_arn in message
    assert f"container {CONTAINER} exit code 3" in message
    assert "stop code EssentialContainerExited" in message
    assert "stopped reason: Essential container in task exited" in message
    assert "container reason: migration 0007_rules.sql: lock timeout" in message
    assert "last 5 log lines" in message, "MIGRATION_LOG_TAIL_LINES=5"
    assert "line 6 | line 7 | line 8 | line 9 | line 10" in message
    assert "line 5 " not in message, "only the last 5 lines"


def test_given_the_log_stream_does_not_exist_when_the_migration_failed_then_the_message_says_so(
    world: ReleaseWorld, task_arn: str, release_context: Any
) -> None:
    world.stop_container(task_arn, 1)

    message = failure_of(make_event(task_arn), release_context)

    assert "exit code 1" in message
    assert f"{LOG_PREFIX}/{CONTAINER}/{task_arn.rsplit('/', 1)[-1]} does not exist" in message


def test_given_the_task_failed_to_start_when_checked_then_migration_failed_without_an_exit_code(
    world: ReleaseWorld, task_arn: str, release_context: Any
) -> None:
    world.stop_container(
        task_arn,
        None,
        stop_code="TaskFailedToStart",
        stopped_reason="CannotPullContainerError: pull image manifest has been retried 5 time(s)",
        container_reason="CannotPullContainerError: ref not found",
    )

    message = failure_of(make_event(task_arn), release_context)

    assert "exit code none" in message
    assert "stop code TaskFailedToStart" in message
    assert "CannotPullContainerError: pull image manifest" in message


def test_given_a_failing_sidecar_and_a_successful_migration_when_checked_then_done(
    world: ReleaseWorld, task_arn: str, release_context: Any
) -> None:
    world.add_container(task_arn, SIDECAR, 137, first=True)
    world.stop_container(task_arn, 0)

    assert invoke(make_event(task_arn), release_context).exit_code == 0, "only the migration container is judged"


def test_given_a_successful_sidecar_and_a_failed_migration_when_checked_then_migration_failed(
    world: ReleaseWorld, task_arn: str, release_context: Any
) -> None:
    world.add_container(task_arn, SIDECAR, 0, first=True)
    world.stop_container(task_arn, 2)

    assert f"container {CONTAINER} exit code 2" in failure_of(make_event(task_arn), release_context)


def test_given_an_unknown_task_when_checked_then_migration_failed_names_the_task(
    world: ReleaseWorld, release_context: Any
) -> None:
    missing = f"arn:aws:ecs:us-east-1:123456789012:task/{CLUSTER}/00000000000000000000000000000000"

    message = failure_of(make_event(missing), release_context)

    assert f"{missing} was not found in cluster {CLUSTER}" in message


def test_given_a_dry_run_migration_when_checked_then_it_is_passed_through_without_asking_ecs(
    release_world: ReleaseWorld, release_context: Any
) -> None:
    # No cluster exists: any ECS call would fail.
    event = make_event(None, status="SKIPPED", done=True, dryRunNote="dry run: would reuse ...")

    result = invoke(event, release_context)

    assert result.status == "SKIPPED"
    assert result.done is True
    assert result.checks == 2


def test_given_a_started_migration_without_task_arn_when_checked_then_invalid_input(
    world: ReleaseWorld, release_context: Any
) -> None:
    with pytest.raises(InvalidInputError, match=r"migration.taskArn"):
        invoke(make_event(None), release_context)


def test_given_a_malformed_deadline_when_checked_then_invalid_input_names_it(
    world: ReleaseWorld, task_arn: str, release_context: Any
) -> None:
    with pytest.raises(InvalidInputError, match=r"migration.deadline"):
        invoke(make_event(task_arn, deadline="tomorrow"), release_context)


def test_given_the_events_file_with_a_moto_task_when_checked_then_it_is_judged(
    world: ReleaseWorld, task_arn: str, release_context: Any
) -> None:
    event = load_event("check_migration")
    event["migration"]["taskArn"] = task_arn
    world.stop_container(task_arn, 0)

    result = invoke(event, release_context)

    assert result.done is True
    assert result.checks == 3


def runner_plan_lines(*, applied: bool) -> list[str]:
    """The lines `python -m dbmigrate plan` / `migrate` writes for one pending file (real parse, real squawk)."""
    stream = io.StringIO()
    log = JsonLines(stream)
    sql = (
        "-- deployflow:allow adding-required-field: rules has no rows until the v42 importer ships\n"
        "ALTER TABLE rules ADD COLUMN owner text NOT NULL;\n"
    )
    describe([parse_migration("V0002__rule_owner.sql", sql.encode())], server_version=150000, log=log)
    if applied:
        log("migration_applied", file="V0002__rule_owner.sql", version=2, transactional=True, duration_ms=12)
        log("migrate_finished", applied=["V0002__rule_owner.sql"])
    return ["not json: the runner's stderr", *stream.getvalue().splitlines()]


@pytest.mark.parametrize("applied", [False, True])
def test_given_a_finished_task_when_checked_then_the_plan_comes_from_the_runners_log_lines(
    world: ReleaseWorld, task_arn: str, release_context: Any, applied: bool
) -> None:
    task_id = task_arn.rsplit("/", 1)[-1]
    world.write_log(f"{LOG_PREFIX}/{CONTAINER}/{task_id}", runner_plan_lines(applied=applied))
    world.stop_container(task_arn, 0)

    result = invoke(make_event(task_arn), release_context)

    assert result.plan is not None
    (planned,) = result.plan
    assert (planned.file, planned.lock, planned.lint, planned.applied) == (
        "V0002__rule_owner.sql",
        "ACCESS EXCLUSIVE",
        "pass",
        applied,
    )
    assert planned.duration_ms == (12 if applied else None)
    assert [(f.rule, f.line) for f in planned.findings] == [("adding-required-field", 2)]
    assert (planned.findings[0].waived or "").startswith("rules has no rows")
    assert [(s.number, s.line, s.kind, s.lock) for s in planned.statements] == [
        (1, 2, "AlterTable", "ACCESS EXCLUSIVE")
    ]
    assert planned.statements_total == 1, "the runner's snake_case statements_total must reach the model"


def test_given_a_finished_task_without_a_log_stream_when_checked_then_done_and_the_plan_note_says_why(
    world: ReleaseWorld, task_arn: str, release_context: Any
) -> None:
    world.stop_container(task_arn, 0)

    result = invoke(make_event(task_arn), release_context)

    assert result.done is True
    assert result.plan is None
    assert result.plan_note is not None
    assert result.plan_note.startswith("no plan: reading")


def test_given_the_runner_s_failure_line_in_the_log_when_checked_then_the_cause_leads_with_file_sqlstate_and_message(
    world: ReleaseWorld, task_arn: str, release_context: Any
) -> None:
    # GIVEN the log the runner's own sink writes for a failing statement (its JSON lines, then its stderr line)
    failure = MigrationStatementError(
        file="V0002__add_client_tier.sql",
        statement_number=4,
        line=5,
        excerpt="SELECT deployflow_no_such_function()",
        sqlstate="42883",
        error="function deployflow_no_such_function() does not exist",
        transactional=True,
    )
    sink = io.StringIO()
    log = JsonLines(sink)
    log("migration_started", file="V0002__add_client_tier.sql")
    log("lock_wait", level="WARNING", message="waiting for the advisory lock")
    log("migrate_failed", error=type(failure).__name__, exit_code=8, message=str(failure), **failure.log_fields())
    lines = [*sink.getvalue().splitlines(), f"dbmigrate: {failure}"]
    task_id = task_arn.rsplit("/", 1)[-1]
    world.write_log(f"{LOG_PREFIX}/{CONTAINER}/{task_id}", lines)
    world.stop_container(task_arn, 8)

    # WHEN the check step judges the stopped task
    with pytest.raises(MigrationFailedError) as raised:
        invoke(make_event(task_arn), release_context)

    # THEN the cause leads with the file, the statement, SQLSTATE and PostgreSQL's message, then an earlier warning
    message = raised.value.message
    assert message.startswith(
        "migration failed: V0002__add_client_tier.sql failed at statement 4 (line 5): SQLSTATE 42883: "
        "function deployflow_no_such_function() does not exist; statement: SELECT deployflow_no_such_function()"
    ), message
    assert "[runner migrate_failed: MigrationStatementError, exit code 8]" in message
    assert "before it: WARNING lock_wait: waiting for the advisory lock" in message
    assert f"container {CONTAINER} exit code 8" in message
    assert '{"ts"' not in message, "the raw JSON lines are not repeated once the failure line is found"
