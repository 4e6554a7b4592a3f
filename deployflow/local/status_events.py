"""What Step Functions sends EventBridge when an execution ends, and its delivery to the rules' Lambda targets.

moto 5.2.5 emits no "Step Functions Execution Status Change" event (its interpreter is LocalStack's, without the
``publish_execution_status_change_event`` that LocalStack's execution has), and its EventBridge delivers to log
groups, archives, SQS and event buses only (a Lambda target raises NotImplementedError). The local stack stands in
for both: once an execution has ended, ``deliver`` builds the event as AWS documents it from DescribeExecution
("EventBridge events for Step Functions execution status changes"), matches it against every rule deployed on the
default bus with moto's own event-pattern matcher, and invokes each matching rule's Lambda targets through the Lambda
API (so the function runs in the local Lambda runtime, as EventBridge would invoke it, but synchronously).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

DETAIL_TYPE = "Step Functions Execution Status Change"


def _epoch_millis(moment: Any) -> int | None:
    if not isinstance(moment, datetime):
        return None
    aware = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
    return int(aware.timestamp() * 1000)


def status_change_event(description: dict[str, Any], account: str, region: str) -> dict[str, Any]:
    """The EventBridge event of an execution's status, from its DescribeExecution (the documented shape: dates in
    epoch milliseconds, input and output as JSON strings, error and cause only when the execution has them)."""
    arn = str(description["executionArn"])
    detail: dict[str, Any] = {
        "executionArn": arn,
        "stateMachineArn": description.get("stateMachineArn"),
        "name": description.get("name", arn.rsplit(":", 1)[-1]),
        "status": description["status"],
        "startDate": _epoch_millis(description.get("startDate")),
        "stopDate": _epoch_millis(description.get("stopDate")),
        "input": description.get("input"),
        "inputDetails": {"included": True},
        "output": description.get("output"),
        "outputDetails": {"included": True} if description.get("output") is not None else None,
        "redriveCount": description.get("redriveCount", 0),
        "redriveStatus": description.get("redriveStatus", "NOT_REDRIVABLE"),
    }
    for key in ("error", "cause"):
        if description.get(key) is not None:
            detail[key] = description[key]
    stopped = description.get("stopDate")
    moment = stopped if isinstance(stopped, datetime) else datetime.now(UTC)
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": DETAIL_TYPE,
        "source": "aws.states",
        "account": account,
        "time": moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [arn],
        "detail": detail,
    }


@dataclass(frozen=True)
class Delivery:
    """One rule's Lambda target invoked with the event: what it returned, or its error."""

    rule: str
    function: str
    response: dict[str, Any]
    error: str | None

    @property
    def message(self) -> str | None:
        """The text the target published (a notifier returns ``message``), if any."""
        text = self.response.get("message")
        return text if isinstance(text, str) else None

    def render(self) -> str:
        """What an operator reads: the rule and its target, then what it published (or its error, or its answer)."""
        published = self.error or self.message or json.dumps(self.response)
        return f"notification ({self.rule} -> {self.function}):\n{published}"


def deliver(events: Any, lambda_client: Any, event: dict[str, Any]) -> list[Delivery]:
    """Invoke the Lambda targets of every rule on the default bus whose pattern matches ``event``."""
    from moto.events.models import EventPattern

    deliveries = []
    for page in events.get_paginator("list_rules").paginate(EventBusName="default"):
        for rule in page["Rules"]:
            if rule.get("State") != "ENABLED" or not rule.get("EventPattern"):
                continue
            if not EventPattern.load(rule["EventPattern"]).matches_event(cast(Any, event)):
                continue
            targets = events.list_targets_by_rule(Rule=rule["Name"], EventBusName="default")["Targets"]
            for target in targets:
                if ":lambda:" not in target["Arn"]:
                    continue
                answer = lambda_client.invoke(FunctionName=target["Arn"], Payload=json.dumps(event).encode())
                payload = json.loads(answer["Payload"].read() or b"null")
                error = answer.get("FunctionError")
                deliveries.append(
                    Delivery(
                        rule=str(rule["Name"]),
                        function=str(target["Arn"]).rsplit(":", 1)[-1],
                        response=payload if isinstance(payload, dict) else {},
                        error=f"{payload.get('errorType')}: {payload.get('errorMessage')}"
                        if error and isinstance(payload, dict)
                        else error,
                    )
                )
    return deliveries
