"""Static checks of samconfig.toml: named environments that deploy the template as it is."""

from __future__ import annotations

import re

import pytest

from tests.static import documents as docs

ENVIRONMENTS = {"default": "deployflow-dev", "dev": "deployflow-dev", "prod": "deployflow-prod"}
EXAMPLE_ACCOUNT = "123456789012"


def test_given_samconfig_then_it_names_the_three_environments() -> None:
    assert docs.samconfig()["version"] == 0.1
    assert set(ENVIRONMENTS) <= set(docs.samconfig()), f"missing environments in {sorted(docs.samconfig())}"


@pytest.mark.parametrize(("environment", "stack"), sorted(ENVIRONMENTS.items()))
def test_given_an_environment_then_it_deploys_its_own_stack_with_iam_capability(environment: str, stack: str) -> None:
    deploy = docs.samconfig()[environment]["deploy"]["parameters"]
    assert deploy["stack_name"] == stack
    assert docs.samconfig()[environment]["global"]["parameters"]["stack_name"] == stack
    assert "CAPABILITY_IAM" in deploy["capabilities"].split(), "SAM generates the functions' roles"
    assert deploy["confirm_changeset"] is True, "a change set is reviewed before it runs"


def test_given_a_bare_sam_deploy_then_it_targets_dev_never_prod() -> None:
    config = docs.samconfig()
    assert config["default"] == config["dev"], "[default] must stay a copy of [dev]"


@pytest.mark.parametrize("environment", sorted(ENVIRONMENTS))
def test_given_an_environment_then_every_parameter_without_default_is_given_and_no_unknown_one(
    environment: str,
) -> None:
    parameters = docs.template()["Parameters"]
    overrides = docs.parameter_overrides(environment)
    unknown = set(overrides) - set(parameters)
    assert not unknown, f"[{environment}] overrides parameters the template does not have: {sorted(unknown)}"
    missing = {name for name, spec in parameters.items() if "Default" not in spec} - set(overrides)
    assert not missing, f"[{environment}] gives no value for {sorted(missing)}"


@pytest.mark.parametrize("environment", sorted(ENVIRONMENTS))
def test_given_an_environment_then_its_values_satisfy_the_parameter_constraints(environment: str) -> None:
    parameters = docs.template()["Parameters"]
    for name, value in docs.parameter_values(environment).items():
        spec = parameters[name]
        where = f"[{environment}] {name}={value!r}"
        if "AllowedValues" in spec:
            assert value in {str(v) for v in spec["AllowedValues"]}, f"{where} is not one of {spec['AllowedValues']}"
        if "AllowedPattern" in spec:
            assert re.fullmatch(spec["AllowedPattern"], value), f"{where} does not match {spec['AllowedPattern']}"
        if spec["Type"] == "Number":
            number = float(value)
            assert spec.get("MinValue", number) <= number <= spec.get("MaxValue", number), f"{where} is out of range"
        if spec["Type"] == "List<AWS::EC2::Subnet::Id>":
            assert all(re.fullmatch(r"subnet-[0-9a-z]+", v) for v in value.split(",")), f"{where}: not subnet ids"
        if spec["Type"] == "List<AWS::EC2::SecurityGroup::Id>":
            assert all(re.fullmatch(r"sg-[0-9a-z]+", v) for v in value.split(",")), f"{where}: not security groups"


@pytest.mark.parametrize("environment", sorted(ENVIRONMENTS))
def test_given_an_environment_then_its_ids_are_obvious_examples(environment: str) -> None:
    for name, value in docs.parameter_overrides(environment).items():
        accounts = set(re.findall(r"(?<=:)\d{12}(?=:)", value)) | set(re.findall(r"^\d{12}$", value))
        assert accounts <= {EXAMPLE_ACCOUNT}, f"[{environment}] {name} names a real-looking account {accounts}"
        for resource_id in re.findall(r"\b(?:subnet|sg)-[0-9a-z]+", value):
            assert "example" in resource_id, f"[{environment}] {name}: {resource_id} is not an obvious example"


def test_given_the_kafka_auth_mode_then_its_credentials_are_configured() -> None:
    for environment in ENVIRONMENTS:
        values = docs.parameter_values(environment)
        if values["KafkaAuthMode"] == "msk_iam":
            assert values.get("KafkaClusterArn"), f"[{environment}] msk_iam needs KafkaClusterArn"
        if values["KafkaAuthMode"] == "sasl_scram":
            assert values.get("KafkaSecretArn"), f"[{environment}] sasl_scram needs KafkaSecretArn"
