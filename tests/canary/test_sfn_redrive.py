"""Canary: RedriveExecution on the local stack (deployflow/local/sfn_redrive.py) behaves as AWS documents it, in both
modes, through boto3 and through the AWS CLI - and rests on moto internals that still hold."""

from __future__ import annotations

import datetime
import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from deployflow.local._patching import SeamError
from deployflow.local.aws import LocalAws, create_function
from deployflow.local.sfn_redrive import (
    EVENT_LIMIT_REASON,
    PERIOD_REASON,
    RUNNING_REASON,
    SUCCEEDED_REASON,
    RedriveSeam,
    record_of,
    redrive_status,
    resume_point,
)
from tests.canary.conftest import ROLE_ARN, Deploy
from tests.fixtures.executions import execution_history, state_path, wait_for_execution

REPO = Path(__file__).resolve().parents[2]


def gated_machine(echo: str, gate: str) -> dict[str, Any]:
    """Prepare (a Pass), Count (a Lambda that succeeds), Gate (fails, uncaught, until its file exists), Finish."""
    return {
        "StartAt": "Prepare",
        "TimeoutSeconds": 60,
        "States": {
            "Prepare": {"Type": "Pass", "Result": {"step": "prepared"}, "ResultPath": "$.prepare", "Next": "Count"},
            "Count": {"Type": "Task", "Resource": echo, "ResultPath": "$.count", "Next": "Gate"},
            "Gate": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {"FunctionName": gate, "Payload.$": "$"},
                "OutputPath": "$.Payload",
                "Next": "Finish",
            },
            "Finish": {"Type": "Pass", "Parameters": {"passed.$": "$.passed", "prepare.$": "$.prepare"}, "End": True},
        },
    }


def start(aws: LocalAws, definition: dict[str, Any], execution_input: Any) -> str:
    sfn = aws.client("stepfunctions")
    machine = sfn.create_state_machine(
        name=f"redrive-{uuid.uuid4().hex[:10]}", definition=json.dumps(definition), roleArn=ROLE_ARN
    )["stateMachineArn"]
    arn: str = sfn.start_execution(stateMachineArn=machine, name="release-1", input=json.dumps(execution_input))[
        "executionArn"
    ]
    return arn


def failed_at_gate(aws: LocalAws, echo: str, gate: str, gate_file: Path) -> tuple[Any, str, dict[str, Any]]:
    """The gated machine run to its failure at Gate (its file missing): the client, the ARN, the description."""
    sfn = aws.client("stepfunctions")
    arn = start(aws, gated_machine(echo, gate), {"gate": str(gate_file)})
    return sfn, arn, wait_for_execution(sfn, arn)


def lambda_events(events: Sequence[Mapping[str, Any]]) -> list[str]:
    return [e["type"] for e in events if e["type"].startswith(("LambdaFunction", "Task")) and "State" not in e["type"]]


def test_given_an_execution_failed_at_a_step_when_redriven_then_it_resumes_there_with_the_same_arn_and_one_history(
    any_local_aws: LocalAws, deploy: Deploy, tmp_path: Path
) -> None:
    gate_file = tmp_path / "broker-back"
    sfn, arn, failed = failed_at_gate(any_local_aws, deploy("echo"), deploy("gate"), gate_file)
    before = execution_history(sfn, arn)
    assert failed["status"] == "FAILED", failed
    assert failed["error"] == "DatabaseNotReadyError", failed
    assert (failed["redriveCount"], failed["redriveStatus"]) == (0, "REDRIVABLE"), failed
    assert "redriveDate" not in failed
    assert state_path(before) == ["Prepare", "Count", "Gate"]

    gate_file.write_text("up")
    redriven = sfn.redrive_execution(executionArn=arn)
    ended = wait_for_execution(sfn, arn)
    events = execution_history(sfn, arn)

    assert ended["status"] == "SUCCEEDED", ended
    assert ended["executionArn"] == arn
    assert json.loads(ended["output"]) == {"passed": True, "prepare": {"step": "prepared"}}
    assert (ended["redriveCount"], ended["redriveDate"]) == (1, redriven["redriveDate"]), ended
    assert (ended["redriveStatus"], ended["redriveStatusReason"]) == ("NOT_REDRIVABLE", SUCCEEDED_REASON), ended
    assert ended["startDate"] == failed["startDate"], "a redrive keeps the execution's start"
    assert "error" not in ended, ended
    assert "cause" not in ended, ended
    # One history: what was there, then ExecutionRedriven, then the failed state's events; ids go on.
    assert events[: len(before)] == before
    assert [e["id"] for e in events] == list(range(1, len(events) + 1))
    redrive_event = events[len(before)]
    assert redrive_event["type"] == "ExecutionRedriven", redrive_event
    assert redrive_event["executionRedrivenEventDetails"] == {"redriveCount": 1}
    assert redrive_event["previousEventId"] == before[-1]["id"]
    after = events[len(before) + 1 :]
    assert state_path(after) == ["Gate", "Finish"], "the states that succeeded are not rerun"
    assert [e["type"] for e in after][-1] == "ExecutionSucceeded"
    assert lambda_events(after) == ["TaskScheduled", "TaskStarted", "TaskSucceeded"], after
    # The resumed state received the input it had received the first time.
    entered = [e["stateEnteredEventDetails"] for e in events if e["type"] == "TaskStateEntered"]
    gate_inputs = [json.loads(d["input"]) for d in entered if d["name"] == "Gate"]
    assert len(gate_inputs) == 2, gate_inputs
    assert gate_inputs[0] == gate_inputs[1], gate_inputs
    assert gate_inputs[1]["prepare"] == {"step": "prepared"}, gate_inputs[1]
    assert "count" in gate_inputs[1], gate_inputs[1]


def test_given_a_succeeded_or_running_execution_when_redriven_then_execution_not_redrivable_and_nothing_changes(
    any_local_aws: LocalAws, deploy: Deploy
) -> None:
    sfn = any_local_aws.client("stepfunctions")
    waiting = {"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 30, "End": True}}}
    running = start(any_local_aws, waiting, {})
    with pytest.raises(ClientError) as refused_running:
        sfn.redrive_execution(executionArn=running)
    sfn.stop_execution(executionArn=running)

    done = start(any_local_aws, {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}, {"a": 1})
    wait_for_execution(sfn, done)
    history = execution_history(sfn, done)
    with pytest.raises(ClientError) as refused_done:
        sfn.redrive_execution(executionArn=done)

    assert refused_running.value.response["Error"]["Code"] == "ExecutionNotRedrivable"
    assert refused_running.value.response["Error"]["Message"] == RUNNING_REASON
    assert isinstance(refused_done.value, sfn.exceptions.ExecutionNotRedrivable), refused_done.value
    assert refused_done.value.response["Error"]["Message"] == SUCCEEDED_REASON
    described = sfn.describe_execution(executionArn=done)
    assert (described["status"], described["redriveCount"]) == ("SUCCEEDED", 0)
    assert execution_history(sfn, done) == history
    missing = done.rsplit(":", 1)[0] + ":no-such-execution"
    with pytest.raises(sfn.exceptions.ExecutionDoesNotExist):
        sfn.redrive_execution(executionArn=missing)


def test_given_a_redrive_that_fails_again_then_a_second_redrive_counts_two_and_a_reused_token_redrives_nothing(
    any_local_aws: LocalAws, deploy: Deploy, tmp_path: Path
) -> None:
    gate_file = tmp_path / "gate"
    sfn, arn, _ = failed_at_gate(any_local_aws, deploy("echo"), deploy("gate"), gate_file)

    first = sfn.redrive_execution(executionArn=arn, clientToken="token-1")
    again = wait_for_execution(sfn, arn)
    length = len(execution_history(sfn, arn))
    repeated = sfn.redrive_execution(executionArn=arn, clientToken="token-1")
    unchanged = sfn.describe_execution(executionArn=arn)
    gate_file.write_text("up")
    sfn.redrive_execution(executionArn=arn, clientToken="token-2")
    ended = wait_for_execution(sfn, arn)
    events = execution_history(sfn, arn)

    assert (again["status"], again["error"], again["redriveCount"]) == ("FAILED", "DatabaseNotReadyError", 1), again
    assert repeated["redriveDate"] == first["redriveDate"], "a reused client token answers its first redrive"
    assert (unchanged["status"], unchanged["redriveCount"]) == ("FAILED", 1), unchanged
    assert len(execution_history(sfn, arn)) > length  # the second redrive added to the history...
    assert (ended["status"], ended["redriveCount"]) == ("SUCCEEDED", 2), ended
    redrives = [e["executionRedrivenEventDetails"]["redriveCount"] for e in events if e["type"] == "ExecutionRedriven"]
    assert redrives == [1, 2], "...and the reused token did not"
    assert state_path(events) == ["Prepare", "Count", "Gate", "Gate", "Gate", "Finish"]
    listed = {e["executionArn"]: e for e in sfn.list_executions(stateMachineArn=ended["stateMachineArn"])["executions"]}
    assert (listed[arn]["redriveCount"], listed[arn]["redriveDate"]) == (2, ended["redriveDate"]), listed[arn]
    machine = ended["stateMachineArn"]
    assert [
        e["executionArn"] for e in sfn.list_executions(stateMachineArn=machine, redriveFilter="REDRIVEN")["executions"]
    ] == [arn]
    assert sfn.list_executions(stateMachineArn=machine, redriveFilter="NOT_REDRIVEN")["executions"] == []


def test_given_an_updated_state_machine_when_an_execution_is_redriven_then_it_runs_the_definition_it_started_with(
    any_local_aws: LocalAws, deploy: Deploy, tmp_path: Path
) -> None:
    gate_file = tmp_path / "gate"
    echo, gate = deploy("echo"), deploy("gate")
    sfn, arn, failed = failed_at_gate(any_local_aws, echo, gate, gate_file)
    changed = gated_machine(echo, gate)
    changed["States"]["Finish"] = {"Type": "Fail", "Error": "NewDefinitionError", "Cause": "the machine was updated"}
    sfn.update_state_machine(stateMachineArn=failed["stateMachineArn"], definition=json.dumps(changed))

    gate_file.write_text("up")
    sfn.redrive_execution(executionArn=arn)
    ended = wait_for_execution(sfn, arn)

    assert ended["status"] == "SUCCEEDED", ended


def test_given_the_aws_cli_when_it_redrives_a_failed_execution_on_the_local_server_then_it_resumes(
    moto_server: LocalAws, tmp_path: Path
) -> None:
    aws = shutil.which("aws", path=str(REPO / ".venv-bench" / "bin")) or shutil.which("aws")
    assert aws is not None, "the AWS CLI is missing: make .venv-bench/.installed (make test builds it)"
    gate_file = tmp_path / "gate"
    echo, gate = (create_function(moto_server, n, f"tests.canary.handlers.{n}") for n in ("echo", "gate"))
    sfn, arn, _ = failed_at_gate(moto_server, echo, gate, gate_file)
    gate_file.write_text("up")
    env = {**os.environ, "AWS_DEFAULT_REGION": moto_server.region}
    command = [aws, "stepfunctions", "redrive-execution", "--execution-arn", arn]
    command += ["--endpoint-url", str(moto_server.endpoint_url), "--output", "json"]

    answer = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)
    ended = wait_for_execution(sfn, arn)
    refused = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)

    assert answer.returncode == 0, answer.stderr
    assert "redriveDate" in json.loads(answer.stdout), answer.stdout
    assert (ended["status"], ended["redriveCount"]) == ("SUCCEEDED", 1), ended
    assert refused.returncode != 0
    assert "(ExecutionNotRedrivable)" in refused.stderr, refused.stderr
    assert SUCCEEDED_REASON in refused.stderr, refused.stderr


def test_given_aws_limits_then_redrive_status_names_the_documented_reason() -> None:
    now = datetime.datetime(2026, 12, 2, tzinfo=datetime.UTC)

    class Stopped:
        status = "FAILED"
        start_date = now - datetime.timedelta(days=20)
        stop_date = now - datetime.timedelta(days=14, seconds=1)
        exec_worker = None

    assert redrive_status(Stopped(), now) == ("NOT_REDRIVABLE", PERIOD_REASON)
    Stopped.stop_date = now - datetime.timedelta(days=13)
    assert redrive_status(Stopped(), now) == ("REDRIVABLE", None)
    assert record_of(Stopped()).count == 0
    assert EVENT_LIMIT_REASON.startswith("Execution history event limit")


def test_given_a_history_then_the_resume_point_is_the_last_state_entered_and_not_exited_with_its_input() -> None:
    definition = {"StartAt": "A", "States": {"A": {"Type": "Pass"}, "B": {"Type": "Task"}, "Fan": {"Type": "Map"}}}

    def entered(name: str, data: Any) -> dict[str, Any]:
        return {"type": "TaskStateEntered", "stateEnteredEventDetails": {"name": name, "input": json.dumps(data)}}

    exited_a = {"type": "PassStateExited", "stateExitedEventDetails": {"name": "A", "output": "{}"}}
    inner = {"type": "TaskStateEntered", "stateEnteredEventDetails": {"name": "inner", "input": "{}"}}

    point = resume_point(definition, [entered("A", {"x": 1}), exited_a, entered("B", {"y": 2}), inner], {"x": 0})
    assert (point.state, point.input) == ("B", {"y": 2})
    assert resume_point(definition, [], {"x": 0}) == type(point)("A", {"x": 0})
    with pytest.raises(Exception, match="cannot redrive into the Map state 'Fan'"):
        resume_point(definition, [entered("Fan", {})], {})


def test_given_moto_with_its_own_redrive_execution_then_the_seam_refuses_to_install_and_leaves_moto_alone() -> None:
    from moto.stepfunctions.responses import StepFunctionResponse

    def moto_redrive(response: Any) -> Any:
        raise AssertionError("not called")

    StepFunctionResponse.redrive_execution = moto_redrive  # type: ignore[attr-defined]  # as a moto upgrade would
    original_describe = StepFunctionResponse.describe_execution
    try:
        with pytest.raises(SeamError, match="now has 'redrive_execution'"):
            RedriveSeam().install()
        assert StepFunctionResponse.redrive_execution is moto_redrive  # type: ignore[attr-defined]
        assert StepFunctionResponse.describe_execution is original_describe, "a half-installed seam stayed"
    finally:
        del StepFunctionResponse.redrive_execution  # type: ignore[attr-defined]
    with RedriveSeam():
        assert hasattr(StepFunctionResponse, "redrive_execution")
    assert not hasattr(StepFunctionResponse, "redrive_execution"), "uninstalling removes what the seam added"


def test_given_an_execution_stopped_in_a_wait_or_timed_out_when_redriven_then_that_state_runs_again_and_it_ends(
    any_local_aws: LocalAws,
) -> None:
    sfn = any_local_aws.client("stepfunctions")

    def holding(timeout: int | None) -> dict[str, Any]:
        definition: dict[str, Any] = {
            "StartAt": "Hold",
            "States": {
                "Hold": {"Type": "Wait", "SecondsPath": "$.seconds", "Next": "Done"},
                "Done": {"Type": "Pass", "Result": {"done": True}, "End": True},
            },
        }
        return definition if timeout is None else {**definition, "TimeoutSeconds": timeout}

    scaled = 1 / any_local_aws.time.factor  # Wait seconds are scaled, TimeoutSeconds are not
    aborted = start(any_local_aws, holding(None), {"seconds": int(2 * scaled)})
    timed_out = start(any_local_aws, holding(2), {"seconds": int(30 * scaled)})
    for arn in (aborted, timed_out):
        deadline = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=20)
        while not any(e["type"] == "WaitStateEntered" for e in execution_history(sfn, arn)):
            assert datetime.datetime.now(datetime.UTC) < deadline, execution_history(sfn, arn)
    sfn.stop_execution(executionArn=aborted)
    stopped = wait_for_execution(sfn, aborted)
    expired = wait_for_execution(sfn, timed_out)

    for arn in (aborted, timed_out):
        sfn.redrive_execution(executionArn=arn)
    resumed = wait_for_execution(sfn, aborted)
    again = wait_for_execution(sfn, timed_out)

    assert (stopped["status"], expired["status"]) == ("ABORTED", "TIMED_OUT"), (stopped, expired)
    assert (resumed["status"], json.loads(resumed["output"])) == ("SUCCEEDED", {"done": True}), resumed
    assert state_path(execution_history(sfn, aborted)) == ["Hold", "Hold", "Done"]
    # The machine's TimeoutSeconds counts again from the redrive: the 30 s wait outlives it once more.
    assert (again["status"], again["redriveCount"]) == ("TIMED_OUT", 1), again
    history = [e["type"] for e in execution_history(sfn, timed_out)]
    assert history.count("ExecutionTimedOut") == 2, history
    assert history[history.index("ExecutionRedriven") + 1] == "WaitStateEntered", history
