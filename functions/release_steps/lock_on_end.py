"""Release lock on end: an execution that was aborted or timed out gives the one-release lock back.

ReleaseLockOnEndRule (EventBridge, "Step Functions Execution Status Change", status ABORTED or TIMED_OUT) invokes
it: neither end runs the workflow's own release states. It deletes the lock only if that execution holds it (a
conditional delete), and records the release in the lock's history. A FAILED execution is not its business: an
execution that failed at a step keeps the lock for its redrive, one that failed through the failure path gave it
back itself.
"""

from __future__ import annotations

from typing import Any, Literal

from aws_lambda_powertools.utilities.typing import LambdaContext

from release_steps import clients, config, lock
from release_steps.aws_errors import translate_throttling
from release_steps.models import Model
from release_steps.observability import logger, parse_event, step
from release_steps.timeutil import to_iso, utc_now

STEP_NAME = "Release lock on end"


class ExecutionStatusDetail(Model):
    """The part of the event's detail the release needs."""

    execution_arn: str
    state_machine_arn: str
    name: str
    status: Literal["ABORTED", "TIMED_OUT"]


class ExecutionStatusChange(Model):
    """An EventBridge "Step Functions Execution Status Change" event (only ``detail`` is read)."""

    detail: ExecutionStatusDetail


def release_on_end(event: ExecutionStatusChange, table: str, dynamodb: Any) -> dict[str, Any]:
    """Give the lock back if the ended execution holds it; what was done."""
    detail = event.detail
    history = {
        "at": to_iso(utc_now()),
        "event": f"released: the execution ended {detail.status}",
        "by": "ReleaseLockOnEndRule",
        "executionName": detail.name,
    }
    with translate_throttling("dynamodb:TransactWriteItems"):
        released = lock.release(dynamodb, table, detail.execution_arn, history)
    if released:
        logger.info("release lock given back", extra={"execution": detail.execution_arn, "status": detail.status})
    else:
        logger.info("the ended execution did not hold the release lock", extra={"execution": detail.execution_arn})
    return {"executionArn": detail.execution_arn, "status": detail.status, "released": released}


@step(STEP_NAME)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Release lock on end."""
    status_change = parse_event(ExecutionStatusChange, event, "Step Functions status-change event")
    logger.set_correlation_id(status_change.detail.execution_arn)
    return release_on_end(status_change, config.lock_settings().table_name, clients.dynamodb())
