"""template.yaml notifies every execution that stops at a step, once, with the redrive command.

Only terminal errors go through the workflow's own failure path (Summarize failure -> Notify failure). Any other end
(a transient error after its retries, States.Timeout, an unexpected exception, the execution timeout, an abort)
leaves the execution at the step that was running, where a redrive resumes; Step Functions publishes the status
change to the default event bus and ReleaseStoppedAtStepRule hands it to NotifyStoppedFunction, which reads the
history and publishes to the notification topic (its message: tests/functional/test_notify_stopped.py).

The event pattern is checked with moto's EventBridge matcher (moto.events.models.EventPattern), against events shaped
like the examples of "EventBridge (CloudWatch Events) for Step Functions execution status changes". The two
EventBridge semantics the pattern relies on are pinned by their own test below: a pattern matches only events that
contain every field it names ("Amazon EventBridge event patterns"), and anything-but matches a field that is present
but null (localstack issue 9711, reproduced there against AWS).
"""

from __future__ import annotations

import json
from typing import Any, cast

import pytest
from moto.events.models import EventPattern
from release_steps import errors

from tests.static import documents as docs

RULE = "ReleaseStoppedAtStepRule"
ALARM = "ReleaseFailureAlarm"
TOPIC = "NotificationTopic"
FUNCTION = "NotifyStoppedFunction"
MACHINE_ARN = "arn:aws:states:us-east-1:123456789012:stateMachine:deployflow-prod-release"
OTHER_MACHINE_ARN = "arn:aws:states:us-east-1:123456789012:stateMachine:someone-elses-workflow"
EXECUTION_ARN = "arn:aws:states:us-east-1:123456789012:execution:deployflow-prod-release:release-2026-11-23-4"
ABSENT = object()  # the event has no such field (unlike a field whose value is null)
LAMBDA_CAUSE = json.dumps(
    {
        "errorMessage": "[Create Kafka topics] no broker answered at b-1.msk:9098 within 10 s",
        "errorType": "KafkaUnreachableError",
        "requestId": "8d1c7a6e-0f5b-4c1e-9d1a-2b0f3c4d5e6f",
        "stackTrace": ['  File "/var/task/release_steps/create_topics.py", line 133, in lambda_handler\n'],
    }
)


def _rule() -> dict[str, Any]:
    rules = docs.resources("AWS::Events::Rule")
    assert RULE in rules, f"expected the EventBridge rule {RULE}; found {sorted(rules)}"
    properties: dict[str, Any] = rules[RULE]["Properties"]
    return properties


def _target() -> dict[str, Any]:
    targets = _rule()["Targets"]
    assert len(targets) == 1, f"{RULE} must have one target ({FUNCTION}), has {len(targets)}"
    target: dict[str, Any] = targets[0]
    return target


def _matcher(state_machine_arn: str = MACHINE_ARN) -> EventPattern:
    """The rule's pattern with the state machine's ARN in place of its !Ref, as CloudFormation deploys it."""
    pattern = _rule()["EventPattern"]
    assert pattern["detail"]["stateMachineArn"] == [{"Ref": "ReleaseStateMachine"}], (
        f"{RULE} must watch the release state machine (!Ref ReleaseStateMachine), not "
        f"{pattern['detail']['stateMachineArn']}"
    )
    pattern["detail"]["stateMachineArn"] = [state_machine_arn]
    return EventPattern.load(json.dumps(pattern))  # raises InvalidEventPatternException on a malformed pattern


def _matches(pattern: EventPattern, event: dict[str, Any]) -> bool:
    return pattern.matches_event(cast(Any, event))  # moto types events as a TypedDict of the PutEvents entry


def _event(status: str, error: object = ABSENT, cause: object = ABSENT, machine: str = MACHINE_ARN) -> dict[str, Any]:
    detail: dict[str, Any] = {
        "executionArn": EXECUTION_ARN,
        "stateMachineArn": machine,
        "name": EXECUTION_ARN.rsplit(":", 1)[1],
        "status": status,
        "startDate": 1551225146847,
        "stopDate": None if status == "RUNNING" else 1551225151881,
        "input": '{"imageTag": "2026-11-23.4"}',
        "inputDetails": {"included": True},
        "output": None,
        "outputDetails": None,
    }
    if error is not ABSENT:
        detail["error"] = error
    if cause is not ABSENT:
        detail["cause"] = cause
    return docs.status_change_event(detail, "2026-11-23T19:42:21Z")


# --- the rule -----------------------------------------------------------------------------------------------------


def test_given_the_template_then_one_enabled_rule_watches_the_release_state_machine_on_the_default_bus() -> None:
    rule = _rule()
    assert rule["State"] == "ENABLED"
    assert "EventBusName" not in rule, "Step Functions publishes status changes to the default event bus only"
    pattern = rule["EventPattern"]
    assert pattern["source"] == ["aws.states"]
    assert pattern["detail-type"] == ["Step Functions Execution Status Change"]
    assert pattern["detail"]["stateMachineArn"] == [{"Ref": "ReleaseStateMachine"}]


def test_given_the_rule_then_it_leaves_out_exactly_the_terminal_errors_the_workflow_notifies_itself() -> None:
    excluded = [
        condition["anything-but"]
        for branch in _rule()["EventPattern"]["detail"]["$or"]
        for condition in branch.get("error", [])
        if isinstance(condition, dict) and "anything-but" in condition
    ]
    assert excluded == [errors.terminal_error_names()], (
        f"{RULE} must leave out exactly errors.terminal_error_names() (sorted), once; found {excluded}"
    )


def test_given_eventbridge_semantics_then_moto_s_matcher_has_the_ones_the_pattern_relies_on() -> None:
    # If this fails, moto's matcher changed: the cases below no longer say what AWS does.
    field_named = EventPattern.load(json.dumps({"detail": {"error": [{"anything-but": ["A"]}]}}))
    assert not _matches(field_named, {"detail": {"status": "ABORTED"}}), "a missing field must not match"
    assert _matches(field_named, {"detail": {"error": None}}), "anything-but must match a null value"
    assert not _matches(field_named, {"detail": {"error": "A"}})
    missing = EventPattern.load(json.dumps({"detail": {"error": [{"exists": False}]}}))
    assert _matches(missing, {"detail": {"status": "FAILED"}})
    assert not _matches(missing, {"detail": {"error": "A"}})


NOTIFIED: list[tuple[str, object]] = [
    *[("FAILED", name) for name in errors.transient_error_names()],  # retries exhausted
    *[("FAILED", name) for name in sorted(docs.LAMBDA_ERRORS)],
    ("FAILED", "States.Timeout"),  # a task's TimeoutSeconds
    ("FAILED", "Sandbox.Timedout"),  # the function's own timeout
    ("FAILED", "KeyError"),  # a bug
    ("FAILED", "States.Runtime"),
    ("FAILED", None),
    ("FAILED", ABSENT),  # no error field at all: notified (twice for a terminal error, never missed)
    ("TIMED_OUT", "States.Timeout"),
    ("TIMED_OUT", ABSENT),
    ("ABORTED", ABSENT),
    ("ABORTED", None),
    ("ABORTED", "OperatorStopped"),
    ("ABORTED", "ImageNotFoundError"),  # stop-execution --error takes any text
]


@pytest.mark.parametrize(("status", "error"), NOTIFIED, ids=lambda v: "absent" if v is ABSENT else str(v))
def test_given_an_execution_that_stopped_at_a_step_then_the_rule_notifies_it(status: str, error: object) -> None:
    assert _matches(_matcher(), _event(status, error)), f"{status} with error {error!r} would not be notified"


@pytest.mark.parametrize("error", errors.terminal_error_names())
def test_given_a_terminal_error_then_the_rule_leaves_it_to_the_workflow_s_own_summary(error: str) -> None:
    assert not _matches(_matcher(), _event("FAILED", error)), f"FAILED {error} would be notified twice"


@pytest.mark.parametrize("status", ["RUNNING", "SUCCEEDED", "PENDING_REDRIVE"])
def test_given_an_execution_that_runs_or_succeeded_then_the_rule_stays_quiet(status: str) -> None:
    assert not _matches(_matcher(), _event(status, None))
    assert not _matches(_matcher(), _event(status))


def test_given_another_state_machine_s_failure_then_the_rule_stays_quiet() -> None:
    assert not _matches(_matcher(), _event("FAILED", "KafkaUnreachableError", machine=OTHER_MACHINE_ARN))
    assert _matches(_matcher(), _event("FAILED", "KafkaUnreachableError"))


# --- the target ---------------------------------------------------------------------------------------------------


def test_given_the_target_then_the_notify_function_gets_the_whole_event_and_may_be_invoked_only_by_the_rule() -> None:
    target = _target()
    assert target["Arn"] == {"Fn::GetAtt": [FUNCTION, "Arn"]}
    assert not {"Input", "InputPath", "InputTransformer"} & set(target), "the function parses the event as AWS sends it"
    assert target["RetryPolicy"]["MaximumRetryAttempts"] >= 1, "a failed invocation is retried"
    [permission] = [
        p["Properties"]
        for p in docs.resources("AWS::Lambda::Permission").values()
        if p["Properties"]["FunctionName"] == {"Fn::GetAtt": [FUNCTION, "Arn"]}
    ]
    assert permission["Action"] == "lambda:InvokeFunction"
    assert permission["Principal"] == "events.amazonaws.com"
    assert permission["SourceArn"] == {"Fn::GetAtt": [RULE, "Arn"]}, "EventBridge may invoke it for this rule only"
    assert permission["SourceAccount"] == {"Ref": "AWS::AccountId"}


def test_given_the_notify_function_then_it_reads_only_release_executions_and_publishes_only_to_the_topic() -> None:
    function = docs.functions()[FUNCTION]
    assert function["Handler"] == "release_steps.notify_stopped.lambda_handler"
    assert function["Environment"]["Variables"]["NOTIFICATION_TOPIC_ARN"] == {"Ref": TOPIC}
    policies = function["Policies"]
    assert {"SNSPublishMessagePolicy": {"TopicName": {"Fn::GetAtt": [TOPIC, "TopicName"]}}} in policies
    statements = [s for p in policies if isinstance(p, dict) and "Statement" in p for s in p["Statement"]]
    actions = sorted(a for s in statements for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"]))
    assert actions == ["kms:Decrypt", "kms:GenerateDataKey", "states:GetExecutionHistory"], actions
    [history] = [s for s in statements if s["Action"] == "states:GetExecutionHistory"]
    assert history["Resource"] == {
        "Fn::Sub": "arn:${AWS::Partition}:states:${AWS::Region}:${AWS::AccountId}:execution:${AWS::StackName}-release:*"
    }, "the history of the release state machine's executions only"
    machine = docs.resources("AWS::Serverless::StateMachine")["ReleaseStateMachine"]["Properties"]
    assert machine["Name"] == {"Fn::Sub": "${AWS::StackName}-release"}, "the policy's ARN is built from this name"


# --- the topic policy ---------------------------------------------------------------------------------------------


def _topic_policy() -> dict[str, Any]:
    policies = docs.resources("AWS::SNS::TopicPolicy")
    assert len(policies) == 1, f"expected one topic policy, found {sorted(policies)}"
    properties: dict[str, Any] = next(iter(policies.values()))["Properties"]
    assert properties["Topics"] == [{"Ref": TOPIC}]
    return properties


def _statement_for(service: str) -> dict[str, Any]:
    statements = [
        s for s in _topic_policy()["PolicyDocument"]["Statement"] if s.get("Principal") == {"Service": service}
    ]
    assert len(statements) == 1, f"expected one statement for {service}, found {len(statements)}"
    statement: dict[str, Any] = statements[0]
    return statement


def test_given_the_topic_policy_then_eventbridge_may_not_publish_the_function_does_with_its_role() -> None:
    services = [s.get("Principal", {}).get("Service") for s in _topic_policy()["PolicyDocument"]["Statement"]]
    assert "events.amazonaws.com" not in services, f"{RULE} targets {FUNCTION}, not the topic: no statement for it"


def test_given_the_topic_policy_replaces_the_default_then_the_failure_alarm_may_still_publish() -> None:
    statement = _statement_for("cloudwatch.amazonaws.com")
    assert statement["Effect"] == "Allow"
    assert statement["Action"] == "sns:Publish"
    assert statement["Resource"] == {"Ref": TOPIC}
    assert statement["Condition"]["ArnEquals"] == {"aws:SourceArn": {"Fn::GetAtt": [ALARM, "Arn"]}}
    alarm = docs.resources("AWS::CloudWatch::Alarm")[ALARM]["Properties"]
    assert alarm["AlarmActions"] == [{"Ref": TOPIC}], "the alarm this statement serves must publish to the topic"


def test_given_the_topic_policy_then_every_statement_is_a_scoped_service_publish() -> None:
    for statement in _topic_policy()["PolicyDocument"]["Statement"]:
        where = statement.get("Sid", statement)
        assert statement["Effect"] == "Allow", f"{where}: unexpected {statement['Effect']}"
        assert set(statement["Principal"]) == {"Service"}, f"{where}: only service principals, no '*' or accounts"
        assert statement["Action"] == "sns:Publish", f"{where}: publish only"
        assert "aws:SourceArn" in statement["Condition"].get("ArnEquals", {}), f"{where}: not scoped by aws:SourceArn"
