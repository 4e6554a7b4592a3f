"""Loaders for the static checks: the ASL, the SAM template (CloudFormation tags intact), samconfig.toml, sources.

The template is read with cfn-lint's own YAML decoder, which turns ``!Ref``/``!GetAtt``/``!Sub`` into the long form
(``{"Ref": ...}``), so the checks see exactly what CloudFormation will.
"""

from __future__ import annotations

import ast
import json
import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
ASL_PATH = ROOT / "statemachine" / "deploy.asl.json"
TEMPLATE_PATH = ROOT / "template.yaml"
SAMCONFIG_PATH = ROOT / "samconfig.toml"
FUNCTIONS_DIR = ROOT / "functions"
PROJECT_PACKAGES = ("release_steps", "dbmigrate")
SUBSTITUTION = re.compile(r"\$\{([A-Za-z0-9_]+)\}")
# The Lambda retry set: Step Functions developer guide, "Best practices for Step Functions" -> "Handle transient
# Lambda service exceptions" (ClientExecutionTimeout, Service, AWSLambda, SdkClient), plus TooManyRequests (throttling).
LAMBDA_ERRORS = frozenset(
    {
        "Lambda.ServiceException",
        "Lambda.AWSLambdaException",
        "Lambda.SdkClientException",
        "Lambda.TooManyRequestsException",
        "Lambda.ClientExecutionTimeoutException",
    }
)
# What the DynamoDB service integration (arn:aws:states:::dynamodb:*) fails with: "DynamoDB." + the API's error
# code (Step Functions developer guide, "Call DynamoDB APIs with Step Functions"; moto's interpreter does the same).
DYNAMODB_ERRORS = frozenset(
    {
        "DynamoDB.ConditionalCheckFailedException",
        "DynamoDB.ProvisionedThroughputExceededException",
        "DynamoDB.ThrottlingException",
        "DynamoDB.RequestLimitExceeded",
        "DynamoDB.InternalServerError",
        "DynamoDB.AmazonDynamoDBException",
    }
)
# Step Functions' own error names (Amazon States Language, "Error names").
STATES_ERRORS = frozenset(
    {
        "States.ALL",
        "States.DataLimitExceeded",
        "States.ExceedToleratedFailureThreshold",
        "States.HeartbeatTimeout",
        "States.Http.Socket",
        "States.IntrinsicFailure",
        "States.ItemReaderFailed",
        "States.NoChoiceMatched",
        "States.ParameterPathFailure",
        "States.Permissions",
        "States.ResultPathMatchFailure",
        "States.ResultWriterFailed",
        "States.Runtime",
        "States.TaskFailed",
        "States.Timeout",
    }
)


# --- the state machine ----------------------------------------------------------------------------------------


@cache
def _asl_text() -> str:
    return ASL_PATH.read_text(encoding="utf-8")


def asl() -> dict[str, Any]:
    """A fresh copy of the state machine definition."""
    document: dict[str, Any] = json.loads(_asl_text())
    return document


def asl_substitutions() -> set[str]:
    """Every ``${Name}`` the definition uses."""
    return set(SUBSTITUTION.findall(_asl_text()))


def states() -> dict[str, dict[str, Any]]:
    """The top-level states by name."""
    found: dict[str, dict[str, Any]] = asl()["States"]
    return found


def lambda_tasks() -> dict[str, dict[str, Any]]:
    """The Task states that invoke a Lambda function (``Resource`` is a ``${...FunctionArn}`` substitution)."""
    return {
        name: state
        for name, state in states().items()
        if state["Type"] == "Task" and str(state.get("Resource", "")).endswith("FunctionArn}")
    }


def transitions(state: Mapping[str, Any], *, with_catch: bool = True) -> list[str]:
    """The names of the states a state can hand over to (Next, Default, Choices, and Catch if asked)."""
    targets = [state[key] for key in ("Next", "Default") if key in state]
    targets += [choice["Next"] for choice in state.get("Choices", [])]
    if with_catch:
        targets += [catcher["Next"] for catcher in state.get("Catch", [])]
    return targets


def reachable(start: str, *, with_catch: bool = True) -> set[str]:
    """Every state reachable from ``start`` (``start`` included)."""
    all_states = states()
    seen: set[str] = set()
    pending = [start]
    while pending:
        name = pending.pop()
        if name in seen or name not in all_states:
            continue
        seen.add(name)
        pending.extend(transitions(all_states[name], with_catch=with_catch))
    return seen


def retry_names(state: Mapping[str, Any]) -> list[str]:
    """Every error name a state's Retry matches."""
    return [name for retrier in state.get("Retry", []) for name in retrier["ErrorEquals"]]


def catch_names(state: Mapping[str, Any]) -> list[str]:
    """Every error name a state's Catch matches."""
    return [name for catcher in state.get("Catch", []) for name in catcher["ErrorEquals"]]


# --- the template ---------------------------------------------------------------------------------------------


@cache
def _template() -> dict[str, Any]:
    from cfnlint.decode.cfn_yaml import load  # keeps the CloudFormation tags

    loaded: dict[str, Any] = json.loads(json.dumps(load(str(TEMPLATE_PATH))))
    return loaded


def template() -> dict[str, Any]:
    """A fresh copy of template.yaml with intrinsic functions in their long form (``{"Ref": ...}``)."""
    copy: dict[str, Any] = json.loads(json.dumps(_template()))
    return copy


def resources(kind: str | None = None) -> dict[str, dict[str, Any]]:
    """The template's resources (of one type when ``kind`` is given)."""
    return {
        name: resource for name, resource in template()["Resources"].items() if kind is None or resource["Type"] == kind
    }


def functions() -> dict[str, dict[str, Any]]:
    """The Lambda functions by logical id, with the Globals merged in (as SAM does: the function's value wins)."""
    defaults = template().get("Globals", {}).get("Function", {})
    merged: dict[str, dict[str, Any]] = {}
    for name, resource in resources("AWS::Serverless::Function").items():
        properties = {**defaults, **resource["Properties"]}
        variables = {
            **defaults.get("Environment", {}).get("Variables", {}),
            **resource["Properties"].get("Environment", {}).get("Variables", {}),
        }
        properties["Environment"] = {"Variables": variables}
        merged[name] = properties
    return merged


def state_machine() -> dict[str, Any]:
    """The properties of the (single) AWS::Serverless::StateMachine."""
    machines = resources("AWS::Serverless::StateMachine")
    assert len(machines) == 1, f"expected one state machine in template.yaml, found {sorted(machines)}"
    properties: dict[str, Any] = next(iter(machines.values()))["Properties"]
    return properties


def task_functions() -> dict[str, str]:
    """Lambda Task state name -> logical id of the function its ``${XFunctionArn}`` substitution points at."""
    substitutions = state_machine()["DefinitionSubstitutions"]
    mapping: dict[str, str] = {}
    for name, state in lambda_tasks().items():
        key = SUBSTITUTION.fullmatch(state["Resource"])
        assert key, f"state {name!r}: Resource {state['Resource']!r} is not a single ${{...}} substitution"
        value = substitutions.get(key.group(1))
        assert isinstance(value, dict), f"state {name!r}: substitution {key.group(1)} is {value!r}, not !GetAtt"
        assert "Fn::GetAtt" in value, f"state {name!r}: substitution {key.group(1)} must be !GetAtt <Function>.Arn"
        logical_id, attribute = value["Fn::GetAtt"]
        assert attribute == "Arn", f"substitution {key.group(1)} takes {attribute}, not Arn"
        mapping[name] = logical_id
    return mapping


def handler_module(function: Mapping[str, Any]) -> str:
    """``release_steps.prepare`` for Handler ``release_steps.prepare.lambda_handler``."""
    module, _, _ = str(function["Handler"]).rpartition(".")
    return module


# --- samconfig.toml -------------------------------------------------------------------------------------------


def samconfig() -> dict[str, Any]:
    """samconfig.toml as a dictionary."""
    with SAMCONFIG_PATH.open("rb") as f:
        return tomllib.load(f)


def parameter_overrides(environment: str) -> dict[str, str]:
    """An environment's ``parameter_overrides`` (a list of ``Key=Value``), unescaped as the SAM CLI does (``\\"``)."""
    raw = samconfig()[environment]["deploy"]["parameters"]["parameter_overrides"]
    assert isinstance(raw, list), f"[{environment}] parameter_overrides: keep the list form, got {type(raw).__name__}"
    overrides: dict[str, str] = {}
    for item in raw:
        key, sep, value = str(item).partition("=")
        assert sep, f"[{environment}] parameter_overrides: {item!r} is not Key=Value"
        assert key, f"[{environment}] parameter_overrides: {item!r} has no key"
        assert key not in overrides, f"[{environment}] parameter_overrides: {key} is given twice"
        overrides[key] = value.replace('\\"', '"')
    return overrides


def parameter_values(environment: str) -> dict[str, str]:
    """Every template parameter's value in an environment: its override, else its default (absent: no value)."""
    values = {name: str(spec["Default"]) for name, spec in template()["Parameters"].items() if "Default" in spec}
    values.update(parameter_overrides(environment))
    return values


def resolve(value: Any, parameters: Mapping[str, str]) -> str:
    """A function's environment value with the parameters' values put in (Ref and Join of a list parameter)."""
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, dict) and set(value) == {"Ref"}:
        if value["Ref"] in parameters:
            return parameters[value["Ref"]]
        if value["Ref"] in resources():  # a resource's physical name, as CloudFormation generates it
            return f"deployflow-{value['Ref']}-1A2B3C4D5E6F"
        raise KeyError(value["Ref"])
    if isinstance(value, dict) and set(value) == {"Fn::Join"}:
        delimiter, parts = value["Fn::Join"]
        if isinstance(parts, dict):  # a list parameter: its value is the comma-separated string
            items = [item.strip() for item in resolve(parts, parameters).split(",")]
            return str(delimiter).join(item for item in items if item)
        return str(delimiter).join(resolve(part, parameters) for part in parts)
    raise AssertionError(f"environment value {value!r}: the static checks resolve only Ref and Fn::Join")


# --- sources --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """A project module and its text."""

    module: str
    path: Path
    text: str


def module_path(module: str) -> Path:
    """The file of a project module (``release_steps.prepare`` -> functions/release_steps/prepare.py)."""
    relative = Path(*module.split("."))
    candidate = FUNCTIONS_DIR / relative.with_suffix(".py")
    package = FUNCTIONS_DIR / relative / "__init__.py"
    return package if not candidate.exists() and package.exists() else candidate


def _project_imports(source: str, module: str) -> Iterator[str]:
    package = module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([*package.split(".")[: len(package.split(".")) - node.level + 1], base]).strip(".")
            yield base
            for alias in node.names:
                yield f"{base}.{alias.name}"


def identifiers(source: str) -> set[str]:
    """Every name and attribute a module's code refers to (string literals and comments excluded)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Name):
            found.add(node.id)
        elif isinstance(node, ast.Attribute):
            found.add(node.attr)
        elif isinstance(node, ast.alias):
            found.add(node.asname or node.name.rpartition(".")[2])
    return found


def sources_of(module: str, *, exclude: frozenset[str] = frozenset()) -> list[Source]:
    """A module and every project module it imports, transitively (the code that runs in its Lambda)."""
    seen: dict[str, Source] = {}
    pending = [module]
    while pending:
        name = pending.pop()
        if name in seen or name in exclude or name.split(".")[0] not in PROJECT_PACKAGES:
            continue
        path = module_path(name)
        if not path.exists():
            continue
        text = path.read_text(encoding="utf-8")
        seen[name] = Source(name, path, text)
        pending.extend(_project_imports(text, name))
    return list(seen.values())


def reachable_identifiers(module: str, entry: str = "lambda_handler") -> set[str]:
    """The names referred to by the functions reachable from ``module.entry``, following calls by name.

    A call graph by name (``ecs.describe_service`` reaches every ``describe_service`` the imported modules define)
    over-approximates a little, never under-approximates within the project: a terminal error class named in a
    reachable function (``raise``, a helper that returns one) is one the state can raise.
    """
    defs: dict[str, list[ast.AST]] = {}
    roots: list[ast.AST] = []
    for source in sources_of(module, exclude=frozenset({"release_steps.errors"})):
        for node in ast.walk(ast.parse(source.text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                defs.setdefault(node.name, []).append(node)
                if source.module == module and node.name == entry:
                    roots.append(node)
    found: set[str] = set()
    pending, visited = list(roots), set()
    while pending:
        function = pending.pop()
        if id(function) in visited:
            continue
        visited.add(id(function))
        for node in ast.walk(function):
            name = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else None
            if name is None:
                continue
            found.add(name)
            pending.extend(defs.get(name, []))
    return found


def status_change_event(detail: dict[str, Any], time: str) -> dict[str, Any]:
    """A "Step Functions Execution Status Change" event as EventBridge delivers it, around ``detail``."""
    return {
        "version": "0",
        "id": "315c1398-40ff-a850-213b-158f73e60175",
        "detail-type": "Step Functions Execution Status Change",
        "source": "aws.states",
        "account": "123456789012",
        "time": time,
        "region": "us-east-1",
        "resources": [detail["executionArn"]],
        "detail": detail,
    }
