"""Follow a Step Functions execution through its history: states entered, durations, retries, the outcome.

Works the same against AWS and the local stack's moto server: it reads only ``GetExecutionHistory`` and
``DescribeExecution``. The renderer turns progress into lines an operator can watch or paste.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mypy_boto3_stepfunctions import SFNClient
    from mypy_boto3_stepfunctions.type_defs import DescribeExecutionOutputTypeDef, HistoryEventTypeDef

TERMINAL_STATUSES = {"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"}


@dataclass
class StateVisit:
    """One entry into a state: when, how long, how many attempts, what failed on the way."""

    name: str
    state_type: str
    entered_at: datetime
    exited_at: datetime | None = None
    attempts: int = 0
    errors: list[tuple[str, str]] = field(default_factory=list)
    visit_number: int = 1
    output: str | None = None
    stopped_at: datetime | None = None  # the execution ended while in this state (it never exited)

    @property
    def duration_seconds(self) -> float | None:
        ended = self.exited_at or self.stopped_at
        if ended is None:
            return None
        return (ended - self.entered_at).total_seconds()

    @property
    def retries(self) -> int:
        return max(0, self.attempts - 1)

    @property
    def failed(self) -> bool:
        """Its last attempt failed (a Catch moved on, or the execution ended): not a retried, then good, state."""
        return bool(self.errors) and len(self.errors) >= self.attempts


@dataclass
class ExecutionRun:
    """One run of an execution: from its start, or from a redrive, to the end event that stopped it."""

    started_at: datetime
    redrive: int = 0  # 0: the first run; n: the run the n-th redrive started
    ended_at: datetime | None = None
    status: str | None = None
    error: str | None = None
    stopped_in: str | None = None  # the state it stopped in (where a redrive resumes), if it stopped in one

    @property
    def seconds(self) -> float | None:
        return None if self.ended_at is None else (self.ended_at - self.started_at).total_seconds()


@dataclass
class ProgressEvent:
    """What the watcher saw happen: ``entered``, ``exited``, ``retry``, ``failed``, ``finished`` or ``redriven``; or
    ``command``: a command the caller ran on the execution (a local scenario's redrive), to show where it happened."""

    kind: str
    visit: StateVisit | None = None
    error: str | None = None
    cause: str | None = None
    status: str | None = None
    at: datetime | None = None  # the history event's time (a visit's own times are on the visit)
    redrive: int | None = None  # ``redriven``: the redrive's number (redriveCount)
    command: str | None = None  # ``command``: the command line


@dataclass
class ExecutionOutcome:
    """The end of an execution: status, output (the deployment record) or error and cause, and the path taken."""

    execution_arn: str
    status: str
    output: dict[str, Any] | None
    error: str | None
    cause: str | None
    visits: list[StateVisit]
    transitions: int
    lambda_invocations: int
    state_outputs: dict[str, str] = field(default_factory=dict)
    start_date: datetime | None = None
    stop_date: datetime | None = None
    runs: list[ExecutionRun] = field(default_factory=list)
    redrive_count: int = 0

    @property
    def running_seconds(self) -> float | None:
        """How long it ran: the sum of its runs (the first, then one per redrive), not the pauses between them."""
        seconds = [run.seconds for run in self.runs]
        if not seconds or any(s is None for s in seconds):
            return None
        return sum(s for s in seconds if s is not None)

    @property
    def path(self) -> list[str]:
        """The states entered, in order (a wait loop appears once per turn)."""
        return [v.name for v in self.visits]

    @property
    def summary(self) -> str | None:
        """The release summary the workflow published (a record step's output: ``record.summary``), if any."""
        for visit in reversed(self.visits):
            try:
                text = json.loads(visit.output or "").get("record", {}).get("summary")
            except (ValueError, AttributeError):
                continue
            if isinstance(text, str):
                return text
        return None

    @property
    def caught_state(self) -> str | None:
        """The state whose terminal error a Catch took: the ASL's Pass after the Catch writes it to ``failed.state``."""
        for visit in self.visits:
            try:
                name = json.loads(visit.output or "").get("failed", {}).get("state")
            except (ValueError, AttributeError):
                continue
            if isinstance(name, str):
                return name
        return None

    @property
    def failed_state(self) -> str | None:
        """The state whose failure ended the release: the one the ASL named after a Catch or, for an uncaught
        failure (the execution stopped at its step), the last state entered."""
        caught = self.caught_state
        if caught is not None:
            return caught
        if self.status in TERMINAL_STATUSES - {"SUCCEEDED"} and self.visits:
            return self.visits[-1].name
        return None

    @property
    def failed_visit(self) -> StateVisit | None:
        """The last visit of the failed state (its attempts and errors)."""
        name = self.failed_state
        return next((v for v in reversed(self.visits) if v.name == name), None)

    @property
    def redrivable(self) -> bool:
        """Stopped at its step (not through the Catch into Release failed): a redrive resumes there."""
        return self.status in {"FAILED", "TIMED_OUT", "ABORTED"} and self.caught_state is None


_TASK_FAIL_TYPES = {"LambdaFunctionFailed", "LambdaFunctionTimedOut", "TaskFailed", "TaskTimedOut"}
_TASK_START_TYPES = {"LambdaFunctionScheduled", "TaskScheduled"}
# The events that end an execution, with DescribeExecution's status (ExecutionRedriven, for one, does not end it).
_EXECUTION_END_STATUSES = {
    "ExecutionSucceeded": "SUCCEEDED",
    "ExecutionFailed": "FAILED",
    "ExecutionTimedOut": "TIMED_OUT",
    "ExecutionAborted": "ABORTED",
}


class HistoryTracker:
    """Turns history events, fed in order, into state visits and progress events.

    A redriven execution's history goes on after its end event: ``ExecutionRedriven``, then the events of the state it
    stopped in (entered again: a new visit of that state) and of the states after it. Each run (the first, then one per
    redrive) is in ``runs``; a state the execution stopped in gets ``stopped_at``, so its duration ends there.
    """

    def __init__(self) -> None:
        self.visits: list[StateVisit] = []
        self.seen_ids: set[int] = set()
        self.transitions = 0
        self.lambda_invocations = 0
        self._open: StateVisit | None = None
        self._counts: dict[str, int] = {}
        self.outputs: dict[str, str] = {}
        self.runs: list[ExecutionRun] = []
        self._resuming: StateVisit | None = (
            None  # after ExecutionRedriven: the state it stopped in, until one is entered
        )

    def feed(self, event: Mapping[str, Any]) -> Iterator[ProgressEvent]:
        """Consume one history event; yield what an operator should see."""
        event_id = int(event.get("id", 0))
        if event_id in self.seen_ids:
            return
        self.seen_ids.add(event_id)
        etype: str = event.get("type", "")
        ts: datetime = event.get("timestamp") or datetime.now().astimezone()
        if not self.runs and etype != "ExecutionRedriven":
            self.runs.append(ExecutionRun(ts))
        if etype.endswith("StateEntered"):
            self._resuming = None
            details = event.get("stateEnteredEventDetails", {})
            name = details.get("name", "?")
            self._counts[name] = self._counts.get(name, 0) + 1
            visit = StateVisit(name, etype.removesuffix("StateEntered"), ts, visit_number=self._counts[name])
            self.visits.append(visit)
            self.transitions += 1
            self._open = visit
            yield ProgressEvent("entered", visit)
        elif etype.endswith("StateExited"):
            exited = self._open
            details = event.get("stateExitedEventDetails", {})
            if isinstance(details.get("output"), str):
                self.outputs[str(details.get("name"))] = details["output"]
            if exited is not None:
                exited.exited_at = ts
                exited.output = details.get("output") if isinstance(details.get("output"), str) else None
                self._open = None
                yield ProgressEvent("exited", exited)
        elif etype in _TASK_START_TYPES:
            if etype == "LambdaFunctionScheduled" or _is_lambda_task(event):
                self.lambda_invocations += 1
            if self._open is None and self._resuming is not None:
                # A redrive that reschedules the stopped state's task without entering the state again: it goes on.
                self._open, self._resuming = self._resuming, None
                self._open.stopped_at = None
            if self._open is not None:
                self._open.attempts += 1
                if self._open.attempts > 1:
                    error, cause = self._open.errors[-1] if self._open.errors else ("?", "")
                    yield ProgressEvent("retry", self._open, error=error, cause=cause, at=ts)
        elif etype in _TASK_FAIL_TYPES:
            details = next((v for k, v in event.items() if k.endswith("EventDetails") and isinstance(v, dict)), {})
            error, cause = str(details.get("error", etype)), str(details.get("cause", ""))
            if self._open is not None:
                self._open.errors.append((error, cause))
            yield ProgressEvent("failed", self._open, error=error, cause=cause, at=ts)
        elif etype in _EXECUTION_END_STATUSES:
            status = _EXECUTION_END_STATUSES[etype]
            run = self.runs[-1]
            run.ended_at, run.status = ts, status
            details = event.get("executionFailedEventDetails") or {}
            run.error = details.get("error") if isinstance(details.get("error"), str) else None
            if self._open is not None:
                self._open.stopped_at = ts
                run.stopped_in = self._open.name
                self._resuming, self._open = self._open, None
            yield ProgressEvent("finished", status=status, at=ts)
        elif etype == "ExecutionRedriven":
            count = (event.get("executionRedrivenEventDetails") or {}).get("redriveCount")
            redrive = int(count) if isinstance(count, int) else len(self.runs)
            self.runs.append(ExecutionRun(ts, redrive=redrive))
            yield ProgressEvent("redriven", at=ts, redrive=redrive)


def _is_lambda_task(event: Mapping[str, Any]) -> bool:
    details = event.get("taskScheduledEventDetails", {})
    return bool(details.get("resourceType") == "lambda")


def read_history(sfn: SFNClient, execution_arn: str) -> Iterator[HistoryEventTypeDef]:
    """All history events of an execution, oldest first (paginated)."""
    kwargs: dict[str, Any] = {"executionArn": execution_arn, "maxResults": 1000}
    while True:
        page = sfn.get_execution_history(**kwargs)
        yield from page.get("events", [])
        token = page.get("nextToken")
        if not token:
            return
        kwargs["nextToken"] = token


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
        time.sleep(poll_seconds)


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
