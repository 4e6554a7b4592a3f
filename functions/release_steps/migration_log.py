"""The migration runner's log as the steps read it from CloudWatch: one JSON object per line (dbmigrate.events).

`python -m dbmigrate` writes ``{"ts", "level", "logger", "event", ...fields}`` per line on stdout; the awslogs
driver keeps each line as one log event. Anything else in the stream (a traceback, a plain ``dbmigrate: ...`` line
on stderr) is not an event and is skipped here, never an error: the readers want the runner's own facts (the
failure line by its event name, the plan a dry run printed) and fall back to the raw tail when they are missing.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

RUNNER_LOGGER = "dbmigrate"


@dataclass(frozen=True)
class RunnerEvent:
    """One structured line of the runner: its event name, level and the remaining fields."""

    event: str
    level: str
    ts: str | None
    fields: Mapping[str, Any]

    @property
    def is_failure(self) -> bool:
        """The runner names every failure line ``<command>_failed`` (dbmigrate.__main__)."""
        return self.event.endswith("_failed")


def parse_line(message: str) -> RunnerEvent | None:
    """The runner event of one log message, or None when the line is not one of the runner's JSON lines."""
    text = message.strip()
    if not text.startswith("{"):
        return None
    try:
        record = json.loads(text)
    except ValueError:
        return None
    if not isinstance(record, dict) or not isinstance(record.get("event"), str):
        return None
    if record.get("logger", RUNNER_LOGGER) != RUNNER_LOGGER:
        return None
    fields = {key: value for key, value in record.items() if key not in ("event", "level", "ts", "logger")}
    ts = record.get("ts")
    return RunnerEvent(
        event=record["event"],
        level=str(record.get("level", "INFO")),
        ts=ts if isinstance(ts, str) else None,
        fields=fields,
    )


def parse_lines(messages: Iterable[str]) -> list[RunnerEvent]:
    """The runner events among the messages, in order (non-JSON lines skipped)."""
    return [event for event in map(parse_line, messages) if event is not None]


def last_event(events: Iterable[RunnerEvent], *names: str) -> RunnerEvent | None:
    """The last event with one of the names (any failure line when no name is given and ``names`` is empty)."""
    found: RunnerEvent | None = None
    for event in events:
        if (event.event in names) if names else event.is_failure:
            found = event
    return found
