"""Structured log lines: one JSON object per event on stdout (CloudWatch keeps one line per event)."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol, TextIO


class EventSink(Protocol):
    """Receives runner events; `event` is a short snake_case name, fields are JSON-serialisable."""

    def __call__(self, event: str, /, **fields: Any) -> None: ...


class JsonLines:
    """Writes {"ts", "level", "logger", "event", ...fields} as one line and flushes (the container may die next)."""

    def __init__(self, stream: TextIO | None = None, *, logger: str = "dbmigrate") -> None:
        self._stream = stream
        self._logger = logger
        self._lock = threading.Lock()

    def __call__(self, event: str, /, **fields: Any) -> None:
        level = fields.pop("level", "ERROR" if event.endswith("_failed") else "INFO")
        record = {
            "ts": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": level,
            "logger": self._logger,
            "event": event,
            **fields,
        }
        line = json.dumps(record, default=str, separators=(",", ":"))
        stream = self._stream or sys.stdout
        with self._lock:
            stream.write(line + "\n")
            stream.flush()


class Recorder:
    """Keeps events in memory (tests), optionally forwarding them; `on_event` lets a test react to one."""

    def __init__(self, forward: EventSink | None = None, on_event: Callable[[str, dict[str, Any]], None] | None = None):
        self.events: list[tuple[str, dict[str, Any]]] = []
        self._forward = forward
        self._on_event = on_event
        self._lock = threading.Lock()

    def __call__(self, event: str, /, **fields: Any) -> None:
        with self._lock:
            self.events.append((event, dict(fields)))
        if self._on_event is not None:
            self._on_event(event, dict(fields))
        if self._forward is not None:
            self._forward(event, **fields)

    def names(self) -> list[str]:
        with self._lock:
            return [name for name, _ in self.events]


def discard(event: str, /, **fields: Any) -> None:
    """An EventSink that drops everything."""
