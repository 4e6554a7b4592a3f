"""template.yaml gives the one-release lock back when an execution is aborted or times out: ReleaseLockOnEndRule
matches exactly those status changes of the release state machine and invokes its own function, which alone may.

The pattern is checked with moto's EventBridge matcher against events shaped like AWS's "Step Functions Execution
Status Change" examples (as tests/static/test_notifications.py does for the notification rule).
"""

from __future__ import annotations

import json
from typing import Any, cast

import pytest
from moto.events.models import EventPattern

from tests.static import documents as docs

RULE = "ReleaseLockOnEndRule"
FUNCTION = "ReleaseLockOnEndFunction"
MACHINE_ARN = "arn:aws:states:us-east-1:123456789012:stateMachine:deployflow-prod-release"
EXECUTION_ARN = "arn:aws:states:us-east-1:123456789012:execution:deployflow-prod-release:release-1"


def _matcher() -> EventPattern:
    pattern = docs.resources("AWS::Events::Rule")[RULE]["Properties"]["EventPattern"]
    assert pattern["detail"]["stateMachineArn"] == [{"Ref": "ReleaseStateMachine"}]
    pattern["detail"]["stateMachineArn"] = [MACHINE_ARN]
    return EventPattern.load(json.dumps(pattern))


def _event(status: str, machine: str = MACHINE_ARN, error: Any = None) -> dict[str, Any]:
    detail = {
        "executionArn": EXECUTION_ARN,
        "stateMachineArn": machine,
        "name": "release-1",
        "status": status,
        "startDate": 1551225146847,
        "stopDate": None if status == "RUNNING" else 1551225151881,
        "input": "{}",
        "output": None,
        "error": error,
        "cause": None,
    }
    return docs.status_change_event(detail, "2026-11-23T10:22:04Z")


@pytest.mark.parametrize("status", ["ABORTED", "TIMED_OUT"])
def test_given_an_execution_that_was_aborted_or_timed_out_then_the_rule_gives_its_lock_back(status: str) -> None:
    assert _matcher().matches_event(cast(Any, _event(status)))


@pytest.mark.parametrize("status", ["RUNNING", "SUCCEEDED", "FAILED", "PENDING_REDRIVE"])
def test_given_any_other_status_then_the_rule_leaves_the_lock_alone(status: str) -> None:
    # FAILED included: failed at a step keeps the lock for its redrive; failed through the failure path gave it back.
    assert not _matcher().matches_event(cast(Any, _event(status, error="KafkaUnreachableError")))


def test_given_another_state_machine_s_abort_then_the_rule_leaves_the_lock_alone() -> None:
    other = "arn:aws:states:us-east-1:123456789012:stateMachine:someone-elses-workflow"
    assert not _matcher().matches_event(cast(Any, _event("ABORTED", machine=other)))


def test_given_the_rule_then_it_invokes_its_own_function_which_only_it_may_invoke() -> None:
    rule = docs.resources("AWS::Events::Rule")[RULE]["Properties"]
    assert rule["State"] == "ENABLED"
    [target] = rule["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": [FUNCTION, "Arn"]}
    assert "InputTransformer" not in target, "the handler reads the event itself"
    [permission] = [
        p["Properties"]
        for p in docs.resources("AWS::Lambda::Permission").values()
        if p["Properties"]["FunctionName"] == {"Fn::GetAtt": [FUNCTION, "Arn"]}
    ]
    assert permission["Principal"] == "events.amazonaws.com"
    assert permission["SourceArn"] == {"Fn::GetAtt": [RULE, "Arn"]}
    assert docs.handler_module(docs.functions()[FUNCTION]) == "release_steps.lock_on_end"
