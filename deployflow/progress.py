"""Follow a Step Functions execution through its history: states entered, durations, retries, the outcome.

Works the same against AWS and the local stack's moto server: it reads only ``GetExecutionHistory`` and
``DescribeExecution``. What the history says (visits, attempts, runs, the state it stopped at) is
``release_steps.execution_history``, shared with the notification of a stopped execution. The renderer turns
progress into lines an operator can watch or paste.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from release_steps.execution_history import (
    TERMINAL_STATUSES,
    ExecutionOutcome,
    ExecutionRun,
    HistoryTracker,
    ProgressEvent,
    StateVisit,
    read_history,
)

from deployflow import interrupts

if TYPE_CHECKING:
    from mypy_boto3_stepfunctions import SFNClient
    from mypy_boto3_stepfunctions.type_defs import DescribeExecutionOutputTypeDef

__all__ = [
    "TERMINAL_STATUSES",
    "ExecutionOutcome",
    "ExecutionRun",
    "HistoryTracker",
    "ProgressEvent",
    "StateVisit",
    "follow",
    "outcome_of",
    "read_history",
]


def follow(
    sfn: SFNClient,
    execution_arn: str,
    on_event: Callable[[ProgressEvent], None] | None = None,
    poll_seconds: float = 0.5,
    timeout_seconds: float = 3600.0,
    tracker: HistoryTracker | None = None,
) -> ExecutionOutcome:
    """Poll an execution until it ends (bounded), reporting progress as it happens.

    ``tracker``: one that followed this execution before (e.g. up to its failure, before a redrive): what it saw is
    not reported again, and the outcome covers the whole history.
    """
    tracker = tracker or HistoryTracker()
    deadline = time.monotonic() + timeout_seconds
    while True:
        description = sfn.describe_execution(executionArn=execution_arn)
        for event in read_history(sfn, execution_arn):
            for progress in tracker.feed(event):
                if on_event is not None:
                    on_event(progress)
        if description["status"] in TERMINAL_STATUSES:
            # One more read: events written between the two calls.
            for event in read_history(sfn, execution_arn):
                for progress in tracker.feed(event):
                    if on_event is not None:
                        on_event(progress)
            return _outcome(execution_arn, description, tracker)
        if time.monotonic() > deadline:
            raise TimeoutError(f"execution {execution_arn} still {description['status']} after {timeout_seconds:.0f}s")
        interrupts.sleep(poll_seconds)


def outcome_of(sfn: SFNClient, execution_arn: str) -> ExecutionOutcome:
    """The outcome of an execution as it stands now (no waiting)."""
    tracker = HistoryTracker()
    for event in read_history(sfn, execution_arn):
        for _ in tracker.feed(event):
            pass
    return _outcome(execution_arn, sfn.describe_execution(executionArn=execution_arn), tracker)


def _outcome(
    execution_arn: str, description: DescribeExecutionOutputTypeDef, tracker: HistoryTracker
) -> ExecutionOutcome:
    output = description.get("output")
    parsed = json.loads(output) if isinstance(output, str) and output else None
    return ExecutionOutcome(
        execution_arn=execution_arn,
        status=description["status"],
        output=parsed if isinstance(parsed, dict) else None,
        error=description.get("error"),
        cause=description.get("cause"),
        visits=list(tracker.visits),
        transitions=tracker.transitions,
        lambda_invocations=tracker.lambda_invocations,
        state_outputs=dict(tracker.outputs),
        start_date=description.get("startDate"),
        stop_date=description.get("stopDate"),
        runs=list(tracker.runs),
        redrive_count=int(description.get("redriveCount") or 0),
    )
