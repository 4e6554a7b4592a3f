"""UTC timestamps as the state carries them (ISO-8601 with a ``Z`` suffix) and the poll loops' adaptive wait."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from release_steps.errors import InvalidInputError


def utc_now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def to_iso(moment: datetime) -> str:
    """``2026-11-23T10:15:30.123Z``: UTC, milliseconds, ``Z`` (a naive datetime is taken as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso(value: str, field: str) -> datetime:
    """Parse an ISO-8601 timestamp from the state; a malformed one is an ``InvalidInputError`` naming ``field``."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as e:
        raise InvalidInputError(f"invalid step input: {field}: not an ISO-8601 timestamp: {value!r}") from e
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def deadline_after(start: datetime, seconds: int) -> str:
    """The ISO-8601 deadline ``seconds`` after ``start``."""
    return to_iso(start + timedelta(seconds=seconds))


def seconds_between(start: datetime | None, end: datetime | None) -> float | None:
    """Seconds from ``start`` to ``end`` (milliseconds precision), or None when either is unknown."""
    if start is None or end is None:
        return None
    return round((end - start).total_seconds(), 3)


FIRST_POLL_SECONDS = 1  # the first wait of a poll loop: a task that stops at once is noticed about a second later


def next_poll_seconds(checks: int, ceiling: int) -> int:
    """The wait before the next check after ``checks`` checks: 1, 2, 4, 8 ... seconds, capped at ``ceiling``.

    The loop checks right after its start step; doubling from one second notices a short task quickly and costs a
    long one only the few extra turns of the ramp (at most log2(ceiling)) over a loop polling at the ceiling.
    """
    if ceiling < 1:
        raise InvalidInputError(f"invalid step input: poll ceiling must be at least 1 second, got {ceiling}")
    doublings = max(checks - 1, 0)
    if doublings >= ceiling.bit_length():
        return ceiling
    return min(ceiling, FIRST_POLL_SECONDS << doublings)
