"""Synthetic Step Functions history events, shaped as GetExecutionHistory returns them (see deployflow.local.aws)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

T0 = datetime(2026, 11, 25, 14, 0, 0, tzinfo=UTC)
EXECUTION_START = "2026-11-25T14:00:00.000Z"


class History:
    """Builds a history oldest first: ids 1..n, one second per event unless told otherwise."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.clock = T0

    def _add(self, event_type: str, seconds: float = 1.0, **details: Any) -> dict[str, Any]:
        self.clock += timedelta(seconds=seconds)
        event = {"id": len(self.events) + 1, "type": event_type, "timestamp": self.clock, **details}
        self.events.append(event)
        return event

    def started(self) -> History:
        self._add("ExecutionStarted", seconds=0, executionStartedEventDetails={"input": "{}"})
        return self

    def entered(self, name: str, state_type: str = "Task") -> History:
        self._add(f"{state_type}StateEntered", stateEnteredEventDetails={"name": name, "input": "{}"})
        return self

    def exited(self, name: str, output: Any = None, state_type: str = "Task", seconds: float = 1.0) -> History:
        text = json.dumps(output if output is not None else {})
        self._add(f"{state_type}StateExited", seconds=seconds, stateExitedEventDetails={"name": name, "output": text})
        return self

    def lambda_attempt(self, error: str | None = None, message: str = "") -> History:
        """One Lambda invocation: Scheduled, Started, then Succeeded or Failed with the runtime's error payload."""
        self._add("LambdaFunctionScheduled", seconds=0.1, lambdaFunctionScheduledEventDetails={"resource": "fn"})
        self._add("LambdaFunctionStarted", seconds=0.1)
        if error is None:
            self._add("LambdaFunctionSucceeded", seconds=0.1, lambdaFunctionSucceededEventDetails={"output": "{}"})
        else:
            cause = json.dumps({"errorType": error, "errorMessage": message, "stackTrace": []})
            self._add(
                "LambdaFunctionFailed", seconds=0.1, lambdaFunctionFailedEventDetails={"error": error, "cause": cause}
            )
        return self

    def task_attempt(self, resource_type: str = "sns", error: str | None = None, cause: str = "") -> History:
        """One service-integration Task attempt (``arn:aws:states:::<service>:<action>``)."""
        self._add("TaskScheduled", seconds=0.1, taskScheduledEventDetails={"resourceType": resource_type})
        self._add("TaskStarted", seconds=0.1)
        if error is None:
            self._add("TaskSucceeded", seconds=0.1)
        else:
            self._add("TaskFailed", seconds=0.1, taskFailedEventDetails={"error": error, "cause": cause})
        return self

    def task(self, name: str, output: Any = None) -> History:
        return self.entered(name).lambda_attempt().exited(name, output)

    def ended(self, event_type: str, seconds: float = 0.1, **details: Any) -> History:
        self._add(event_type, seconds=seconds, **details)
        return self


def rollout_output(deadline_seconds: float, checks: int) -> dict[str, Any]:
    """The state after Check services: the execution's start time and the rollout's deadline."""
    deadline = (T0 + timedelta(seconds=deadline_seconds)).isoformat().replace("+00:00", "Z")
    return {
        "execution": {"startTime": EXECUTION_START},
        "rollout": {"services": [], "done": checks > 1, "deadline": deadline, "checks": checks},
    }


def kafka_outage_then_redrive(*, fails_again: bool = False) -> History:
    """Create Kafka topics fails its four attempts (uncaught: the execution stops there), then a redrive enters it
    again: it succeeds and the release goes on, or (``fails_again``) it fails twice more."""
    history = History().started().task("Verify schema").entered("Create Kafka topics")
    for _ in range(4):
        history.lambda_attempt("KafkaUnreachableError", "no broker answered")
    history.ended("ExecutionFailed", executionFailedEventDetails={"error": "KafkaUnreachableError"})
    history.ended("ExecutionRedriven", seconds=30.0, executionRedrivenEventDetails={"redriveCount": 1})
    history.entered("Create Kafka topics")
    if fails_again:
        history.lambda_attempt("KafkaUnreachableError", "still no broker").lambda_attempt("KafkaUnreachableError")
        return history.ended("ExecutionFailed", executionFailedEventDetails={"error": "KafkaUnreachableError"})
    history.lambda_attempt().exited("Create Kafka topics").task("Restart services")
    return history.ended("ExecutionSucceeded")
