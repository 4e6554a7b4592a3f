"""Helpers for the canary tests: deploy a canary handler, run an ASL definition to its end."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

from deployflow.local.aws import LocalAws, create_function
from tests.fixtures.executions import execution_history, wait_for_execution

if TYPE_CHECKING:
    from mypy_boto3_stepfunctions.type_defs import HistoryEventTypeDef

ROLE_ARN = "arn:aws:iam::123456789012:role/deployflow-canary"


@dataclass(frozen=True)
class Run:
    """An execution that ended: its description and its history."""

    description: dict[str, Any]
    events: list[HistoryEventTypeDef]

    @property
    def status(self) -> str:
        return str(self.description["status"])

    @property
    def output(self) -> Any:
        return json.loads(self.description["output"]) if "output" in self.description else None

    def of_type(self, event_type: str) -> list[HistoryEventTypeDef]:
        return [e for e in self.events if e["type"] == event_type]

    def explain(self) -> str:
        lines = [f"status={self.status} error={self.description.get('error')} cause={self.description.get('cause')}"]
        lines += [
            f"  {e['id']:>3} {e['type']} {json.dumps({k: v for k, v in e.items() if k.endswith('Details')})[:300]}"
            for e in self.events
        ]
        return "\n".join(lines)


Deploy = Callable[..., str]
Execute = Callable[..., Run]


@pytest.fixture
def deploy(any_local_aws: LocalAws) -> Deploy:
    """Create a Lambda function running ``tests.canary.handlers.<handler>``; returns its ARN."""

    def _deploy(handler: str, *, name: str | None = None, environment: Mapping[str, str] | None = None) -> str:
        return create_function(
            any_local_aws,
            name or handler.replace("_", "-"),
            f"tests.canary.handlers.{handler}",
            environment=environment,
        )

    return _deploy


def run_definition(
    aws: LocalAws,
    definition: Mapping[str, Any],
    execution_input: Any = None,
    *,
    name: str | None = None,
    timeout: float = 60,
) -> Run:
    """Create a state machine from ``definition``, start it, wait for its end."""
    sfn = aws.client("stepfunctions")
    machine = sfn.create_state_machine(
        name=f"canary-{uuid.uuid4().hex[:12]}", definition=json.dumps(definition), roleArn=ROLE_ARN
    )["stateMachineArn"]
    kwargs: dict[str, Any] = {"stateMachineArn": machine, "input": json.dumps(execution_input or {})}
    if name is not None:
        kwargs["name"] = name
    arn = sfn.start_execution(**kwargs)["executionArn"]
    description = wait_for_execution(sfn, arn, timeout=timeout)
    return Run(description=description, events=execution_history(sfn, arn))


@pytest.fixture
def execute(any_local_aws: LocalAws) -> Execute:
    """Run an ASL definition on the local AWS under test to its end."""

    def _execute(definition: Mapping[str, Any], execution_input: Any = None, **kwargs: Any) -> Run:
        return run_definition(any_local_aws, definition, execution_input, **kwargs)

    return _execute
