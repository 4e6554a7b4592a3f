"""Static checks of template.yaml against the ASL, the step package and config.py; cfn-lint on the template."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from release_steps import config, lock

from tests.static import documents as docs

# Which settings each step module reads (config.py loaders). The source scan below keeps this honest.
SETTINGS_BY_MODULE: dict[str, set[str]] = {
    "release_steps.prepare": {"release_settings", "lock_settings", "ecs_settings"},
    "release_steps.check_image": {"image_settings"},
    "release_steps.run_migration": {"ecs_settings"},
    "release_steps.check_migration": {"ecs_settings"},
    "release_steps.verify_schema": {"database_settings"},
    "release_steps.create_topics": {"kafka_settings"},
    "release_steps.restart_services": {"ecs_settings"},
    "release_steps.check_services": {"ecs_settings"},
    "release_steps.record": set(),
    "release_steps.summarize_failure": {"ecs_settings"},
    "release_steps.notify_stopped": {"notification_settings"},
    "release_steps.lock_on_end": {"lock_settings"},
}
SETTINGS_CLASSES: dict[str, type[config.EnvSettings]] = {
    "release_settings": config.ReleaseSettings,
    "lock_settings": config.LockSettings,
    "image_settings": config.ImageSettings,
    "ecs_settings": config.EcsSettings,
    "database_settings": config.DatabaseSettings,
    "kafka_settings": config.KafkaSettings,
    "notification_settings": config.NotificationSettings,
}
# What a !Ref of a stack resource in a function's environment resolves to once deployed (an SNS topic: its ARN).
DEPLOYED_REFS = {"NotificationTopic": "arn:aws:sns:eu-west-1:123456789012:deployflow-prod-NotificationTopic-1A2B3C"}
# Set for every function by Globals; read by Powertools, not by config.py.
GLOBAL_VARIABLES = {"POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE"}
# The functions that open connections into the VPC (database, brokers); nothing else sits in a VPC.
VPC_FUNCTIONS = {"release_steps.verify_schema", "release_steps.create_topics"}
# Variables the Lambda runtime sets itself: a template may not set them.
LAMBDA_RESERVED = {"AWS_REGION", "AWS_DEFAULT_REGION", "AWS_LAMBDA_FUNCTION_NAME", "AWS_EXECUTION_ENV", "_HANDLER"}
ENVIRONMENTS = ("default", "dev", "prod")


def _modules() -> dict[str, str]:
    """Function logical id -> its handler's module."""
    return {name: docs.handler_module(function) for name, function in docs.functions().items()}


def test_given_the_asl_and_the_template_then_substitutions_match_both_ways() -> None:
    used = docs.asl_substitutions()
    defined = set(docs.state_machine()["DefinitionSubstitutions"])
    assert used - defined == set(), f"${{...}} in the ASL without a DefinitionSubstitution: {sorted(used - defined)}"
    assert defined - used == set(), f"DefinitionSubstitutions the ASL never uses: {sorted(defined - used)}"


def test_given_the_state_machine_then_it_reads_the_asl_file_and_names_itself_after_the_stack() -> None:
    machine = docs.state_machine()
    assert machine["DefinitionUri"] == "statemachine/deploy.asl.json"
    assert machine["Type"] == "STANDARD", "wait loops of an hour need a STANDARD workflow"
    assert machine["Name"] == {"Fn::Sub": "${AWS::StackName}-release"}
    assert machine["Logging"]["Level"] == "ALL"
    assert machine["Logging"]["IncludeExecutionData"] is True
    assert machine["Tracing"] == {"Enabled": True}


def _statements(policies: list[Any]) -> list[dict[str, Any]]:
    return [s for p in policies if isinstance(p, dict) and "Statement" in p for s in p["Statement"]]


def _actions(statement: dict[str, Any]) -> set[str]:
    return set(statement["Action"]) if isinstance(statement["Action"], list) else {statement["Action"]}


def test_given_the_fixed_state_machine_name_then_the_prepare_policy_describes_only_its_executions() -> None:
    statements = _statements(docs.resources()["PrepareFunction"]["Properties"]["Policies"])
    [describe] = [s for s in statements if "states:DescribeExecution" in _actions(s)]
    expected_name = docs.state_machine()["Name"]["Fn::Sub"]
    assert describe["Resource"]["Fn::Sub"].endswith(f":execution:{expected_name}:*"), (
        "states:DescribeExecution (the lock holder's status) must be scoped to the state machine's executions"
    )
    assert not [s for s in statements if "states:ListExecutions" in _actions(s)], "the lock replaced ListExecutions"


def test_given_the_lock_table_then_it_is_on_demand_with_point_in_time_recovery_and_encrypted() -> None:
    table = docs.resources("AWS::DynamoDB::Table")["ReleaseLockTable"]["Properties"]
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    assert table["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert table["SSESpecification"]["SSEEnabled"] is True
    assert table["KeySchema"] == [{"AttributeName": next(iter(lock.KEY)), "KeyType": "HASH"}]
    assert docs.template()["Outputs"]["ReleaseLockTableName"]["Value"] == {"Ref": "ReleaseLockTable"}


def test_given_the_lock_table_then_each_principal_may_do_exactly_its_part_on_it() -> None:
    table_arn = {"Fn::GetAtt": ["ReleaseLockTable", "Arn"]}
    allowed: dict[str, set[str]] = {}
    principals = {
        name: r["Properties"].get("Policies", [])
        for name, r in docs.resources().items()
        if "Policies" in r.get("Properties", {})
    }
    for name, policies in principals.items():
        for statement in _statements(policies):
            dynamodb = {a for a in _actions(statement) if a.startswith("dynamodb:")}
            if dynamodb:
                assert statement["Resource"] == table_arn, f"{name}: {sorted(dynamodb)} on {statement['Resource']}"
                allowed.setdefault(name, set()).update(dynamodb)
    assert allowed == {
        "PrepareFunction": {"dynamodb:UpdateItem", "dynamodb:GetItem"},
        "ReleaseStateMachine": {"dynamodb:DeleteItem"},
        "ReleaseLockOnEndFunction": {"dynamodb:DeleteItem", "dynamodb:PutItem"},
    }


def test_given_every_lambda_task_then_the_state_machine_may_invoke_exactly_those_functions() -> None:
    invoked = set(docs.task_functions().values())
    allowed = {
        policy["LambdaInvokePolicy"]["FunctionName"]["Ref"]
        for policy in docs.state_machine()["Policies"]
        if isinstance(policy, dict) and "LambdaInvokePolicy" in policy
    }
    assert invoked == allowed, f"invoked but not allowed: {invoked - allowed}; allowed but unused: {allowed - invoked}"
    # The rest are EventBridge rules' targets (notifications of an execution's end), never the state machine's.
    rule_targets = {
        target["Arn"]["Fn::GetAtt"][0]
        for rule in docs.resources("AWS::Events::Rule").values()
        for target in rule["Properties"]["Targets"]
        if "Fn::GetAtt" in target["Arn"]
    }
    assert not invoked & rule_targets, f"invoked by both a state and a rule: {invoked & rule_targets}"
    assert invoked | rule_targets == set(docs.functions()), (
        f"functions neither a state nor a rule invokes: {set(docs.functions()) - invoked - rule_targets}"
    )


def test_given_the_notification_topic_then_the_state_machine_may_publish_to_it() -> None:
    machine = docs.state_machine()
    assert machine["DefinitionSubstitutions"]["NotificationTopicArn"] == {"Ref": "NotificationTopic"}
    publish = [p["SNSPublishMessagePolicy"] for p in machine["Policies"] if "SNSPublishMessagePolicy" in p]
    assert publish == [{"TopicName": {"Fn::GetAtt": ["NotificationTopic", "TopicName"]}}]


@pytest.mark.parametrize("logical_id", sorted(docs.functions()))
def test_given_a_function_then_its_handler_imports_and_is_callable(logical_id: str) -> None:
    handler = docs.functions()[logical_id]["Handler"]
    module_name, _, attribute = handler.rpartition(".")
    assert module_name.startswith("release_steps."), f"{logical_id}: Handler {handler} is outside the step package"
    assert docs.module_path(module_name).exists(), f"{logical_id}: {docs.module_path(module_name)} does not exist"
    module = importlib.import_module(module_name)
    assert callable(getattr(module, attribute, None)), f"{logical_id}: {handler} is not a callable"


@pytest.mark.parametrize("logical_id", sorted(docs.functions()))
def test_given_a_function_then_its_variables_are_config_aliases_it_needs(logical_id: str) -> None:
    function = docs.functions()[logical_id]
    module = docs.handler_module(function)
    variables = set(function["Environment"]["Variables"]) - GLOBAL_VARIABLES
    assert not variables & LAMBDA_RESERVED, f"{logical_id} sets reserved variables {variables & LAMBDA_RESERVED}"
    classes = [SETTINGS_CLASSES[loader] for loader in SETTINGS_BY_MODULE[module]]
    known = {variable for cls in classes for variable in cls.variables()}
    unknown = variables - known
    assert not unknown, f"{logical_id} sets {sorted(unknown)}, which no settings of {module} read"
    required = {variable for cls in classes for variable, needed in cls.variables().items() if needed}
    assert required <= variables, f"{logical_id} lacks required variables {sorted(required - variables)}"


@pytest.mark.parametrize("module", sorted(SETTINGS_BY_MODULE))
def test_given_a_step_module_then_it_loads_only_the_settings_declared_for_it(module: str) -> None:
    sources = docs.sources_of(module, exclude=frozenset({"release_steps.config"}))
    if not any(source.module == module for source in sources):
        pytest.fail(f"{module} does not exist yet ({docs.module_path(module)})")
    loaders = {name for source in sources for name in docs.identifiers(source.text) if name in SETTINGS_CLASSES}
    assert loaders == SETTINGS_BY_MODULE[module], (
        f"{module} (with what it imports) loads {sorted(loaders)}; the template was written for "
        f"{sorted(SETTINGS_BY_MODULE[module])}: update both"
    )


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_given_an_environment_of_samconfig_then_every_function_s_settings_parse(environment: str) -> None:
    parameters = {**docs.parameter_values(environment), **DEPLOYED_REFS}
    for logical_id, function in docs.functions().items():
        variables = {
            name: docs.resolve(value, parameters) for name, value in function["Environment"]["Variables"].items()
        }
        for loader in SETTINGS_BY_MODULE[docs.handler_module(function)]:
            settings = SETTINGS_CLASSES[loader].from_environ(variables)  # raises ConfigurationError naming the field
            assert settings is not None, f"[{environment}] {logical_id}: {loader} did not parse"


def test_given_the_functions_then_only_the_database_and_kafka_steps_sit_in_the_vpc() -> None:
    in_vpc = {docs.handler_module(f) for f in docs.functions().values() if "VpcConfig" in f}
    assert in_vpc == VPC_FUNCTIONS


def test_given_every_lambda_task_then_its_timeout_exceeds_the_function_s() -> None:
    functions = docs.functions()
    for state_name, logical_id in docs.task_functions().items():
        task_timeout = docs.states()[state_name]["TimeoutSeconds"]
        function_timeout = int(functions[logical_id]["Timeout"])
        assert function_timeout < task_timeout <= function_timeout + 30, (
            f"{state_name!r}: TimeoutSeconds {task_timeout} must be slightly above {logical_id}'s Timeout "
            f"{function_timeout}, so the function's own timeout error wins"
        )


def test_given_the_globals_then_every_function_runs_the_house_runtime() -> None:
    defaults = docs.template()["Globals"]["Function"]
    assert defaults["Runtime"] == "python3.13"
    assert defaults["Architectures"] == ["arm64"]
    assert defaults["Tracing"] == "Active"
    assert defaults["LoggingConfig"]["LogFormat"] == "JSON"
    assert defaults["CodeUri"] == "functions/"
    for logical_id, resource in docs.resources("AWS::Serverless::Function").items():
        overridden = {"Runtime", "Architectures", "CodeUri"} & set(resource["Properties"])
        assert not overridden, f"{logical_id} overrides {overridden}: one asset, one runtime for every step"


def _referenced_parameters(node: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        if set(node) == {"Ref"}:
            found.add(node["Ref"])
        for key, value in node.items():
            if key == "Fn::Sub":
                text = value if isinstance(value, str) else value[0]
                found |= set(re.findall(r"\$\{([A-Za-z0-9]+)\}", text))
            found |= _referenced_parameters(value)
    elif isinstance(node, list):
        for item in node:
            found |= _referenced_parameters(item)
    return found


def test_given_the_parameters_then_each_one_is_used() -> None:
    cfn = docs.template()
    used = _referenced_parameters({k: v for k, v in cfn.items() if k != "Parameters"})
    unused = set(cfn["Parameters"]) - used
    assert not unused, f"parameters nothing uses: {sorted(unused)}"


def test_given_the_failure_alarm_then_it_watches_failed_timed_out_and_aborted_executions() -> None:
    [alarm] = docs.resources("AWS::CloudWatch::Alarm").values()
    properties = alarm["Properties"]
    metrics = {m["MetricStat"]["Metric"]["MetricName"] for m in properties["Metrics"] if "MetricStat" in m}
    assert metrics == {"ExecutionsFailed", "ExecutionsTimedOut", "ExecutionsAborted"}
    for metric in properties["Metrics"]:
        if "MetricStat" in metric:
            assert metric["MetricStat"]["Metric"]["Dimensions"] == [
                {"Name": "StateMachineArn", "Value": {"Ref": "ReleaseStateMachine"}}
            ]
    assert properties["AlarmActions"] == [{"Ref": "NotificationTopic"}]
    assert properties["TreatMissingData"] == "notBreaching"


def test_given_the_template_then_cfn_lint_passes() -> None:
    cfn_lint = Path(sys.executable).parent / "cfn-lint"
    assert cfn_lint.exists(), f"cfn-lint is not installed beside {sys.executable}"
    completed = subprocess.run(
        [str(cfn_lint), str(docs.TEMPLATE_PATH)], capture_output=True, text=True, cwd=docs.ROOT, timeout=240
    )
    assert completed.returncode == 0, f"cfn-lint failed ({completed.returncode}):\n{completed.stdout}{completed.stderr}"
