"""render.py: the progress lines an operator watches, the deadline bar, the readable cause, the outcome report."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta

import pytest
from release_steps.messages import cause_message

from deployflow.progress import ExecutionOutcome, HistoryTracker, ProgressEvent
from deployflow.render import ProgressPrinter, aws_cli_options, deadline_bar, outcome_report
from tests.cli.history import EXECUTION_START, T0, History, kafka_outage_then_redrive, rollout_output


def written(history: History, show_waits: bool = False, terminal: bool | None = None) -> str:
    """What a ProgressPrinter writes for the history (a StringIO: not a terminal unless told)."""
    out = io.StringIO()
    printer = ProgressPrinter(out, show_waits=show_waits, terminal=terminal)
    tracker = HistoryTracker()
    for event in history.events:
        for progress in tracker.feed(event):
            printer(progress)
    printer.close()
    return out.getvalue()


def printed(history: History, show_waits: bool = False) -> list[str]:
    """The lines a ProgressPrinter writes for the history, without the leading clock."""
    lines = written(history, show_waits).splitlines()
    for line in lines:
        assert line[:2] == "  ", f"{line!r} is not indented"
        assert line[4] == line[7] == ":", f"{line!r} does not start with an HH:MM:SS clock"
        assert line[10] == "Z", f"{line!r}: the clock is not labelled UTC"
    return [line[13:] for line in lines]


def clocks(history: History) -> list[str]:
    return [line[2:11] for line in written(history).splitlines()]


def test_given_states_entered_and_exited_then_one_line_each_and_choices_and_waits_stay_quiet() -> None:
    history = (
        History()
        .started()
        .task("Validate release request")
        .entered("Migration task finished?", "Choice")
        .exited("Migration task finished?", state_type="Choice")
        .entered("Wait for migration task", "Wait")
        .exited("Wait for migration task", state_type="Wait")
        .entered("Release succeeded", "Succeed")
        .ended("ExecutionSucceeded")
    )

    lines = printed(history)

    assert lines == [
        "▶ Validate release request",
        "✓ Validate release request  1.30s",
        "▶ Release succeeded",
        "■ execution SUCCEEDED",
    ]
    assert "▶ Wait for migration task" in printed(history, show_waits=True)


def test_given_a_retried_task_then_retry_lines_name_the_attempt_and_the_done_line_counts_retries() -> None:
    history = (
        History()
        .started()
        .entered("Create Kafka topics")
        .lambda_attempt("KafkaUnreachableError", "no broker at 127.0.0.1:9092")
        .lambda_attempt("KafkaUnreachableError", "no broker at 127.0.0.1:9092")
        .lambda_attempt()
        .exited("Create Kafka topics")
    )

    lines = printed(history)

    assert lines == [
        "▶ Create Kafka topics",
        "✗ Create Kafka topics: KafkaUnreachableError: no broker at 127.0.0.1:9092",
        "↻ Create Kafka topics: attempt 2 after KafkaUnreachableError",
        "✗ Create Kafka topics: KafkaUnreachableError: no broker at 127.0.0.1:9092",
        "↻ Create Kafka topics: attempt 3 after KafkaUnreachableError",
        "✓ Create Kafka topics  1.90s, 2 retries",
    ]


def test_given_a_failure_caught_by_the_asl_then_the_state_is_never_drawn_as_done() -> None:
    history = (
        History()
        .started()
        .entered("Check migration image")
        .lambda_attempt("ImageNotFoundError", "image tag '2026-11-25.404' not found in ECR repository 'm'")
        .exited("Check migration image")
        .task("Summarize failure")
        .entered("Release failed", "Fail")
        .ended("ExecutionFailed")
    )

    lines = printed(history)

    assert lines[:3] == [
        "▶ Check migration image",
        "✗ Check migration image: ImageNotFoundError: image tag '2026-11-25.404' not found in ECR repository 'm'",
        "✗ Check migration image  1.30s  failed with ImageNotFoundError, caught",
    ]
    assert "✓ Summarize failure  1.30s" in lines
    assert lines[-2:] == ["▶ Release failed", "■ execution FAILED"]


def test_given_a_long_multiline_cause_then_the_failed_line_is_one_line_of_bounded_length() -> None:
    message = "migration V0002 failed:\n" + "ERROR: function deployflow_no_such_function() does not exist " * 20
    history = History().started().entered("Check migration task").lambda_attempt("MigrationFailedError", message)

    [_, failed] = printed(history)

    assert failed.startswith("✗ Check migration task: MigrationFailedError: migration V0002 failed: ERROR:")
    assert failed.endswith("…")
    assert len(failed) < 300


def test_given_check_services_outputs_then_the_done_line_draws_the_deadline_used_at_that_check() -> None:
    history = (
        History()
        .started()
        .task("Check services", rollout_output(deadline_seconds=20, checks=1))
        .task("Check services", rollout_output(deadline_seconds=20, checks=2))
    )

    lines = printed(history)

    # Not a terminal: the check that found the rollout not done is no line; the one that found it done is, with
    # the bar drawn at its exit: of a 20 s deadline, 4.6 s after the start (23%).
    assert lines == [
        "▶ Check services",
        "✓ Check services  1.30s  [#####...............]  23% of the deadline, check 2",
    ]


def polling(checks: int) -> History:
    """Check services run ``checks`` times, the rollout done at the last."""
    history = History().started()
    for check in range(1, checks + 1):
        output = rollout_output(deadline_seconds=600, checks=check)
        output["rollout"]["done"] = check == checks
        history.task("Check services", output)
    return history


def test_given_a_long_poll_loop_when_not_on_a_terminal_then_its_lines_do_not_grow_with_the_polls() -> None:
    history = polling(59)

    lines = printed(history)

    assert len(lines) == 2, lines
    assert lines[-1].endswith("of the deadline, check 59")


def test_given_a_terminal_then_colour_and_the_loop_redrawn_in_place_else_plain_text(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    history = polling(3).ended("ExecutionSucceeded")

    monkeypatch.delenv("NO_COLOR", raising=False)
    coloured = written(history, terminal=True)
    assert "\x1b[" in coloured, "no colour on a terminal"
    assert "check 2" in coloured, "the loop's progress is not drawn on a terminal"
    plain = written(history)
    assert "\x1b" not in plain
    assert "check 2" not in plain, "a pipe gets a line per poll"

    monkeypatch.setenv("NO_COLOR", "1")
    assert "\x1b" not in written(history, terminal=True), "NO_COLOR is not honoured"


def test_given_failures_and_the_end_then_their_lines_carry_the_event_times_in_order() -> None:
    history = (
        History()
        .started()
        .entered("Create Kafka topics")
        .lambda_attempt("KafkaUnreachableError", "no broker")
        .lambda_attempt("KafkaUnreachableError", "no broker")
        .exited("Create Kafka topics")
        .task("Summarize failure")
        .entered("Release failed", "Fail")
        .ended("ExecutionFailed")
    )

    times = clocks(history)

    assert times == sorted(times), times
    assert times[0] == "14:00:01Z", "the first line is not at the history's time"
    assert times[-1] != times[0]


@pytest.mark.parametrize(
    ("seconds", "bar"),
    [
        (0, "[....................]   0% of the deadline, check 3"),
        (25, "[#####...............]  25% of the deadline, check 3"),
        (100, "[####################] 100% of the deadline, check 3"),
        (250, "[####################] 100% of the deadline, check 3"),
        (-5, "[....................]   0% of the deadline, check 3"),
    ],
)
def test_given_a_moment_then_the_deadline_bar_shows_the_share_of_the_bound_used(seconds: int, bar: str) -> None:
    output = json.dumps(rollout_output(deadline_seconds=100, checks=3))

    assert deadline_bar(output, "rollout", at=T0 + timedelta(seconds=seconds)) == bar


def test_given_a_migration_started_at_then_the_bar_counts_from_it_not_from_the_execution_start() -> None:
    state = {
        "execution": {"startTime": EXECUTION_START},
        "migration": {"startedAt": "2026-11-25T14:00:50Z", "deadline": "2026-11-25T14:01:50Z", "checks": 1},
    }

    bar = deadline_bar(json.dumps(state), "migration", at=T0 + timedelta(seconds=80))

    assert bar == "[##########..........]  50% of the deadline, check 1"


def test_given_timestamps_without_an_offset_then_they_are_read_as_utc() -> None:
    state = {"execution": {"startTime": "2026-11-25T14:00:00"}, "rollout": {"deadline": "2026-11-25T14:00:10"}}

    assert deadline_bar(json.dumps(state), "rollout", at=T0 + timedelta(seconds=5)).startswith("[##########...")


@pytest.mark.parametrize(
    "output",
    [
        None,
        "",
        "not json",
        "[]",
        json.dumps({"rollout": {"done": True}}),
        json.dumps({"rollout": {"deadline": "soon"}, "execution": {"startTime": EXECUTION_START}}),
        json.dumps({"rollout": {"deadline": "2026-11-25T14:01:00Z"}}),
        json.dumps({"rollout": {"deadline": "2026-11-25T13:00:00Z"}, "execution": {"startTime": EXECUTION_START}}),
    ],
    ids=["none", "empty", "not-json", "not-an-object", "no-deadline", "bad-deadline", "no-start", "deadline-before"],
)
def test_given_an_output_without_a_usable_deadline_then_no_bar(output: str | None) -> None:
    assert deadline_bar(output, "rollout", at=T0) == ""


def test_given_a_lambda_error_payload_then_cause_message_is_its_error_message() -> None:
    payload = json.dumps({"errorType": "ImageNotFoundError", "errorMessage": "image tag 'x' not found", "trace": []})

    assert cause_message(payload) == "image tag 'x' not found"


@pytest.mark.parametrize(
    ("cause", "message"),
    [
        (None, ""),
        ("", ""),
        ("plain text from a Fail state", "plain text from a Fail state"),
        ('{"Error": "States.Timeout"}', '{"Error": "States.Timeout"}'),
        ('["a"]', '["a"]'),
        ('{"errorMessage": 42}', '{"errorMessage": 42}'),
    ],
)
def test_given_a_cause_that_is_no_lambda_payload_then_cause_message_returns_it_unchanged(
    cause: str | None, message: str
) -> None:
    assert cause_message(cause) == message


def caught_image_missing(summary: str, *, release_failed: bool) -> ExecutionOutcome:
    """A missing image caught into the failure path: Summarize failure published ``summary``; ``release_failed``,
    the Fail state ended the execution (else it stopped after the summary, at a later step)."""
    history = (
        History()
        .started()
        .entered("Check migration image")
        .lambda_attempt("ImageNotFoundError", "image tag 'x' not found")
        .exited("Check migration image")
        .entered("Check migration image failed", "Pass")
        .exited("Check migration image failed", {"failed": {"state": "Check migration image"}}, "Pass")
        .task("Summarize failure", {"record": {"summary": summary}})
    )
    if release_failed:
        history.entered("Release failed", "Fail")
    tracker = HistoryTracker()
    for event in history.events:
        list(tracker.feed(event))
    return ExecutionOutcome(
        execution_arn="arn:aws:states:us-east-1:123456789012:execution:m:e",
        status="FAILED",
        output=None,
        error="ImageNotFoundError",
        cause=json.dumps({"errorType": "ImageNotFoundError", "errorMessage": "image tag 'x' not found"}),
        visits=tracker.visits,
        transitions=tracker.transitions,
        lambda_invocations=tracker.lambda_invocations,
        state_outputs=dict(tracker.outputs),
    )


def test_given_a_failed_outcome_then_the_report_names_status_step_error_cause_and_summary() -> None:
    outcome = caught_image_missing("deployflow release of x FAILED at Check migration image", release_failed=False)

    report = outcome_report(outcome).splitlines()

    assert report == [
        "FAILED at Check migration image in 5.6s: 3 state transitions, 2 Lambda invocations",
        "execution: arn:aws:states:us-east-1:123456789012:execution:m:e",
        "attempts: 1 at Check migration image",
        "error: ImageNotFoundError",
        "cause: image tag 'x' not found",
        "",
        "deployflow release of x FAILED at Check migration image",
    ]


def test_given_the_workflow_failure_path_ran_to_release_failed_then_the_cause_is_printed_once_in_the_summary() -> None:
    summary = "deployflow release of x FAILED at Check migration image\nCause:      image tag 'x' not found"
    outcome = caught_image_missing(summary, release_failed=True)

    report = outcome_report(outcome)

    assert report.count("image tag 'x' not found") == 1, report
    assert "\nerror: ImageNotFoundError\n" in report, "the error stays in the headline lines"
    assert report.endswith(summary), report


def test_given_an_uncaught_failure_then_the_report_names_the_state_attempts_duration_and_the_redrive_command() -> None:
    history = (
        History()
        .started()
        .entered("Create Kafka topics")
        .lambda_attempt("KafkaUnreachableError", "no broker answered")
        .lambda_attempt("KafkaUnreachableError", "no broker answered")
        .lambda_attempt("KafkaUnreachableError", "no broker answered")
        .ended("ExecutionFailed", executionFailedEventDetails={"error": "KafkaUnreachableError"})
    )
    tracker = HistoryTracker()
    for event in history.events:
        list(tracker.feed(event))
    start = datetime(2026, 11, 25, 10, 0, 0, tzinfo=UTC)
    arn = "arn:aws:states:eu-west-1:123456789012:execution:deployflow-prod-release:r-1"
    outcome = ExecutionOutcome(
        execution_arn=arn,
        status="FAILED",
        output=None,
        error="KafkaUnreachableError",
        cause=json.dumps({"errorType": "KafkaUnreachableError", "errorMessage": "no broker answered"}),
        visits=tracker.visits,
        transitions=tracker.transitions,
        lambda_invocations=tracker.lambda_invocations,
        start_date=start,
        stop_date=start + timedelta(seconds=21.5),
    )

    report = outcome_report(outcome, aws_cli_options("eu-west-1", "prod", None)).splitlines()

    assert report[0].startswith("FAILED at Create Kafka topics in 21.5s:"), report
    assert "attempts: 3 at Create Kafka topics" in report
    assert "error: KafkaUnreachableError" in report
    assert "cause: no broker answered" in report
    assert report[-1] == (
        "next: fix the cause, then resume at this state: aws stepfunctions redrive-execution --execution-arn "
        f"{arn} --region eu-west-1 --profile prod"
    )


def _outcome(history: History, status: str, redrives: int) -> ExecutionOutcome:
    tracker = HistoryTracker()
    for event in history.events:
        list(tracker.feed(event))
    return ExecutionOutcome(
        execution_arn="arn:aws:states:eu-west-1:123456789012:execution:deployflow-prod-release:r-1",
        status=status,
        output=None,
        error=None if status == "SUCCEEDED" else "KafkaUnreachableError",
        cause=None,
        visits=tracker.visits,
        transitions=tracker.transitions,
        lambda_invocations=tracker.lambda_invocations,
        start_date=history.events[0]["timestamp"],
        stop_date=history.events[-1]["timestamp"],
        runs=tracker.runs,
        redrive_count=redrives,
    )


def test_given_a_redriven_execution_then_progress_shows_the_stop_the_redrive_and_the_rerun_state() -> None:
    lines = printed(kafka_outage_then_redrive())

    stop = lines.index("■ execution FAILED")
    assert lines[stop + 1] == "⤼ execution redriven (redrive 1): resumes where it stopped", lines
    assert lines[stop + 2] == "▶ Create Kafka topics (#2)", lines
    assert lines[-1] == "■ execution SUCCEEDED", lines
    assert sum(1 for line in lines if line.startswith("↻ Create Kafka topics: attempt")) == 3, lines


def test_given_a_redriven_execution_that_succeeded_then_the_report_gives_its_running_time_and_each_run() -> None:
    history = kafka_outage_then_redrive()
    outcome = _outcome(history, "SUCCEEDED", 1)
    wall = (history.events[-1]["timestamp"] - history.events[0]["timestamp"]).total_seconds()
    assert outcome.running_seconds is not None

    report = outcome_report(outcome).splitlines()

    assert report[0].startswith(f"SUCCEEDED in {outcome.running_seconds:.1f}s, redriven once: "), report
    assert outcome.running_seconds < wall - 29, "the 30 s before the redrive is not running time"
    assert report[2] == (
        "runs: first 14:00:00Z-14:00:04Z FAILED at Create Kafka topics (KafkaUnreachableError); "
        "redrive 1 14:00:34Z-14:00:39Z SUCCEEDED"
    ), report
    assert not any(line.startswith("next:") for line in report), report


def test_given_a_redrive_that_failed_again_then_the_report_names_the_redrives_attempts_and_the_command() -> None:
    outcome = _outcome(kafka_outage_then_redrive(fails_again=True), "FAILED", 1)

    report = outcome_report(outcome, aws_cli_options("eu-west-1", None, None)).splitlines()

    assert report[0].startswith("FAILED at Create Kafka topics in "), report
    assert ", redriven once: " in report[0], report
    assert report[2].endswith("; redrive 1 14:00:34Z-14:00:36Z FAILED at Create Kafka topics (KafkaUnreachableError)")
    assert "attempts: 2 at Create Kafka topics" in report, report
    assert report[-1].startswith("next: fix the cause, then resume at this state: aws stepfunctions redrive-execution")


def test_given_a_command_the_caller_ran_then_it_is_one_line_with_a_dollar_at_its_time() -> None:
    out = io.StringIO()
    command = "aws stepfunctions redrive-execution --execution-arn arn:aws:states:us-east-1:1:execution:m:e"

    ProgressPrinter(out, terminal=False)(ProgressEvent("command", command=command, at=T0))

    assert out.getvalue() == f"  14:00:00Z  $ {command}\n"
