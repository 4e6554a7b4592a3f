"""Read the SAM template as the local stack's source of truth: function handlers, their environment, and the
state machine's DefinitionSubstitutions, resolved with local parameter values.

Only the intrinsics the template uses for these values are resolved (Ref, Sub, Join, If, Select, GetAtt of a
resource the caller names); anything else is an error that names the expression, so a template change the local
stack cannot follow fails loudly instead of silently running with different wiring.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from cfnlint.decode import cfn_yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = REPO_ROOT / "template.yaml"
ASL_PATH = REPO_ROOT / "statemachine" / "deploy.asl.json"


class TemplateError(Exception):
    """The template holds something the local stack cannot resolve."""


@dataclass(frozen=True)
class FunctionSpec:
    """One Lambda function as the template declares it."""

    logical_id: str
    handler: str
    timeout: int
    environment: dict[str, str]
    memory_size: int = 128
    runtime: str = "python3.13"


class SamTemplate:
    """The parsed template plus the parameter values and pseudo parameters to resolve it with."""

    def __init__(self, parameters: Mapping[str, str], attributes: Mapping[str, str], path: Path = TEMPLATE_PATH):
        self.document: dict[str, Any] = cfn_yaml.load(str(path))
        declared = self.document.get("Parameters", {})
        unknown = sorted(set(parameters) - set(declared))
        if unknown:
            raise TemplateError(f"parameters not declared in {path.name}: {', '.join(unknown)}")
        self.parameters: dict[str, Any] = {}
        for name, spec in declared.items():
            value: Any = parameters.get(name, spec.get("Default"))
            if value is None:
                raise TemplateError(f"parameter {name} has no default and no local value")
            if str(spec.get("Type", "")).startswith("CommaDelimitedList") or spec.get("Type") == "List<String>":
                value = [v.strip() for v in str(value).split(",") if v.strip()] if isinstance(value, str) else value
            self.parameters[name] = value
        self.attributes = dict(attributes)
        self.conditions: dict[str, bool] = {}

    # --- what the local stack needs --------------------------------------------------------------------------

    def functions(self) -> list[FunctionSpec]:
        """Every AWS::Serverless::Function with its Globals applied and its environment resolved."""
        globals_fn = self.document.get("Globals", {}).get("Function", {})
        global_env = globals_fn.get("Environment", {}).get("Variables", {})
        specs = []
        for logical_id, resource in self.document["Resources"].items():
            if resource.get("Type") != "AWS::Serverless::Function":
                continue
            props = resource.get("Properties", {})
            env = {**global_env, **props.get("Environment", {}).get("Variables", {})}
            specs.append(
                FunctionSpec(
                    logical_id=logical_id,
                    handler=str(props.get("Handler", globals_fn.get("Handler"))),
                    timeout=int(props.get("Timeout", globals_fn.get("Timeout", 3))),
                    memory_size=int(props.get("MemorySize", globals_fn.get("MemorySize", 128))),
                    runtime=str(props.get("Runtime", globals_fn.get("Runtime", "python3.13"))),
                    environment={k: _as_env(self.resolve(v, f"{logical_id}.Environment.{k}")) for k, v in env.items()},
                )
            )
        return specs

    def definition_substitutions(self) -> dict[str, str]:
        """The state machine's DefinitionSubstitutions, resolved."""
        for logical_id, resource in self.document["Resources"].items():
            if resource.get("Type") == "AWS::Serverless::StateMachine":
                subs = resource.get("Properties", {}).get("DefinitionSubstitutions", {})
                return {k: str(self.resolve(v, f"{logical_id}.DefinitionSubstitutions.{k}")) for k, v in subs.items()}
        raise TemplateError("the template declares no AWS::Serverless::StateMachine")

    # --- intrinsics ------------------------------------------------------------------------------------------

    def resolve(self, value: Any, where: str) -> Any:
        """Resolve the intrinsic functions in a value."""
        if isinstance(value, list):
            return [self.resolve(v, where) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) != 1:
            return {k: self.resolve(v, where) for k, v in value.items()}
        ((fn, arg),) = value.items()
        if fn == "Ref":
            return self._ref(str(arg), where)
        if fn == "Fn::GetAtt":
            target = ".".join(arg) if isinstance(arg, list) else str(arg)
            if target not in self.attributes:
                raise TemplateError(f"{where}: no local value for !GetAtt {target}")
            return self.attributes[target]
        if fn == "Fn::Join":
            sep, items = arg
            resolved = self.resolve(items, where)
            return str(sep).join(str(i) for i in (resolved if isinstance(resolved, list) else [resolved]))
        if fn == "Fn::Sub":
            text, extra = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
            variables = {k: self.resolve(v, where) for k, v in extra.items()}
            return re.sub(
                r"\$\{([^}!]+)\}",
                lambda m: str(variables[m.group(1)] if m.group(1) in variables else self._ref(m.group(1), where)),
                text,
            )
        if fn == "Fn::If":
            name, when_true, when_false = arg
            return self.resolve(when_true if self._condition(name, where) else when_false, where)
        if fn == "Fn::Select":
            index, items = arg
            return self.resolve(items, where)[int(self.resolve(index, where))]
        if fn.startswith("Fn::") or fn == "Condition":
            raise TemplateError(f"{where}: the local stack cannot resolve {fn}")
        return {k: self.resolve(v, where) for k, v in value.items()}

    def _ref(self, name: str, where: str) -> Any:
        pseudo = {
            "AWS::Region": self.attributes.get("AWS::Region", "us-east-1"),
            "AWS::AccountId": self.attributes.get("AWS::AccountId", "123456789012"),
            "AWS::Partition": "aws",
            "AWS::StackName": self.attributes.get("AWS::StackName", "deployflow-local"),
            "AWS::NoValue": "",
        }
        if name in pseudo:
            return pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        if name in self.attributes:
            return self.attributes[name]
        raise TemplateError(f"{where}: no local value for !Ref {name}")

    def _condition(self, name: str, where: str) -> bool:
        if name not in self.conditions:
            expression = self.document.get("Conditions", {}).get(name)
            if expression is None:
                raise TemplateError(f"{where}: unknown condition {name}")
            self.conditions[name] = bool(self._evaluate(expression, where))
        return self.conditions[name]

    def _evaluate(self, expression: Any, where: str) -> Any:
        if isinstance(expression, dict) and len(expression) == 1:
            ((fn, arg),) = expression.items()
            if fn == "Fn::Equals":
                left, right = (self._evaluate(a, where) for a in arg)
                return str(left) == str(right)
            if fn == "Fn::Not":
                return not self._evaluate(arg[0], where)
            if fn == "Fn::And":
                return all(self._evaluate(a, where) for a in arg)
            if fn == "Fn::Or":
                return any(self._evaluate(a, where) for a in arg)
            if fn == "Condition":
                return self._condition(str(arg), where)
        return self.resolve(expression, where)


def _as_env(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)


@cache
def state_of(function_logical_id: str) -> str:
    """The ASL state whose Task invokes a template function (``CreateTopicsFunction`` -> ``Create Kafka topics``):
    the ASL's ``${XArn}`` Resource and the template's DefinitionSubstitutions, so no state name is written twice."""
    document = cfn_yaml.load(str(TEMPLATE_PATH))
    machines = [r for r in document["Resources"].values() if r.get("Type") == "AWS::Serverless::StateMachine"]
    substitutions = machines[0]["Properties"]["DefinitionSubstitutions"]
    keys = {
        k
        for k, v in substitutions.items()
        if isinstance(v, dict) and v.get("Fn::GetAtt") == [function_logical_id, "Arn"]
    }
    states = json.loads(ASL_PATH.read_text(encoding="utf-8"))["States"]
    found = [name for name, state in states.items() if state.get("Resource") in {"${" + k + "}" for k in keys}]
    if len(found) != 1:
        raise TemplateError(f"{function_logical_id}: {len(found)} ASL states invoke it ({found}), expected one")
    return str(found[0])


def catch_target(state: str) -> str:
    """Where a state's Catch goes (the Pass that names the failed state)."""
    states = json.loads(ASL_PATH.read_text(encoding="utf-8"))["States"]
    targets = {catcher["Next"] for catcher in states[state].get("Catch", [])}
    if len(targets) != 1:
        raise TemplateError(f"{state}: its Catch goes to {sorted(targets)}, expected one state")
    return str(targets.pop())
