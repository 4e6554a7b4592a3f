"""Build deployment record and Summarize failure: records and summaries from realistic states, partial ones included.

The states are the events/record*.json and events/summarize_failure*.json files (what ``sam local invoke -e`` would
use): a completed release, a dry run, a migration that failed in its wait loop, a request rejected by the first step.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from release_steps import errors, record, summarize_failure
from release_steps.models import RecordResult, RecordStepInput, SummarizeFailureInput

from tests.functional.release_world import load_event

FINISHED = datetime(2026, 11, 23, 10, 6, 30, 250000, tzinfo=UTC)
RECORD_EVENTS = ["record", "record-dry-run"]
SUMMARIZE_EVENTS = ["summarize_failure", "summarize_failure-invalid-input"]


def _handle(event: Any, context: Any) -> RecordResult:
    """Call the Lambda handler as Step Functions would and read its JSON answer back."""
    answer = record.lambda_handler(event, context)
    json.dumps(answer)  # Step Functions passes JSON on: the answer must serialise as is
    return RecordResult.load(answer)


def _summarize(event: Any, context: Any) -> RecordResult:
    """Call Summarize failure's handler as Step Functions would and read its JSON answer back."""
    answer = summarize_failure.lambda_handler(event, context)
    json.dumps(answer)  # Step Functions passes JSON on: the answer must serialise as is
    return RecordResult.load(answer)


def _assert_subject_is_sns_safe(subject: str) -> None:
    assert len(subject) < 100, f"SNS refuses subjects of 100 characters or more: {len(subject)}: {subject!r}"
    assert subject.isascii(), f"subject not ASCII: {subject!r}"
    assert subject.isprintable(), f"subject not one printable line: {subject!r}"


def _failure(error: str, cause: str | None) -> dict[str, Any]:
    return {"Error": error, "Cause": cause}


def _lambda_cause(error_type: str, message: str) -> str:
    return json.dumps({"errorMessage": message, "errorType": error_type, "requestId": "r-1", "stackTrace": []})


# --- success and dry run --------------------------------------------------------------------------------------


def test_given_a_completed_release_when_recorded_then_the_summary_tells_the_whole_release(
    release_env: pytest.MonkeyPatch, release_context: Any
) -> None:
    state = load_event("record")

    result = _handle(state, release_context)

    assert result.record.outcome == "succeeded"
    assert result.record.failed_step is None
    assert result.record.error is None
    assert result.record.image_digest == state["image"]["digest"]
    assert result.record.execution_arn == state["execution"]["id"]
    assert result.record.migration is not None
    assert result.record.migration.exit_code == 0
    assert [s.deployment_id for s in result.record.services] == [
        s["deploymentId"] for s in state["rollout"]["services"]
    ]
    assert result.subject == "deployflow-prod: release 2026-11-23.4 succeeded"
    _assert_subject_is_sns_safe(result.subject)
    summary = result.summary
    for expected in (
        "succeeded",
        state["execution"]["name"],
        state["image"]["digest"],
        "stopped after 42s: exit code 0",
        "Schema:     match",
        "created notifications.ready",
        "grown rule.changed (3 -> 9 partitions)",
        "unchanged alerts.new, alerts.matched",
        "alert-ingest: COMPLETED",
        "ecs-svc/4628916521486423718",
        "rule-matcher: COMPLETED",
        "notifier: COMPLETED",
        "started 2026-11-23T10:00:00.000Z",
    ):
        assert expected in summary, f"summary lacks {expected!r}:\n{summary}"
    assert "FAILED" not in summary
    assert "Next:" not in summary


def test_given_a_completed_release_when_recorded_then_the_timings_are_measured_from_the_execution_start() -> None:
    state, unreadable = record.read_state(load_event("record"))

    result = record.build_record(state, finished_at=FINISHED, unreadable=unreadable)

    assert unreadable == []
    assert result.record.started_at == "2026-11-23T10:00:00.000Z"
    assert result.record.finished_at == "2026-11-23T10:06:30.250Z"
    assert result.record.duration_seconds == pytest.approx(390.25)
    assert "6m 30s in all; migration task 42s" in result.summary


def test_given_a_dry_run_when_recorded_then_the_outcome_is_dry_run_and_the_summary_says_nothing_changed(
    release_env: pytest.MonkeyPatch, release_context: Any
) -> None:
    state = load_event("record-dry-run")

    result = _handle(state, release_context)

    assert result.record.outcome == "dry-run"
    assert result.record.dry_run is True
    assert result.subject == "deployflow-prod: dry run of 2026-11-23.4 passed"
    assert "nothing was changed" in result.summary
    assert "skipped (dry run)" in result.summary
    assert "would-change; pending migrations 0003_notifications_dedup_index.sql" in result.summary
    assert "Topics:     would have: created notifications.ready" in result.summary
    assert "would restart: alert-ingest" in result.summary
    assert "succeeded" not in result.summary


# --- failures -------------------------------------------------------------------------------------------------


def test_given_a_failed_migration_when_summarized_then_the_step_error_cause_and_next_step_are_named(
    release_env: pytest.MonkeyPatch, release_context: Any
) -> None:
    event = load_event("summarize_failure")

    result = _summarize(event, release_context)

    assert result.record.outcome == "failed"
    assert result.record.failed_step == "Check migration task"
    assert result.record.error == "MigrationFailedError"
    assert result.record.cause is not None
    assert result.record.cause.startswith("migration task arn:aws:ecs:")
    assert (
        result.subject == "deployflow-prod: release 2026-11-23.4 FAILED: MigrationFailedError at Check migration task"
    )
    _assert_subject_is_sns_safe(result.subject)
    lines = result.summary.splitlines()
    assert lines[0] == "deployflow release of 2026-11-23.4 FAILED at Check migration task"
    assert lines[1] == "Error:      MigrationFailedError"
    assert lines[2].startswith("Cause:      migration task "), lines[2]
    assert lines[2].endswith("is duplicated."), lines[2]
    assert "[Check migration task]" not in lines[2], "the step prefix belongs in the headline, not the cause"
    assert lines[3] == f"Next:       {record.NEXT_STEPS['MigrationFailedError']}"
    assert "Image:      alerting-platform-prod-migration:2026-11-23.4 @ sha256:" in result.summary
    assert "Schema:     not reached" in result.summary
    assert "Services:   not reached" in result.summary


def test_given_a_rejected_request_when_summarized_then_the_raw_input_and_the_field_are_shown(
    release_env: pytest.MonkeyPatch, release_context: Any
) -> None:
    event = load_event("summarize_failure-invalid-input")

    result = _summarize(event, release_context)

    assert result.record.failed_step == "Validate release request"
    assert result.record.error == "InvalidInputError"
    assert result.record.image_tag == "latest tag!"
    assert result.record.execution_arn == event["context"]["id"]
    assert "imageTag: expected a string matching regex" in result.summary
    assert 'as received (not validated): {"dryRun": false, "imageTag": "latest tag!"' in result.summary
    assert f"Execution:  {event['context']['name']}" in result.summary
    assert record.NEXT_STEPS["InvalidInputError"] in result.summary
    _assert_subject_is_sns_safe(result.subject)


@pytest.mark.parametrize(
    "failed_state", ["Validate release request", "Check migration image", "Verify schema", "Check services"]
)
def test_given_the_failed_state_named_by_the_asl_when_summarized_then_the_summary_names_it_and_nothing_is_guessed(
    failed_state: str,
) -> None:
    event = load_event("record")
    event["failure"] = _failure("States.Timeout", "Task timed out after 40.00 seconds")
    state, _ = record.read_state(event)

    result = record.build_record(state, finished_at=FINISHED, failed_state=failed_state)

    assert result.record.failed_step == failed_state
    assert result.summary.splitlines()[0].endswith(f"FAILED at {failed_state}")
    assert "Cause:      Task timed out after 40.00 seconds" in result.summary
    assert record.NEXT_STEPS["States.Timeout"] in result.summary


def test_given_a_message_in_brackets_when_summarized_then_it_is_kept_in_the_cause_as_written() -> None:
    event = load_event("record")
    event["failure"] = _failure("ServiceNotFoundError", _lambda_cause("ServiceNotFoundError", "[ecs] service x gone"))
    state, _ = record.read_state(event)

    result = record.build_record(state, finished_at=FINISHED, failed_state="Restart services")

    assert result.record.failed_step == "Restart services"
    assert result.record.cause == "[ecs] service x gone"


@pytest.mark.parametrize(
    ("error", "hint"),
    [
        ("KeyError", record.GENERIC_HINT),
        ("Lambda.Unknown", record.UNEXPECTED_HINT),
        ("Sandbox.Timedout", record.UNEXPECTED_HINT),
        ("Runtime.ImportModuleError", record.UNEXPECTED_HINT),
        ("States.TaskFailed", record.UNEXPECTED_HINT),
    ],
)
def test_given_an_error_outside_the_contract_when_summarized_then_the_hint_points_at_the_logs(
    error: str, hint: str
) -> None:
    event = load_event("summarize_failure")["state"]
    event["failure"] = _failure(error, _lambda_cause(error, "'taskArn'"))
    state, _ = record.read_state(event)

    result = record.build_record(state, finished_at=FINISHED, failed_state="Check migration task")

    assert result.record.error == error
    assert result.record.failed_step == "Check migration task"
    assert f"Next:       {hint}" in result.summary


def test_given_every_error_of_the_contract_then_the_summary_has_a_specific_next_step() -> None:
    names = [*errors.transient_error_names(), *errors.terminal_error_names()]
    assert len(names) >= 20, f"errors.py lists only {names}"
    generic = {record.GENERIC_HINT, record.UNEXPECTED_HINT}
    without = [name for name in names if record.next_step_hint(name) in generic]
    assert not without, f"errors without their own next step in record.NEXT_STEPS: {without}"
    stale = set(record.NEXT_STEPS) - set(names) - {"States.Timeout"}
    assert not stale, f"record.NEXT_STEPS names errors errors.py does not have: {sorted(stale)}"


def test_given_a_very_long_cause_when_summarized_then_the_summary_clips_it_and_keeps_its_start() -> None:
    event = load_event("summarize_failure")["state"]
    message = "schema differs: " + "; ".join(f"column t{i}.c{i} missing" for i in range(800))
    event["failure"] = _failure("SchemaMismatchError", _lambda_cause("SchemaMismatchError", message))
    state, _ = record.read_state(event)

    result = record.build_record(state, finished_at=FINISHED, failed_state="Verify schema")

    cause_line = next(line for line in result.summary.splitlines() if line.startswith("Cause:"))
    assert cause_line.startswith("Cause:      schema differs: column t0.c0 missing")
    assert cause_line.endswith("...(clipped)")
    assert len(cause_line) <= 12 + record.SUMMARY_CAUSE_MAX
    assert result.record.cause is not None
    assert len(result.record.cause) <= record.CAUSE_MAX


@pytest.mark.parametrize(
    ("tag", "machine"),
    [
        ("A" * 128, "deployflow-prod-release"),
        ("2026-11-23.4", "x" * 80),
        ("café-ü-タグ", "deployflow-dev-release"),
    ],
)
def test_given_long_or_non_ascii_names_when_summarized_then_the_subject_stays_one_ascii_line(
    tag: str, machine: str
) -> None:
    event = load_event("summarize_failure")["state"]
    event["request"]["imageTag"] = tag
    event["image"]["tag"] = tag
    event["execution"]["stateMachineArn"] = f"arn:aws:states:us-east-1:123456789012:stateMachine:{machine}"
    state, _ = record.read_state(event)

    result = record.build_record(state, finished_at=FINISHED, failed_state="Check migration task")

    _assert_subject_is_sns_safe(result.subject)
    assert result.subject.startswith(machine.removesuffix("-release")[:60])


# --- the failure path never raises ----------------------------------------------------------------------------


PARTIAL_STATES: dict[str, Any] = {
    "empty state": {},
    "failure only": {"failure": _failure("States.Timeout", None)},
    "failure without Error": {"failure": {"Cause": "something"}},
    "failure as a string": {"failure": "boom"},
    "cause not a string": {"failure": {"Error": "MigrationFailedError", "Cause": {"errorMessage": 17}}},
    "cause not JSON": {"failure": _failure("MigrationFailedError", "{not json")},
    "cause JSON without message": {"failure": _failure("Lambda.Unknown", '{"errorType": "X"}')},
    "image is not an object": {"image": "oops", "failure": _failure("ImageNotFoundError", "no such tag")},
    "unknown task status": {"migration": {"status": "EXPLODED"}, "failure": _failure("MigrationFailedError", "x")},
    "services malformed": {"rollout": {"services": [{"nope": 1}]}, "failure": _failure("States.Runtime", "x")},
    "start time garbage": {"execution": {"id": "e", "name": "n", "startTime": "yesterday", "stateMachineArn": ""}},
    "request wrong types": {"request": {"imageTag": 5, "services": "all"}, "failure": _failure("X", "y")},
    "raw input not an object": {"rawInput": ["imageTag"], "failure": _failure("InvalidInputError", "x")},
    "raw input null": {"rawInput": None, "failure": _failure("InvalidInputError", "x")},
    "not an object": ["imageTag", "2026-11-23.4"],
    "null": None,
}


@pytest.mark.parametrize("event", list(PARTIAL_STATES.values()), ids=list(PARTIAL_STATES))
def test_given_a_partial_or_malformed_state_when_summarized_then_it_never_raises(event: Any) -> None:
    state, unreadable = record.read_state(event)
    has_failure = isinstance(event, dict) and "failure" in event
    result = record.build_record(
        state, finished_at=FINISHED, unreadable=unreadable, failed_state="Check services" if has_failure else None
    )

    _assert_subject_is_sns_safe(result.subject)
    assert result.summary.strip(), "the summary is empty"
    assert (result.record.outcome == "failed") is has_failure
    if has_failure:
        assert result.record.failed_step == "Check services"
        assert result.record.error, "the error name is lost"
        assert "FAILED at" in result.summary.splitlines()[0]


def test_given_a_section_that_does_not_parse_when_summarized_then_it_is_named_and_the_rest_is_kept() -> None:
    event = load_event("summarize_failure")["state"]
    event["image"] = {"repository": "r"}

    state, unreadable = record.read_state(event)
    result = record.build_record(
        state, finished_at=FINISHED, unreadable=unreadable, failed_state="Check migration task"
    )

    assert state.image is None
    assert state.migration is not None
    assert len(unreadable) == 1
    assert "state section 'image'" in unreadable[0]
    assert "Unreadable: invalid state section 'image'" in result.summary
    assert result.record.error == "MigrationFailedError"


@pytest.mark.parametrize("name", RECORD_EVENTS)
def test_given_the_events_files_then_each_is_a_complete_record_input(name: str) -> None:
    event = load_event(name)

    state, unreadable = record.read_state(event)

    assert unreadable == [], f"events/{name}.json has unreadable sections: {unreadable}"
    strict = RecordStepInput.load(event)
    assert strict.failure == state.failure
    assert strict.image == state.image


@pytest.mark.parametrize("name", SUMMARIZE_EVENTS)
def test_given_the_summarize_events_files_then_each_is_a_complete_summarize_input(name: str) -> None:
    event = load_event(name)

    given = SummarizeFailureInput.load(event)
    _, unreadable = record.read_state(given.state)

    assert unreadable == [], f"events/{name}.json has unreadable sections: {unreadable}"
    assert given.state["failed"] == given.failed.to_json()


@pytest.mark.parametrize("error", errors.terminal_error_names())
def test_given_a_terminal_error_then_its_hint_says_start_a_new_release_never_redrive(error: str) -> None:
    # The state machine catches terminal errors into Release failed: a redrive would re-enter that Fail state.
    hint = record.next_step_hint(error)
    assert "redrive" not in hint.lower(), f"{error}: a caught error cannot be redriven, yet the hint says: {hint}"
    assert "start a new release" in hint, f"{error}: the hint does not say to start a new release: {hint}"


@pytest.mark.parametrize("error", [*errors.transient_error_names(), "States.Timeout", "Sandbox.Timedout", "KeyError"])
def test_given_an_error_the_state_machine_does_not_catch_then_its_hint_names_the_redrive(error: str) -> None:
    # Not caught: the execution fails at the step that raised it, and a redrive resumes there.
    hint = record.next_step_hint(error)
    assert "redrive" in hint, f"{error}: the execution stops at its step, but the hint does not mention redrive: {hint}"
    assert "new release" in hint, (
        f"{error}: the hint must still say what to do if the execution ended in Release failed: {hint}"
    )


def test_given_an_input_that_forges_its_identity_when_summarized_then_the_context_object_names_the_execution(
    release_env: pytest.MonkeyPatch, release_context: Any
) -> None:
    # GIVEN an execution input that carries its own "execution" and "request" sections, refused by the first step
    arn = "arn:aws:states:us-east-1:123456789012:execution:deployflow-prod-release:release-42"
    forged = {
        "imageTag": "bad tag!",
        "execution": {
            "id": "arn:forged",
            "name": "forged",
            "startTime": "2020-01-01T00:00:00Z",
            "stateMachineArn": "x",
        },
        "request": {"imageTag": "forged-tag", "services": ["x"], "dryRun": False},
    }
    failure = {
        "Error": "InvalidInputError",
        "Cause": json.dumps({"errorType": "InvalidInputError", "errorMessage": "invalid imageTag"}),
    }
    event = {
        "state": {"rawInput": forged, "failure": failure},
        "failed": {"state": "Validate release request", "resultPath": "$"},
        "failure": failure,
        "context": {
            "id": arn,
            "name": "release-42",
            "startTime": "2026-11-25T10:00:00Z",
            "stateMachineArn": "arn:aws:states:us-east-1:123456789012:stateMachine:deployflow-prod-release",
        },
    }

    # WHEN Summarize failure summarizes it
    result = _summarize(event, release_context)

    # THEN the record and the summary name the execution of the context object, never the input's
    assert result.record.execution_arn == arn, result.record
    assert "Execution:  release-42 (" in result.summary, result.summary
    assert "forged-tag" not in result.summary.split("Request:")[0], result.summary
    assert "arn:forged" not in result.summary.replace('"arn:forged"', ""), result.summary
    assert result.record.failed_step == "Validate release request", result.record


def test_given_a_200_kb_image_tag_when_summarized_then_every_input_string_is_clipped(
    release_env: pytest.MonkeyPatch, release_context: Any
) -> None:
    failure = {"Error": "InvalidInputError", "Cause": json.dumps({"errorMessage": "invalid imageTag"})}
    event = {
        "state": {"rawInput": {"imageTag": "t" * 200_000}, "failure": failure},
        "failed": {"state": "Validate release request", "resultPath": "$"},
        "failure": failure,
        "context": load_event("summarize_failure")["context"],
    }

    result = _summarize(event, release_context)

    assert len(result.summary) < 6000, len(result.summary)
    assert result.record.image_tag is not None
    assert len(result.record.image_tag) <= 140
    _assert_subject_is_sns_safe(result.subject)
