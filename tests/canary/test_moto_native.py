"""Canary: moto 5.2.5's own behaviour behind each seam, with no seam installed.

Each test pins a gap a seam fills. When one fails after a moto upgrade, moto changed there: re-read the seam (it may
be removable, or patch something that moved) before trusting the local stack again.
"""

from __future__ import annotations

import io
import json
import time
import zipfile
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from deployflow.local.aws import LocalService

ROLE = "arn:aws:iam::123456789012:role/r"


@pytest.fixture
def native(aws_credentials: None) -> Iterator[None]:
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        yield


def _client(service: LocalService) -> Any:
    return boto3.client(service, region_name="us-east-1")


def _run_pass(parameters: dict[str, Any], **start: Any) -> str:
    sfn = _client("stepfunctions")
    definition = {"StartAt": "P", "States": {"P": {"Type": "Pass", "Parameters": parameters, "End": True}}}
    machine = sfn.create_state_machine(name="native", definition=json.dumps(definition), roleArn=ROLE)
    arn: str = sfn.start_execution(stateMachineArn=machine["stateMachineArn"], **start)["executionArn"]
    return arn


def _wait_until_not_running(arn: str) -> dict[str, Any]:
    sfn = _client("stepfunctions")
    for _ in range(400):
        description: dict[str, Any] = sfn.describe_execution(executionArn=arn)
        if description["status"] != "RUNNING":
            return description
        time.sleep(0.025)
    raise AssertionError(f"{arn} did not end")


@pytest.mark.usefixtures("native")
def test_given_native_moto_when_started_without_a_name_then_the_execution_is_called_none() -> None:
    arn = _run_pass({"a": 1})

    assert arn.endswith(":None"), f"moto now names executions itself ({arn}): InterpreterFixes' name fix may go"


@pytest.mark.usefixtures("native")
def test_given_native_moto_when_selecting_execution_start_time_then_describe_execution_breaks() -> None:
    arn = _run_pass({"t.$": "$$.Execution.StartTime"}, name="start-time")
    time.sleep(0.2)

    with pytest.raises(TypeError, match="datetime is not JSON serializable"):
        _wait_until_not_running(arn)


@pytest.mark.usefixtures("native")
def test_given_native_moto_when_selecting_state_entered_time_then_it_has_an_offset_not_z() -> None:
    arn = _run_pass({"e.$": "$$.State.EnteredTime"}, name="entered")

    entered = json.loads(_wait_until_not_running(arn)["output"])["e"]

    assert entered.endswith("+00:00"), f"moto now writes EnteredTime as {entered}: InterpreterFixes may go"


def _choose(rule: dict[str, Any], execution_input: dict[str, Any]) -> dict[str, Any]:
    sfn = _client("stepfunctions")
    definition = {
        "StartAt": "C",
        "States": {
            "C": {"Type": "Choice", "Choices": [{**rule, "Next": "Less"}], "Default": "NotLess"},
            "Less": {"Type": "Succeed"},
            "NotLess": {"Type": "Fail", "Error": "NotLess"},
        },
    }
    machine = sfn.create_state_machine(name="choice", definition=json.dumps(definition), roleArn=ROLE)
    arn = sfn.start_execution(stateMachineArn=machine["stateMachineArn"], name="c", input=json.dumps(execution_input))
    return _wait_until_not_running(arn["executionArn"])


@pytest.mark.usefixtures("native")
def test_given_native_moto_when_a_variable_timestamp_has_fractional_seconds_then_the_rule_is_silently_false() -> None:
    description = _choose(
        {"Variable": "$.a", "TimestampLessThan": "2030-01-01T00:00:00Z"}, {"a": "2026-01-01T00:00:00.123Z"}
    )

    assert description.get("error") == "NotLess", f"moto now parses fractional timestamps: {description}"


@pytest.mark.usefixtures("native")
def test_given_native_moto_when_a_path_timestamp_has_fractional_seconds_then_the_choice_is_a_runtime_error() -> None:
    description = _choose(
        {"Variable": "$.a", "TimestampLessThanPath": "$.b"},
        {"a": "2026-01-01T00:00:00Z", "b": "2030-01-01T00:00:00.5Z"},
    )

    assert (description["status"], description.get("error")) == ("FAILED", "States.Runtime"), description


@pytest.mark.usefixtures("native")
def test_given_native_moto_when_a_container_has_no_memory_then_run_task_fails() -> None:
    ecs, network = _ecs_world(container_memory=None)

    with pytest.raises(TypeError, match="unsupported operand"):
        ecs.run_task(
            cluster="native",
            taskDefinition="native",
            launchType="FARGATE",
            networkConfiguration=network,
        )


@pytest.mark.usefixtures("native")
def test_given_native_moto_without_docker_when_a_lambda_is_invoked_then_it_does_not_run() -> None:
    iam, lam = _client("iam"), _client("lambda")
    role = iam.create_role(RoleName="r", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    package = io.BytesIO()
    with zipfile.ZipFile(package, "w") as archive:
        archive.writestr("m.py", "def h(e, c):\n    return 1\n")
    lam.create_function(
        FunctionName="f", Runtime="python3.13", Role=role, Handler="m.h", Code={"ZipFile": package.getvalue()}
    )

    response = lam.invoke(FunctionName="f", Payload=b"{}")

    assert response["FunctionError"] == "Handled"
    assert b"error running docker" in response["Payload"].read()


def _ecs_world(container_memory: int | None = 128) -> tuple[Any, dict[str, Any]]:
    ecs, ec2 = _client("ecs"), _client("ec2")
    ecs.create_cluster(clusterName="native")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    # moto's awsvpc RunTask reads the ENI's private DNS name, which it only sets when the VPC has DNS hostnames.
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName="native", Description="native", VpcId=vpc)["GroupId"]
    ecs.register_task_definition(
        family="native",
        requiresCompatibilities=["FARGATE"],
        networkMode="awsvpc",
        cpu="256",
        memory="512",
        containerDefinitions=[
            {"name": "c", "image": "busybox", "command": ["false"], "essential": True}
            | ({"memory": container_memory} if container_memory is not None else {})
        ],
    )
    # moto needs securityGroups in an awsvpc configuration (KeyError otherwise); ECS would use the VPC's default.
    return ecs, {"awsvpcConfiguration": {"subnets": [subnet], "securityGroups": [group]}}


@pytest.mark.usefixtures("native")
def test_given_native_moto_when_run_task_repeats_a_client_token_then_it_starts_a_second_task() -> None:
    ecs, network = _ecs_world()
    request = {
        "cluster": "native",
        "taskDefinition": "native",
        "launchType": "FARGATE",
        "networkConfiguration": network,
        "clientToken": "same-token",
    }

    first = ecs.run_task(**request)["tasks"][0]["taskArn"]
    second = ecs.run_task(**request)["tasks"][0]["taskArn"]

    assert first != second, "moto now honours clientToken: EcsSeam's token handling may go"


@pytest.mark.usefixtures("native")
def test_given_native_moto_when_a_task_is_described_then_it_stops_by_itself_with_exit_code_zero() -> None:
    ecs, network = _ecs_world()
    task = ecs.run_task(
        cluster="native",
        taskDefinition="native",
        launchType="FARGATE",
        networkConfiguration=network,
    )["tasks"][0]["taskArn"]

    statuses = [ecs.describe_tasks(cluster="native", tasks=[task])["tasks"][0] for _ in range(4)]

    assert [t["lastStatus"] for t in statuses] == ["DEACTIVATING", "STOPPING", "DEPROVISIONING", "STOPPED"]
    assert statuses[-1]["containers"][0]["exitCode"] == 0, "nothing ran, yet moto reports exit code 0"
    assert "stopCode" not in statuses[-1]


@pytest.mark.usefixtures("native")
def test_given_native_moto_when_forcing_a_new_deployment_then_the_one_deployment_is_renamed_in_place() -> None:
    ecs, _ = _ecs_world()
    ecs.create_service(cluster="native", serviceName="svc", taskDefinition="native", desiredCount=1)
    before = ecs.describe_services(cluster="native", services=["svc"])["services"][0]["deployments"]

    ecs.update_service(cluster="native", service="svc", forceNewDeployment=True)
    after = ecs.describe_services(cluster="native", services=["svc"])["services"][0]["deployments"]

    assert len(before) == len(after) == 1
    assert before[0]["id"] != after[0]["id"]
    assert [d["rolloutState"] for d in before + after] == ["IN_PROGRESS", "IN_PROGRESS"], "moto rolls out now"


@pytest.mark.usefixtures("native")
def test_given_native_moto_when_a_plain_arn_lambda_task_gets_a_service_error_then_it_is_called_exception() -> None:
    from moto.awslambda.exceptions import LambdaClientError
    from moto.awslambda.models import LambdaBackend

    def throttled(*args: Any, **kwargs: Any) -> bytes:
        error = LambdaClientError("TooManyRequestsException", "Rate exceeded")
        error.code = 429
        raise error

    iam, lam, sfn = _client("iam"), _client("lambda"), _client("stepfunctions")
    role = iam.create_role(RoleName="r", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    package = io.BytesIO()
    with zipfile.ZipFile(package, "w") as archive:
        archive.writestr("m.py", "")
    arn = lam.create_function(
        FunctionName="f", Runtime="python3.13", Role=role, Handler="m.h", Code={"ZipFile": package.getvalue()}
    )["FunctionArn"]
    definition = {"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": arn, "End": True}}}
    machine = sfn.create_state_machine(name="plain", definition=json.dumps(definition), roleArn=ROLE)

    original = LambdaBackend.invoke
    LambdaBackend.invoke = throttled  # type: ignore[method-assign]
    try:
        arn = sfn.start_execution(stateMachineArn=machine["stateMachineArn"], name="t")["executionArn"]
        description = _wait_until_not_running(arn)
    finally:
        LambdaBackend.invoke = original  # type: ignore[method-assign]

    assert description["error"] == "Exception", f"moto now maps Lambda service errors: {description['error']}"


@pytest.mark.usefixtures("native")
def test_given_native_moto_when_a_failed_execution_is_redriven_then_the_operation_is_not_implemented() -> None:
    from moto.stepfunctions.responses import StepFunctionResponse

    sfn = _client("stepfunctions")
    definition = {"StartAt": "F", "States": {"F": {"Type": "Fail", "Error": "OutageError"}}}
    machine = sfn.create_state_machine(name="redrive", definition=json.dumps(definition), roleArn=ROLE)
    arn = sfn.start_execution(stateMachineArn=machine["stateMachineArn"], name="r")["executionArn"]
    description = _wait_until_not_running(arn)

    # When these fail, moto has its own RedriveExecution: RedriveSeam refuses to install (AttributeAddition) - compare
    # moto's semantics with deployflow/local/sfn_redrive.py's docstring, then drop the seam or keep what moto lacks.
    assert not hasattr(StepFunctionResponse, "redrive_execution"), "moto now implements RedriveExecution"
    assert "redriveCount" not in description, description
    assert "redriveStatus" not in description, description
    with pytest.raises(NotImplementedError, match="redrive_execution action has not been implemented"):
        sfn.redrive_execution(executionArn=arn)


@pytest.mark.usefixtures("native")
def test_given_native_moto_when_history_is_asked_backwards_in_pages_then_it_answers_all_oldest_first() -> None:
    arn = _run_pass({"a": 1}, name="history-order")
    _wait_until_not_running(arn)

    page = _client("stepfunctions").get_execution_history(executionArn=arn, maxResults=1, reverseOrder=True)

    ids = [e["id"] for e in page["events"]]
    assert len(ids) > 1, f"moto now honours maxResults ({ids}): InterpreterFixes' history paging may go"
    assert ids == sorted(ids), f"moto now honours reverseOrder ({ids}): InterpreterFixes' history paging may go"
    assert "nextToken" not in page or page["nextToken"] is None


@pytest.mark.usefixtures("native")
def test_given_native_moto_when_an_execution_times_out_then_describe_execution_has_no_stop_date() -> None:
    sfn = _client("stepfunctions")
    definition = {"StartAt": "W", "TimeoutSeconds": 1, "States": {"W": {"Type": "Wait", "Seconds": 600, "End": True}}}
    machine = sfn.create_state_machine(name="times-out", definition=json.dumps(definition), roleArn=ROLE)
    arn = sfn.start_execution(stateMachineArn=machine["stateMachineArn"], name="times-out")["executionArn"]

    description = _wait_until_not_running(arn)

    assert description["status"] == "TIMED_OUT", description
    assert "stopDate" not in description, "moto now gives a TIMED_OUT execution its stopDate: that seam fix may go"
