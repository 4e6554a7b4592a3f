"""Executions of the real ASL that stop at a state without the workflow's own failure path, and the notification
ReleaseStoppedAtStepRule's target publishes for them: an abort (stop-execution) and the execution's timeout.

The kafka-down and step-timeout tests (test_scenarios.py) cover a transient error after its retries and a function
timeout. moto emits no status-change event: the local stack builds it from DescribeExecution as AWS documents it and
hands it to every rule whose pattern matches (deployflow/local/status_events.py), so the deployed rule's pattern
decides, and the function runs in the local Lambda runtime, reading the history from moto.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from deployflow.local.scenarios import overrides
from deployflow.local.stack import DEFAULT_TAG, LocalStack
from deployflow.progress import follow
from tests.workflow.support import Inbox, assert_stopped_notification, describe

pytestmark = pytest.mark.workflow

ROLLOUT_LOOP = ("Check services", "Wait for services", "Services rolled out?")


def _wait_until_entered(sfn: Any, arn: str, state: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        events = sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]
        if any(e.get("stateEnteredEventDetails", {}).get("name") == state for e in events):
            return
        time.sleep(0.05)
    raise AssertionError(f"{arn} did not enter {state!r} within {timeout:.0f}s")


def test_given_a_release_stopped_by_an_operator_then_the_notification_names_its_state_and_the_redrive(
    stack: LocalStack, inbox: Inbox
) -> None:
    sfn = stack.client("stepfunctions")
    assert stack.aws is not None
    # GIVEN a release rolling out its services (slowly)
    with overrides(stack, rollout_seconds=60.0):
        arn = stack.start_execution({"imageTag": DEFAULT_TAG}, name="stopped-by-the-operator")
        _wait_until_entered(sfn, arn, "Check services")
        # WHEN the on-call stops it (as the console's Stop does: no error, no cause; moto 5.2.5 would drop them anyway)
        sfn.stop_execution(executionArn=arn)
        outcome = follow(sfn, arn, None, poll_seconds=0.1, timeout_seconds=60)
        deliveries = stack.deliver_status_change(arn)

    # THEN one notification: ABORTED at the state it was in, no error invented, the redrive command
    assert outcome.status == "ABORTED", describe(outcome)
    assert sorted((d.rule, d.function, d.error) for d in deliveries) == [
        ("ReleaseLockOnEndRule", "ReleaseLockOnEndFunction", None),  # the one-release lock given back
        ("ReleaseStoppedAtStepRule", "NotifyStoppedFunction", None),
    ]
    lines = assert_stopped_notification(sfn, inbox, arn, stack.aws.region)
    assert any(f"ABORTED at {state} in " in lines[0] for state in ROLLOUT_LOOP), lines[0]
    assert "error: (none given)" in lines
    assert not any(line.startswith("cause:") for line in lines), lines
    [notified] = [d for d in deliveries if d.rule == "ReleaseStoppedAtStepRule"]
    assert notified.response["historyRead"] is True


def test_given_a_release_past_the_execution_timeout_then_the_notification_says_timed_out_at_its_state(
    stack: LocalStack, inbox: Inbox
) -> None:
    sfn = stack.client("stepfunctions")
    assert stack.aws is not None
    # GIVEN the real ASL with only its execution bound (TimeoutSeconds, 3 h) lowered to 4 s, and a slow rollout
    definition = json.loads(sfn.describe_state_machine(stateMachineArn=stack.state_machine_arn)["definition"])
    definition["TimeoutSeconds"] = 4
    sfn.update_state_machine(stateMachineArn=stack.state_machine_arn, definition=json.dumps(definition))
    with overrides(stack, rollout_seconds=60.0):
        # WHEN a release runs past it
        arn = stack.start_execution({"imageTag": DEFAULT_TAG}, name="past-the-execution-timeout")
        outcome = follow(sfn, arn, None, poll_seconds=0.1, timeout_seconds=90)
        deliveries = stack.deliver_status_change(arn)

    # THEN TIMED_OUT at the state that was running, after about 4 s, with the redrive command
    assert outcome.status == "TIMED_OUT", describe(outcome)
    assert sorted((d.rule, d.function, d.error) for d in deliveries) == [
        ("ReleaseLockOnEndRule", "ReleaseLockOnEndFunction", None),  # the one-release lock given back
        ("ReleaseStoppedAtStepRule", "NotifyStoppedFunction", None),
    ]
    lines = assert_stopped_notification(sfn, inbox, arn, stack.aws.region)
    assert outcome.failed_state is not None
    assert f"TIMED_OUT at {outcome.failed_state} in " in lines[0], lines
