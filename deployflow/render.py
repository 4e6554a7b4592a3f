"""Plain-text rendering of a release's progress and outcome: lines to watch live, and a report to paste."""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

from release_steps.execution_history import (
    ExecutionOutcome,
    ExecutionRun,
    ProgressEvent,
    StateVisit,
    failure_lines,
    headline,
    one_line,
    redrive_command,
    utc,
)
from release_steps.messages import cause_message
from rich.console import Console
from rich.live import Live
from rich.text import Text

__all__ = [
    "ProgressPrinter",
    "aws_cli_options",
    "deadline_bar",
    "outcome_report",
    "redrive_command",
    "timings_table",
]

# The wait loops: which part of the state holds the deadline, to draw how much of the bound is used.
_LOOP_STATES = {"Check migration task": "migration", "Check services": "rollout"}
_BAR_WIDTH = 20
_MARKS = {"▶": "bold cyan", "✓": "green", "✗": "bold red", "↻": "yellow", "■": "bold", "⟲": "magenta", "⤼": "bold cyan"}


def _clock(moment: datetime | None) -> str:
    return (moment or datetime.now(UTC)).astimezone(UTC).strftime("%H:%M:%SZ")


def deadline_bar(visit_output: str | None, part: str, at: datetime | None = None) -> str:
    """``[#####...............] 25% of the deadline, check 3`` from a loop state's output, or ''.

    ``at`` is the moment drawn (the check's exit time), so a history replayed later draws what was used then.
    """
    try:
        state = json.loads(visit_output or "")
        section: dict[str, Any] = state.get(part) or {}
        deadline = utc(datetime.fromisoformat(str(section["deadline"]).replace("Z", "+00:00")))
        started_raw = section.get("startedAt") or state.get("execution", {}).get("startTime")
        started = utc(datetime.fromisoformat(str(started_raw).replace("Z", "+00:00")))
    except (ValueError, KeyError, TypeError, AttributeError):
        return ""
    total = (deadline - started).total_seconds()
    if total <= 0:
        return ""
    used = min(1.0, max(0.0, (utc(at or datetime.now(UTC)) - started).total_seconds() / total))
    filled = round(used * _BAR_WIDTH)
    checks = section.get("checks")
    suffix = f", check {checks}" if isinstance(checks, int) else ""
    return f"[{'#' * filled}{'.' * (_BAR_WIDTH - filled)}] {used:4.0%} of the deadline{suffix}"


def _still_polling(visit: StateVisit, part: str) -> bool:
    """A poll loop's check that found the work not done yet (the loop goes round again)."""
    try:
        section = json.loads(visit.output or "").get(part)
    except (ValueError, AttributeError):
        return False
    return isinstance(section, dict) and section.get("done") is False


def _names_a_failed_state(output: str | None) -> bool:
    """The output of the Pass after a Catch: it only records which state failed."""
    try:
        failed = json.loads(output or "").get("failed")
    except (ValueError, AttributeError):
        return False
    return isinstance(failed, dict) and "state" in failed


class ProgressPrinter:
    """Prints a release's progress as it happens: a line per state entered, finished, retried or failed, at the
    history's own times (UTC, labelled ``Z``), so the lines come in execution order.

    On a terminal: colour, and a poll loop drawn in place on one line (the check count and the deadline bar move).
    Otherwise (a pipe, a CI log) or with NO_COLOR set: plain lines without escapes, one per state, not per poll.
    """

    def __init__(self, out: TextIO, show_waits: bool = False, *, terminal: bool | None = None) -> None:
        self.out = out
        self.show_waits = show_waits
        plain = terminal is False or bool(os.environ.get("NO_COLOR"))  # https://no-color.org: no styling at all
        self.console = Console(
            file=out,
            force_terminal=False if plain else terminal,
            highlight=False,
            markup=False,
            emoji=False,
            soft_wrap=True,
        )
        self.redraw = self.console.is_terminal
        self._live: Live | None = None

    def __call__(self, event: ProgressEvent) -> None:
        visit = event.visit
        if event.kind == "entered" and visit is not None:
            if visit.state_type in {"Choice", "Pass"} or (visit.state_type == "Wait" and not self.show_waits):
                return
            if visit.visit_number > 1 and visit.name in _LOOP_STATES:
                self._poll(visit.entered_at, f"{visit.name}: check {visit.visit_number}")
                return
            turn = f" (#{visit.visit_number})" if visit.visit_number > 1 else ""
            self._line(visit.entered_at, "▶", f"{visit.name}{turn}")
        elif event.kind == "exited" and visit is not None:
            if visit.state_type not in {"Task", "Pass"} or _names_a_failed_state(visit.output):
                return  # the Pass after a Catch only records which state failed: the ✗ line above said so
            took = f"{visit.duration_seconds:.2f}s" if visit.duration_seconds is not None else ""
            retries = f", {visit.retries} retr{'y' if visit.retries == 1 else 'ies'}" if visit.retries else ""
            if visit.failed:
                # Every attempt failed and a Catch moved on: the state exits, but it did not succeed.
                error = visit.errors[-1][0]
                self._line(visit.exited_at, "✗", f"{visit.name}  {took}{retries}  failed with {error}, caught")
                return
            part = _LOOP_STATES.get(visit.name)
            bar = deadline_bar(visit.output, part, visit.exited_at) if part else ""
            if part and _still_polling(visit, part):
                self._poll(visit.exited_at, f"{visit.name}: not done yet  {bar}")
                return
            self._line(visit.exited_at, "✓", f"{visit.name}  {took}{retries}  {bar}".rstrip())
        elif event.kind == "retry" and visit is not None:
            self._line(event.at, "↻", f"{visit.name}: attempt {visit.attempts} after {event.error}")
        elif event.kind == "failed":
            name = visit.name if visit is not None else "?"
            self._line(event.at, "✗", f"{name}: {event.error}: {one_line(cause_message(event.cause), 240)}")
        elif event.kind == "finished":
            self._line(event.at, "■", f"execution {event.status}")
            self.close()
        elif event.kind == "redriven":
            self._line(event.at, "⤼", f"execution redriven (redrive {event.redrive}): resumes where it stopped")
        elif event.kind == "command":
            self._line(event.at, "$", event.command or "")

    def close(self) -> None:
        """Take the in-place line away (the watching ended, or an interrupt)."""
        if self._live is not None:
            self._live.stop()
            self._live = None

    def _text(self, moment: datetime | None, mark: str, text: str) -> Text:
        return Text.assemble((f"  {_clock(moment)}  ", "dim"), (mark, _MARKS.get(mark, "")), f" {text}")

    def _line(self, moment: datetime | None, mark: str, text: str) -> None:
        self.close()
        self.console.print(self._text(moment, mark, text))
        self.out.flush()

    def _poll(self, moment: datetime | None, text: str) -> None:
        if not self.redraw:
            return  # plain output: a poll loop is its first and its last line
        line = self._text(moment, "⟲", text)
        if self._live is None:
            self._live = Live(
                line,
                console=self.console,
                auto_refresh=False,
                transient=True,
                redirect_stdout=False,
                redirect_stderr=False,
            )
            self._live.start(refresh=True)
        else:
            self._live.update(line, refresh=True)


def aws_cli_options(region: str | None, profile: str | None, endpoint_url: str | None) -> list[str]:
    """The --region / --profile / --endpoint-url the deployflow CLI was given, for a command to paste."""
    options: list[str] = []
    for flag, value in (("--region", region), ("--profile", profile), ("--endpoint-url", endpoint_url)):
        if value:
            options += [flag, shlex.quote(value)]
    return options


def outcome_report(outcome: ExecutionOutcome, aws_options: Sequence[str] = ()) -> str:
    """The end of an execution in a few lines: status, timings, failure or summary.

    A failure the state machine caught has its summary (from Summarize failure) below. One it did not catch (a
    transient error after its retries, a timeout, a bug) stopped the execution at its step: the report names the
    state, error, cause, attempts and the redrive command that resumes there (execution_history's lines, the same
    the notification of a stopped execution publishes).
    """
    lines = [
        f"{headline(outcome)}: {outcome.transitions} state transitions, "
        f"{outcome.lambda_invocations} Lambda invocations",
        f"execution: {outcome.execution_arn}",
    ]
    if len(outcome.runs) > 1:
        lines.append("runs: " + "; ".join(_run_text(run) for run in outcome.runs))
    lines += failure_lines(outcome, aws_options)
    summary = outcome.summary
    if summary:
        lines.append("")
        lines.append(summary)
    return "\n".join(lines)


def _run_text(run: ExecutionRun) -> str:
    """``redrive 1 14:02:40Z-14:02:42Z SUCCEEDED`` / ``first 14:02:07Z-14:02:12Z FAILED at X (Error)``."""
    name = f"redrive {run.redrive}" if run.redrive else "first"
    text = f"{name} {_clock(run.started_at)}-{_clock(run.ended_at) if run.ended_at else '…'} {run.status or 'RUNNING'}"
    if run.status not in (None, "SUCCEEDED") and run.stopped_in:
        text += f" at {run.stopped_in}"
    return text + (f" ({run.error})" if run.error and run.status != "SUCCEEDED" else "")


def timings_table(outcome: ExecutionOutcome) -> list[tuple[str, int, float]]:
    """Per state: visits and total seconds, in order of first entry."""
    table: dict[str, list[float]] = {}
    for visit in outcome.visits:
        table.setdefault(visit.name, []).append(visit.duration_seconds or 0.0)
    return [(name, len(durations), sum(durations)) for name, durations in table.items()]
