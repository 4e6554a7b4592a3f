"""progress.HistoryTracker and ExecutionOutcome from synthetic histories: visits, retries, outputs, the failed step."""

from __future__ import annotations

import json
from pathlib import Path

from deployflow.progress import ExecutionOutcome, HistoryTracker, ProgressEvent
from tests.cli.history import History, kafka_outage_then_redrive

ASL_PATH = Path(__file__).resolve().parents[2] / "statemachine" / "deploy.asl.json"


def feed_all(history: History) -> tuple[HistoryTracker, list[ProgressEvent]]:
    tracker = HistoryTracker()
    seen = [progress for event in history.events for progress in tracker.feed(event)]
    return tracker, seen


def outcome_from(tracker: HistoryTracker, status: str = "FAILED") -> ExecutionOutcome:
    return ExecutionOutcome(
        execution_arn="arn:aws:states:us-east-1:123456789012:execution:m:e",
        status=status,
        output=None,
        error=None,
        cause=None,
        visits=tracker.visits,
        transitions=tracker.transitions,
        lambda_invocations=tracker.lambda_invocations,
        state_outputs=dict(tracker.outputs),
        runs=list(tracker.runs),
    )


def test_given_a_lambda_task_that_failed_twice_then_succeeded_then_two_retries_are_counted() -> None:
    history = (
        History()
        .started()
        .entered("Create Kafka topics")
        .lambda_attempt("KafkaUnreachableError", "no broker at 127.0.0.1:9092")
        .lambda_attempt("KafkaUnreachableError", "no broker at 127.0.0.1:9092")
        .lambda_attempt()
        .exited("Create Kafka topics", {"topics": {"dryRun": False, "topics": []}})
    )

    tracker, seen = feed_all(history)

    [visit] = tracker.visits
    assert (visit.attempts, visit.retries) == (3, 2)
    assert [error for error, _ in visit.errors] == ["KafkaUnreachableError", "KafkaUnreachableError"]
    assert not visit.failed, "a state that succeeded on its last attempt is not failed"
    assert tracker.lambda_invocations == 3
    assert [p.kind for p in seen] == ["entered", "failed", "retry", "failed", "retry", "exited"]
    retries = [p for p in seen if p.kind == "retry"]
    assert all(p.error == "KafkaUnreachableError" for p in retries), retries
    assert "no broker at 127.0.0.1:9092" in (retries[0].cause or ""), retries[0].cause


def test_given_a_service_task_then_it_counts_attempts_but_not_lambda_invocations() -> None:
    history = (
        History()
        .started()
        .entered("Notify success")
        .task_attempt("sns", error="States.TaskFailed", cause="throttled")
        .task_attempt("sns")
        .exited("Notify success")
    )

    tracker, _ = feed_all(history)

    assert tracker.visits[0].attempts == 2
    assert tracker.lambda_invocations == 0


def test_given_the_same_events_read_twice_then_each_is_counted_once() -> None:
    """follow() re-reads the whole history on every poll: the tracker must ignore what it has seen."""
    history = History().started().task("Validate release request").entered("Check migration image")
    tracker = HistoryTracker()

    first = [p.kind for e in history.events for p in tracker.feed(e)]
    second = [p.kind for e in history.events for p in tracker.feed(e)]

    assert first == ["entered", "exited", "entered"]
    assert second == []
    assert tracker.transitions == 2
    assert [v.name for v in tracker.visits] == ["Validate release request", "Check migration image"]


def test_given_states_exited_with_output_then_the_outputs_are_kept_per_state_and_per_visit() -> None:
    first = {"rollout": {"done": False, "checks": 1}}
    last = {"rollout": {"done": True, "checks": 2}}
    history = (
        History()
        .started()
        .task("Check services", first)
        .entered("Wait for services", "Wait")
        .exited("Wait for services", state_type="Wait")
        .task("Check services", last)
    )

    tracker, _ = feed_all(history)

    checks = [v for v in tracker.visits if v.name == "Check services"]
    assert [v.visit_number for v in checks] == [1, 2]
    assert [json.loads(v.output or "null") for v in checks] == [first, last]
    assert json.loads(tracker.outputs["Check services"]) == last, "the latest output of a state is the one kept"
    assert checks[0].duration_seconds is not None
    assert checks[0].duration_seconds > 0


def test_given_a_caught_failure_then_failed_state_is_the_step_not_the_failure_path() -> None:
    history = (
        History()
        .started()
        .task("Validate release request")
        .entered("Check migration image")
        .lambda_attempt("ImageNotFoundError", "image tag '2026-11-25.404' not found")
        .exited("Check migration image")
        .entered("Check migration image failed", "Pass")
        .exited("Check migration image failed", {"failed": {"state": "Check migration image"}}, "Pass")
        .task("Summarize failure", {"record": {"summary": "deployflow release of 2026-11-25.404 FAILED"}})
        .entered("Notify failure")
        .task_attempt("sns", error="States.TaskFailed", cause="topic gone")
        .exited("Notify failure")
        .entered("Release failed", "Fail")
        .ended("ExecutionFailed", executionFailedEventDetails={"error": "ImageNotFoundError", "cause": "..."})
    )

    tracker, seen = feed_all(history)
    outcome = outcome_from(tracker)

    assert outcome.failed_state == "Check migration image", "a failed notification is not the release's failure"
    assert outcome.summary == "deployflow release of 2026-11-25.404 FAILED"
    assert seen[-1].kind == "finished"
    assert seen[-1].status == "FAILED"
    visit = next(v for v in tracker.visits if v.name == "Check migration image")
    assert visit.failed


def test_given_a_retried_then_good_step_before_the_failing_one_then_failed_state_is_the_failing_one() -> None:
    history = (
        History()
        .started()
        .entered("Create Kafka topics")
        .lambda_attempt("KafkaUnreachableError", "no broker")
        .lambda_attempt()
        .exited("Create Kafka topics")
        .task("Restart services")
        .entered("Check services")
        .lambda_attempt("ServiceDeploymentFailedError", "alert-matcher rolled back")
        .exited("Check services")
        .entered("Check services failed", "Pass")
        .exited("Check services failed", {"failed": {"state": "Check services"}}, "Pass")
        .task("Summarize failure")
    )

    tracker, _ = feed_all(history)

    assert outcome_from(tracker).failed_state == "Check services"


def test_given_an_uncaught_failure_then_failed_state_is_the_task_that_failed() -> None:
    history = (
        History()
        .started()
        .entered("Verify schema")
        .lambda_attempt("SchemaMismatchError", "notifications.last_error missing")
        .ended("ExecutionFailed", executionFailedEventDetails={"error": "SchemaMismatchError"})
    )

    tracker, _ = feed_all(history)

    assert outcome_from(tracker).failed_state == "Verify schema"
    assert tracker.visits[0].exited_at is None


def test_given_a_succeeded_execution_then_there_is_no_failed_state() -> None:
    tracker, _ = feed_all(History().started().task("Validate release request").ended("ExecutionSucceeded"))

    assert outcome_from(tracker, "SUCCEEDED").failed_state is None


def test_given_each_end_event_then_finished_carries_describe_executions_status() -> None:
    for event_type, status in [
        ("ExecutionSucceeded", "SUCCEEDED"),
        ("ExecutionFailed", "FAILED"),
        ("ExecutionTimedOut", "TIMED_OUT"),
        ("ExecutionAborted", "ABORTED"),
    ]:
        _, seen = feed_all(History().started().ended(event_type))
        assert [(p.kind, p.status) for p in seen] == [("finished", status)], event_type


def test_given_a_redriven_execution_then_redrive_is_not_an_end() -> None:
    _, seen = feed_all(History().started().ended("ExecutionFailed").ended("ExecutionRedriven"))

    assert [p.status for p in seen if p.kind == "finished"] == ["FAILED"]


def test_given_the_asl_then_every_catch_leads_to_a_pass_that_names_the_state_the_tracker_reads() -> None:
    states = json.loads(ASL_PATH.read_text(encoding="utf-8"))["States"]
    for name, state in states.items():
        for catcher in state.get("Catch", []):
            if catcher["Next"] == "Summarize failure" or "failure" not in catcher["ResultPath"]:
                continue
            named = states[catcher["Next"]]
            assert named["Type"] == "Pass", f"{name!r}: its Catch must lead to the Pass that names it"
            assert named["Result"]["state"] == name, f"{catcher['Next']!r} names {named['Result']!r}, not {name!r}"
            assert named["ResultPath"] == "$.failed", "the tracker reads failed.state from the Pass's output"


def test_given_an_uncaught_failure_then_the_outcome_can_be_redriven_and_a_caught_one_cannot() -> None:
    uncaught, _ = feed_all(
        History()
        .started()
        .entered("Create Kafka topics")
        .lambda_attempt("KafkaUnreachableError", "no broker")
        .ended("ExecutionFailed", executionFailedEventDetails={"error": "KafkaUnreachableError"})
    )
    caught, _ = feed_all(
        History()
        .started()
        .entered("Verify schema")
        .lambda_attempt("SchemaMismatchError", "x")
        .exited("Verify schema")
        .entered("Verify schema failed", "Pass")
        .exited("Verify schema failed", {"failed": {"state": "Verify schema"}}, "Pass")
        .ended("ExecutionFailed")
    )

    assert outcome_from(uncaught).redrivable
    assert outcome_from(uncaught).failed_state == "Create Kafka topics"
    assert not outcome_from(caught).redrivable
    assert outcome_from(caught).failed_state == "Verify schema"


def test_given_a_redriven_execution_then_the_stopped_visit_ends_at_the_stop_and_the_redrive_is_a_new_visit() -> None:
    history = kafka_outage_then_redrive()

    tracker, seen = feed_all(history)
    outcome = outcome_from(tracker, "SUCCEEDED")

    first, again = [v for v in tracker.visits if v.name == "Create Kafka topics"]
    failed_at = next(e["timestamp"] for e in history.events if e["type"] == "ExecutionFailed")
    redriven_at = next(e["timestamp"] for e in history.events if e["type"] == "ExecutionRedriven")
    assert (first.attempts, first.failed, first.exited_at, first.stopped_at) == (4, True, None, failed_at)
    assert first.duration_seconds == (failed_at - first.entered_at).total_seconds()
    assert (again.visit_number, again.attempts, again.failed) == (2, 1, False)
    assert again.entered_at > redriven_at
    assert outcome.path == ["Verify schema", "Create Kafka topics", "Create Kafka topics", "Restart services"]
    assert outcome.failed_state is None
    assert [(r.redrive, r.status, r.stopped_in, r.error) for r in tracker.runs] == [
        (0, "FAILED", "Create Kafka topics", "KafkaUnreachableError"),
        (1, "SUCCEEDED", None, None),
    ]
    assert outcome.running_seconds == sum(r.seconds or 0 for r in tracker.runs)
    assert outcome.running_seconds < (history.events[-1]["timestamp"] - history.events[0]["timestamp"]).total_seconds()
    assert [(p.kind, p.status, p.redrive) for p in seen if p.kind in {"finished", "redriven"}] == [
        ("finished", "FAILED", None),
        ("redriven", None, 1),
        ("finished", "SUCCEEDED", None),
    ]


def test_given_a_redrive_that_fails_again_then_the_failed_state_and_attempts_are_the_redrives() -> None:
    tracker, _ = feed_all(kafka_outage_then_redrive(fails_again=True))
    outcome = outcome_from(tracker, "FAILED")

    assert outcome.failed_state == "Create Kafka topics"
    assert outcome.failed_visit is not None
    assert (outcome.failed_visit.visit_number, outcome.failed_visit.attempts) == (2, 2)
    assert outcome.redrivable
    assert [r.status for r in tracker.runs] == ["FAILED", "FAILED"]


def test_given_a_redrive_that_reschedules_the_task_without_entering_the_state_then_its_visit_goes_on() -> None:
    history = History().started().entered("Create Kafka topics").lambda_attempt("KafkaUnreachableError")
    history.ended("ExecutionFailed").ended("ExecutionRedriven", executionRedrivenEventDetails={"redriveCount": 1})
    history.lambda_attempt().exited("Create Kafka topics").ended("ExecutionSucceeded")

    tracker, _ = feed_all(history)

    [visit] = tracker.visits
    assert (visit.attempts, visit.failed, visit.stopped_at) == (2, False, None)
    assert visit.exited_at is not None
