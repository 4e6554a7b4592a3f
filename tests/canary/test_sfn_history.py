"""Canary: what GetExecutionHistory and DescribeExecution give - the CLI's progress and the workflow tests read it."""

from __future__ import annotations

import json

from deployflow.local.aws import LocalAws
from tests.canary.conftest import Deploy, Execute
from tests.fixtures.executions import state_path


def test_given_tasks_a_wait_a_retry_a_catch_and_a_fail_when_executed_then_the_history_names_every_step(
    any_local_aws: LocalAws, deploy: Deploy, execute: Execute
) -> None:
    echo, flaky = deploy("echo"), deploy("flaky")
    definition = {
        "StartAt": "Check image",
        "States": {
            "Check image": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {"FunctionName": echo, "Payload.$": "$"},
                "ResultSelector": {"image.$": "$.Payload.event"},
                "Next": "Plain",
            },
            "Plain": {"Type": "Task", "Resource": echo, "ResultPath": "$.plain", "Next": "Wait"},
            "Wait": {"Type": "Wait", "Seconds": 1, "Next": "Migrate"},
            "Migrate": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {
                    "FunctionName": flaky,
                    "Payload": {"key": f"history-{any_local_aws.mode}", "failures": 9},
                },
                "Retry": [{"ErrorEquals": ["DatabaseNotReadyError"], "IntervalSeconds": 1, "MaxAttempts": 1}],
                "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.failure", "Next": "Notify failure"}],
                "End": True,
            },
            "Notify failure": {"Type": "Pass", "Next": "Fail"},
            "Fail": {"Type": "Fail", "ErrorPath": "$.failure.Error", "CausePath": "$.failure.Cause"},
        },
    }

    run = execute(definition, {"imageTag": "1.0"})

    assert [e["type"] for e in run.events] == [
        "ExecutionStarted",
        "TaskStateEntered",
        "TaskScheduled",
        "TaskStarted",
        "TaskSucceeded",
        "TaskStateExited",
        "TaskStateEntered",
        "LambdaFunctionScheduled",
        "LambdaFunctionStarted",
        "LambdaFunctionSucceeded",
        "TaskStateExited",
        "WaitStateEntered",
        "WaitStateExited",
        "TaskStateEntered",
        "TaskScheduled",
        "TaskStarted",
        "TaskFailed",
        "TaskScheduled",
        "TaskStarted",
        "TaskFailed",
        "TaskStateExited",
        "PassStateEntered",
        "PassStateExited",
        "FailStateEntered",
        "ExecutionFailed",
    ], run.explain()
    assert state_path(run.events) == ["Check image", "Plain", "Wait", "Migrate", "Notify failure", "Fail"]
    assert [e["id"] for e in run.events] == list(range(1, len(run.events) + 1))
    assert all("timestamp" in e for e in run.events)
    exited = [e["stateExitedEventDetails"]["name"] for e in run.events if e["type"].endswith("StateExited")]
    assert exited == ["Check image", "Plain", "Wait", "Migrate", "Notify failure"], "a Fail state has no Exited event"

    scheduled = run.of_type("TaskScheduled")[0]["taskScheduledEventDetails"]
    assert (scheduled["resourceType"], scheduled["resource"], scheduled["region"]) == ("lambda", "invoke", "us-east-1")
    assert json.loads(scheduled["parameters"])["FunctionName"] == echo
    failed = [e["taskFailedEventDetails"] for e in run.of_type("TaskFailed")]
    assert [f["error"] for f in failed] == ["DatabaseNotReadyError"] * 2
    assert json.loads(failed[-1]["cause"])["errorMessage"] == "attempt 2: database not ready"
    assert run.of_type("LambdaFunctionScheduled")[0]["lambdaFunctionScheduledEventDetails"]["resource"] == echo

    assert run.status == "FAILED"
    assert run.description["error"] == "DatabaseNotReadyError"
    assert json.loads(run.description["cause"])["errorType"] == "DatabaseNotReadyError"
    assert "output" not in run.description
    closing = run.of_type("ExecutionFailed")[0]["executionFailedEventDetails"]
    assert (closing["error"], closing["cause"]) == (run.description["error"], run.description["cause"])


def test_given_a_successful_execution_when_described_then_output_and_history_close_with_it(execute: Execute) -> None:
    run = execute({"StartAt": "Done", "States": {"Done": {"Type": "Pass", "Result": {"ok": True}, "End": True}}})

    assert run.status == "SUCCEEDED"
    assert run.output == {"ok": True}
    assert "error" not in run.description
    assert "cause" not in run.description
    closing = run.of_type("ExecutionSucceeded")[0]["executionSucceededEventDetails"]
    assert json.loads(closing["output"]) == {"ok": True}


def test_given_a_waiting_execution_when_stopped_then_it_is_aborted_without_the_stop_error_and_cause(
    any_local_aws: LocalAws,
) -> None:
    import time

    from tests.fixtures.executions import execution_history, wait_for_execution

    sfn = any_local_aws.client("stepfunctions")
    machine = sfn.create_state_machine(
        name="long-wait",
        definition=json.dumps({"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 100_000, "End": True}}}),
        roleArn="arn:aws:iam::123456789012:role/r",
    )["stateMachineArn"]
    arn = sfn.start_execution(stateMachineArn=machine)["executionArn"]
    # A stop that arrives before the first state is entered ends the execution ABORTED with no ExecutionAborted
    # event at all (moto skips the program): wait until the Wait state is entered to pin the usual case.
    deadline = time.monotonic() + 30
    while "WaitStateEntered" not in [e["type"] for e in execution_history(sfn, arn)]:
        assert time.monotonic() < deadline, "the execution never entered its Wait state"
        time.sleep(0.02)

    sfn.stop_execution(executionArn=arn, error="CancelledError", cause="stopped by the operator")
    description = wait_for_execution(sfn, arn, timeout=30)

    assert description["status"] == "ABORTED"
    closing = execution_history(sfn, arn)[-1]
    assert closing["type"] == "ExecutionAborted"
    # moto drops StopExecution's error and cause (AWS records them on the event and the description).
    assert "error" not in description
    assert "cause" not in description
