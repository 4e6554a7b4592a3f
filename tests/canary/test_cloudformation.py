"""Canary: what moto 5.2.5's CloudFormation does with the translated template.yaml, and what the local stack
therefore provisions itself (deployflow/local/cloudformation.py). Each test fails when moto changes the fact."""

from __future__ import annotations

import json
from typing import Any

import pytest

from deployflow.local.aws import LocalAws, LocalAwsConfig
from deployflow.local.cloudformation import CloudFormationFixes, translate

UNSUPPORTED = ("AWS::CloudWatch::Alarm", "AWS::SNS::Subscription", "AWS::SNS::TopicPolicy")


@pytest.fixture(scope="module")
def translated() -> dict[str, Any]:
    return translate()


def test_given_the_sam_template_when_translated_then_every_serverless_resource_becomes_cloudformation(
    translated: dict[str, Any],
) -> None:
    types = {r["Type"] for r in translated["Resources"].values()}
    assert not {t for t in types if t.startswith("AWS::Serverless::")}, types
    assert {"AWS::Lambda::Function", "AWS::IAM::Role", "AWS::StepFunctions::StateMachine"} <= types
    assert "StateMachineArn" in translated["Outputs"]


def test_the_resource_types_moto_cannot_create_are_the_ones_the_readme_names(translated: dict[str, Any]) -> None:
    from moto.cloudformation.parsing import resource_class_from_type

    types = sorted({r["Type"] for r in translated["Resources"].values()})
    unsupported = [t for t in types if resource_class_from_type(t) is None]
    assert tuple(unsupported) == UNSUPPORTED, (
        f"moto's CloudFormation support changed: it cannot create {unsupported} (the README and "
        f"deployflow/local/cloudformation.py name {UNSUPPORTED})"
    )


def _stack_with(aws: LocalAws, resources: dict[str, Any], parameters: dict[str, Any] | None = None) -> Any:
    cloudformation = aws.client("cloudformation")
    template = {"Parameters": parameters or {}, "Resources": resources}
    cloudformation.create_stack(StackName="canary", TemplateBody=json.dumps(template))
    return cloudformation.describe_stacks(StackName="canary")["Stacks"][0]


@pytest.fixture
def bare_moto(aws_credentials: None) -> Any:
    """moto in-process without the CloudFormation fix, to pin what moto does by itself."""
    with LocalAws(LocalAwsConfig(), mode="in-process") as aws:
        aws.cloudformation.uninstall()
        try:
            yield aws
        finally:
            aws.cloudformation.install()


def test_moto_ignores_a_state_machines_s3_definition_and_substitutions(bare_moto: LocalAws) -> None:
    bare_moto.client("s3").create_bucket(Bucket="defs")
    bare_moto.client("s3").put_object(Bucket="defs", Key="d.json", Body=b'{"StartAt": "A", "States": {}}')
    _stack_with(
        bare_moto,
        {
            "Machine": {
                "Type": "AWS::StepFunctions::StateMachine",
                "Properties": {
                    "StateMachineName": "canary-machine",
                    "DefinitionS3Location": {"Bucket": "defs", "Key": "d.json"},
                    "DefinitionSubstitutions": {"X": "y"},
                    "RoleArn": "arn:aws:iam::123456789012:role/r",
                },
            }
        },
    )
    machines = bare_moto.client("stepfunctions").list_state_machines()["stateMachines"]
    definitions = [
        bare_moto.client("stepfunctions").describe_state_machine(stateMachineArn=m["stateMachineArn"])["definition"]
        for m in machines
    ]
    assert "StartAt" not in "".join(definitions), (
        "moto now reads DefinitionS3Location: the local stack could let CloudFormation create the state machine"
    )


def test_moto_keeps_a_list_parameters_default_as_a_string(bare_moto: LocalAws) -> None:
    stack = _stack_with(
        bare_moto,
        {
            "Joined": {
                "Type": "AWS::SSM::Parameter",
                "Properties": {"Name": "joined", "Type": "String", "Value": {"Fn::Join": ["+", {"Ref": "Names"}]}},
            }
        },
        {"Names": {"Type": "CommaDelimitedList", "Default": "ab,cd"}},
    )
    assert stack["StackStatus"] == "CREATE_COMPLETE"
    value = bare_moto.client("ssm").get_parameter(Name="joined")["Parameter"]["Value"]
    assert value == "a+b+,+c+d", (
        f"moto now splits a list parameter's Default ({value}): create_stack need not pass the defaults"
    )


@pytest.mark.parametrize("fixed", [False, True], ids=["moto", "with-CloudFormationFixes"])
def test_an_if_giving_no_value_inside_a_list_is_removed_only_with_the_fix(bare_moto: LocalAws, fixed: bool) -> None:
    fixes = CloudFormationFixes()
    if fixed:
        fixes.install()
    try:
        policy = {"PolicyName": "p", "PolicyDocument": {"Statement": []}}
        role = {
            "Type": "AWS::IAM::Role",
            "Properties": {
                "AssumeRolePolicyDocument": {"Statement": []},
                "Policies": [policy, {"Fn::If": ["Never", policy, {"Ref": "AWS::NoValue"}]}],
            },
        }
        cloudformation = bare_moto.client("cloudformation")
        template = {"Conditions": {"Never": {"Fn::Equals": ["a", "b"]}}, "Resources": {"Role": role}}
        if fixed:
            cloudformation.create_stack(StackName="canary", TemplateBody=json.dumps(template))
            status = cloudformation.describe_stacks(StackName="canary")["Stacks"][0]["StackStatus"]
            assert status == "CREATE_COMPLETE"
        else:
            with pytest.raises(TypeError):  # moto: policy["PolicyName"] of the None left in the list
                cloudformation.create_stack(StackName="canary", TemplateBody=json.dumps(template))
    finally:
        if fixed:
            fixes.uninstall()
