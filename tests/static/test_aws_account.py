"""Static checks of what a real AWS account would refuse or do differently (issue 12): IAM scope, KMS, scanners.

Each check names the AWS behaviour it pins; README.md's table "What was checked against AWS and how" lists the
sources.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.static import documents as docs

# Function -> checkov / cfn_nag rules it does not adopt; every one needs its reason in the resource's Metadata.
CHECKOV_SKIPS_EVERY_FUNCTION = {"CKV_AWS_116", "CKV_AWS_115", "CKV_AWS_173"}  # DLQ, reserved concurrency, env KMS
CHECKOV_SKIP_OUTSIDE_VPC = "CKV_AWS_117"  # inside a VPC
CFN_NAG_EVERY_FUNCTION = {"W92"}  # reserved concurrency
CFN_NAG_OUTSIDE_VPC = "W89"  # inside a VPC
# Actions AWS documents without resource-level permissions (Service Authorization Reference): "*" is all they take.
WILDCARD_ONLY_ACTIONS = {
    "ecs:DescribeTaskDefinition",
    "ecs:ListTaskDefinitions",
    "ecs:ListTasks",
    "inspector2:ListFindings",
    "logs:CreateLogDelivery",
    "logs:GetLogDelivery",
    "logs:UpdateLogDelivery",
    "logs:DeleteLogDelivery",
    "logs:ListLogDeliveries",
    "logs:PutResourcePolicy",
    "logs:DescribeResourcePolicies",
    "logs:DescribeLogGroups",
}


def _statements(policies: Any) -> Iterator[dict[str, Any]]:
    """Every inline statement of a SAM ``Policies`` list, through ``Fn::If`` branches."""
    for policy in policies or []:
        if isinstance(policy, dict) and "Fn::If" in policy:
            yield from _statements([branch for branch in policy["Fn::If"][1:] if isinstance(branch, dict)])
        elif isinstance(policy, dict) and "Statement" in policy:
            yield from policy["Statement"]


def _actions(statement: dict[str, Any]) -> list[str]:
    action = statement["Action"]
    return [action] if isinstance(action, str) else list(action)


def _function_statements(logical_id: str) -> list[dict[str, Any]]:
    return list(_statements(docs.functions()[logical_id].get("Policies")))


def _by_sid(statements: list[dict[str, Any]], sid: str) -> dict[str, Any]:
    return next(s for s in statements if s.get("Sid") == sid)


@pytest.mark.parametrize("logical_id", sorted(docs.functions()))
def test_given_a_function_then_each_scanner_default_it_does_not_adopt_is_suppressed_with_a_reason(
    logical_id: str,
) -> None:
    in_vpc = "VpcConfig" in docs.functions()[logical_id]
    metadata = docs.resources("AWS::Serverless::Function")[logical_id].get("Metadata") or {}
    skips = {entry["id"]: entry.get("comment", "") for entry in metadata.get("checkov", {}).get("skip", [])}
    nags = {entry["id"]: entry.get("reason", "") for entry in metadata.get("cfn_nag", {}).get("rules_to_suppress", [])}

    wanted_skips = CHECKOV_SKIPS_EVERY_FUNCTION | (set() if in_vpc else {CHECKOV_SKIP_OUTSIDE_VPC})
    wanted_nags = CFN_NAG_EVERY_FUNCTION | (set() if in_vpc else {CFN_NAG_OUTSIDE_VPC})
    assert set(skips) == wanted_skips, f"{logical_id}: checkov skips {sorted(skips)}, want {sorted(wanted_skips)}"
    assert set(nags) == wanted_nags, f"{logical_id}: cfn_nag suppressions {sorted(nags)}, want {sorted(wanted_nags)}"
    for rule, reason in {**skips, **nags}.items():
        assert len(reason) >= 40, f"{logical_id}: {rule} needs a stated reason, got {reason!r}"


def test_given_every_iam_statement_then_a_wildcard_resource_only_carries_actions_without_resource_permissions() -> None:
    statements = [
        statement
        for resource in docs.resources().values()
        for statement in _statements(resource.get("Properties", {}).get("Policies"))
    ]
    assert statements
    for statement in statements:
        if statement.get("Resource") == "*":
            extra = set(_actions(statement)) - WILDCARD_ONLY_ACTIONS
            assert not extra, f"{statement.get('Sid')}: {sorted(extra)} support resource-level permissions"


def test_given_the_run_step_then_it_registers_only_revisions_of_the_migration_family() -> None:
    statements = _function_statements("RunMigrationFunction")
    [register] = [s for s in statements if "ecs:RegisterTaskDefinition" in _actions(s)]

    assert _actions(register) == ["ecs:RegisterTaskDefinition"]
    assert register["Resource"]["Fn::Sub"].endswith(":task-definition/${MigrationTaskFamily}:*")


def test_given_enhanced_scanning_then_the_image_step_may_read_inspector_findings() -> None:
    statement = _by_sid(_function_statements("CheckImageFunction"), "ReadEnhancedScanFindings")

    assert _actions(statement) == ["inspector2:ListFindings"]


def test_given_a_customer_key_on_the_database_secret_then_verify_schema_may_decrypt_it_through_secrets_manager() -> (
    None
):
    [branch] = [
        p["Fn::If"]
        for p in docs.functions()["VerifySchemaFunction"]["Policies"]
        if isinstance(p, dict) and "Fn::If" in p and p["Fn::If"][0] == "HasDbSecretKmsKey"
    ]
    [statement] = branch[1]["Statement"]

    assert statement["Action"] == "kms:Decrypt"
    assert statement["Resource"] == {"Ref": "DbSecretKmsKeyArn"}
    assert statement["Condition"]["StringEquals"]["kms:ViaService"] == {
        "Fn::Sub": "secretsmanager.${AWS::Region}.amazonaws.com"
    }
    assert branch[2] == {"Ref": "AWS::NoValue"}


def test_given_verify_ca_or_verify_full_then_the_template_refuses_a_deploy_without_a_ca_bundle() -> None:
    rule = docs.template()["Rules"]["VerifiedTlsNeedsCaBundle"]

    assert rule["RuleCondition"] == {
        "Fn::Or": [
            {"Fn::Equals": [{"Ref": "DbSslMode"}, "verify-ca"]},
            {"Fn::Equals": [{"Ref": "DbSslMode"}, "verify-full"]},
        ]
    }
    [assertion] = rule["Assertions"]
    assert assertion["Assert"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "DbSslRootCert"}, ""]}]}
    env = docs.functions()["VerifySchemaFunction"]["Environment"]["Variables"]
    assert env["DB_SSLROOTCERT"] == {"Ref": "DbSslRootCert"}


def test_given_the_notification_topic_then_it_is_encrypted_and_every_publisher_may_use_the_key() -> None:
    resources = docs.resources()
    topic = resources["NotificationTopic"]["Properties"]
    key_ref = {
        "Fn::If": [
            "CreateNotificationKey",
            {"Fn::GetAtt": ["NotificationKey", "Arn"]},
            {"Ref": "NotificationKmsKeyArn"},
        ]
    }
    assert topic["KmsMasterKeyId"] == key_ref

    key = resources["NotificationKey"]
    assert key["Condition"] == "CreateNotificationKey"
    assert key["Properties"]["EnableKeyRotation"] is True
    statements = {s["Sid"]: s for s in key["Properties"]["KeyPolicy"]["Statement"]}
    alarm = statements["FailureAlarmPublishes"]
    assert alarm["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    assert set(alarm["Action"]) == {"kms:Decrypt", "kms:GenerateDataKey*"}
    services = {s["Principal"].get("Service") for s in statements.values() if "Service" in s.get("Principal", {})}
    assert services == {"cloudwatch.amazonaws.com"}, (
        "only the alarm publishes as a service; EventBridge invokes NotifyStoppedFunction, which publishes as its role"
    )

    notifier = list(_statements(docs.functions()["NotifyStoppedFunction"]["Policies"]))
    assert set(_actions(_by_sid(notifier, "PublishToTheEncryptedTopic"))) == {"kms:Decrypt", "kms:GenerateDataKey"}
    assert _by_sid(notifier, "PublishToTheEncryptedTopic")["Resource"] == key_ref
    machine = list(_statements(docs.state_machine()["Policies"]))
    publish = _by_sid(machine, "PublishToTheEncryptedTopic")
    assert set(_actions(publish)) == {"kms:Decrypt", "kms:GenerateDataKey"}
    assert publish["Resource"] == key_ref


@pytest.mark.parametrize("logical_id", ["FunctionsLogGroup", "StateMachineLogGroup"])
def test_given_a_log_group_then_a_kms_key_is_optional(logical_id: str) -> None:
    group = docs.resources()[logical_id]

    assert group["Properties"]["KmsKeyId"] == {
        "Fn::If": ["HasLogsKmsKey", {"Ref": "LogsKmsKeyArn"}, {"Ref": "AWS::NoValue"}]
    }
    [skip] = group["Metadata"]["checkov"]["skip"]
    assert skip["id"] == "CKV_AWS_158"
