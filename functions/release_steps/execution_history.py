"""What an execution's history says: the states entered, attempts and errors per visit, the state it stopped at,
its real duration, and the redrive command that resumes it there.

Pure (the standard library and release_steps.messages only): the ``deployflow`` CLI (its progress and final report)
and the notification of an execution stopped at its step (notify_stopped) share it, so both say the same thing
about the same execution. A Step Functions client (typed by the mypy-boto3 stubs, imported for type checking
only) is passed in where history is read; nothing here creates one.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from release_steps.messages import cause_message

if TYPE_CHECKING:  # the stubs are a dev dependency: at run time nothing here needs them
    from mypy_boto3_stepfunctions import SFNClient
    from mypy_boto3_stepfunctions.type_defs import HistoryEventTypeDef

TERMINAL_STATUSES = frozenset({"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"})
CAUSE_MAX_CHARS = 1500  # of the cause's message, in a report or a notification
# Reading history backwards for the state an execution stopped at: a page and a bound on the pages read.
TAIL_PAGE_EVENTS = 100
TAIL_MAX_PAGES = 10


def utc(moment: datetime) -> datetime:
    """A timestamp without an offset is UTC (as Step Functions writes them); mixing naive and aware would raise."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def one_line(text: str | None, limit: int = 300) -> str:
    """``text`` on one line (whitespace runs collapsed), cut at ``limit`` characters with an ellipsis."""
    flat = " ".join((text or "").split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


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
    def ended_in_fail_state(self) -> bool:
        """The last state entered is a Fail state: the workflow's own failure path ended it, not a stop at a step."""
        return bool(self.visits) and self.visits[-1].state_type == "Fail"

    @property
    def redrivable(self) -> bool:
        """Stopped at its step (not through the Catch into Release failed): a redrive resumes there."""
        return (
            self.status in {"FAILED", "TIMED_OUT", "ABORTED"}
            and self.caught_state is None
            and not self.ended_in_fail_state
        )

    @property
    def duration_seconds(self) -> float | None:
        """How long it ran: start to stop as the execution reports them (redriven: the sum of its runs, not the
        pauses before each redrive); else first entry to last exit of the visits known."""
        if len(self.runs) > 1:
            return self.running_seconds
        if self.start_date is not None and self.stop_date is not None:
            return (utc(self.stop_date) - utc(self.start_date)).total_seconds()
        first = self.visits[0].entered_at if self.visits else None
        last = max((v.exited_at or v.entered_at for v in self.visits), default=None)
        return (utc(last) - utc(first)).total_seconds() if first and last else None


_TASK_FAIL_TYPES = {"LambdaFunctionFailed", "LambdaFunctionTimedOut", "TaskFailed", "TaskTimedOut"}
_TASK_START_TYPES = {"LambdaFunctionScheduled", "TaskScheduled"}
# The events that end an execution, with DescribeExecution's status (ExecutionRedriven, for one, does not end it).
EXECUTION_END_STATUSES = {
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
        elif etype in EXECUTION_END_STATUSES:
            status = EXECUTION_END_STATUSES[etype]
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

    def feed_all(self, events: Iterable[Mapping[str, Any]]) -> HistoryTracker:
        """Consume events (oldest first) without watching; the tracker, for chaining."""
        for event in events:
            for _ in self.feed(event):
                pass
        return self


def _is_lambda_task(event: Mapping[str, Any]) -> bool:
    details = event.get("taskScheduledEventDetails", {})
    return bool(details.get("resourceType") == "lambda")


def read_history(sfn: SFNClient, execution_arn: str) -> Iterator[Any]:
    """All history events of an execution, oldest first (paginated)."""
    kwargs: dict[str, Any] = {"executionArn": execution_arn, "maxResults": 1000}
    while True:
        page = sfn.get_execution_history(**kwargs)
        yield from page.get("events", [])
        token = page.get("nextToken")
        if not token:
            return
        kwargs["nextToken"] = token


def read_last_visit(
    sfn: SFNClient, execution_arn: str, page_events: int = TAIL_PAGE_EVENTS, max_pages: int = TAIL_MAX_PAGES
) -> tuple[list[HistoryEventTypeDef], bool]:
    """The history from the last state entered to the end, oldest first, read backwards (``reverseOrder``) and
    bounded: at most ``max_pages`` pages of ``page_events``. Returns the events and whether that state's entry was
    reached (False: the bound was met first, or the execution never entered a state)."""
    kwargs: dict[str, Any] = {"executionArn": execution_arn, "maxResults": page_events, "reverseOrder": True}
    newest_first: list[HistoryEventTypeDef] = []
    for _ in range(max_pages):
        page = sfn.get_execution_history(**kwargs)
        for event in page.get("events", []):
            newest_first.append(event)
            if str(event.get("type", "")).endswith("StateEntered"):
                return newest_first[::-1], True
        token = page.get("nextToken")
        if not token:
            break
        kwargs["nextToken"] = token
    return newest_first[::-1], False


def region_of(arn: str) -> str | None:
    """The region an ARN names (``arn:aws:states:<region>:...``), if it names one."""
    parts = arn.split(":")
    return parts[3] if len(parts) > 3 and parts[0] == "arn" and parts[3] else None


def redrive_command(execution_arn: str, aws_options: Sequence[str] = ()) -> str:
    """The exact AWS CLI command that resumes a stopped execution at its failed step."""
    return " ".join(
        ["aws stepfunctions redrive-execution", "--execution-arn", shlex.quote(execution_arn), *aws_options]
    )


def headline(outcome: ExecutionOutcome) -> str:
    """``FAILED at Create Kafka topics in 21.5s`` (``SUCCEEDED in 3.1s, redriven once``): the status, where, how long
    it ran, how often it was redriven."""
    took = outcome.duration_seconds
    head = (
        outcome.status
        if outcome.status == "SUCCEEDED"
        else f"{outcome.status} at {outcome.failed_state or '(unknown state)'}"
    )
    if took is not None:
        head += f" in {took:.1f}s"
    redrives = len(outcome.runs) - 1
    if redrives > 0:
        head += f", redriven {'once' if redrives == 1 else f'{redrives} times'}"
    return head


def failure_lines(outcome: ExecutionOutcome, aws_options: Sequence[str] = ()) -> list[str]:
    """The attempts at the failed state, the error, the cause's message and, for an execution stopped at its step,
    the command that resumes it there. Empty for a success. The workflow's own failure path (Release failed, with
    the summary published) leaves the cause to the summary that follows: its Cause line is the same text, clipped
    the same way, and printed twice it only pushes the summary off the screen."""
    if outcome.status == "SUCCEEDED":
        return []
    lines = []
    visit = outcome.failed_visit
    if visit is not None and visit.attempts:
        lines.append(f"attempts: {visit.attempts} at {visit.name}")
    if outcome.error:
        lines.append(f"error: {outcome.error}")
    elif outcome.status == "TIMED_OUT":
        lines.append("error: States.Timeout (the execution ran past its TimeoutSeconds)")
    else:
        lines.append("error: (none given)")
    if outcome.cause and not (outcome.ended_in_fail_state and outcome.summary is not None):
        lines.append(f"cause: {one_line(cause_message(outcome.cause), CAUSE_MAX_CHARS)}")
    if outcome.redrivable:
        lines.append(
            "next: fix the cause, then resume at this state: " + redrive_command(outcome.execution_arn, aws_options)
        )
    elif outcome.ended_in_fail_state and outcome.summary is None:
        lines.append("next: the workflow published its failure summary; fix the cause, then start a new release")
    return lines
