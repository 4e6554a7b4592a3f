"""Timestamps in the state: ISO-8601 UTC with Z, parsed strictly (a bad one is InvalidInputError naming the field)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from release_steps.errors import InvalidInputError
from release_steps.timeutil import deadline_after, next_poll_seconds, parse_iso, seconds_between, to_iso

MOMENT = datetime(2026, 11, 23, 10, 15, 30, 123456, tzinfo=UTC)


def test_given_an_aware_datetime_when_formatted_then_utc_milliseconds_and_z() -> None:
    assert to_iso(MOMENT) == "2026-11-23T10:15:30.123Z"
    assert to_iso(MOMENT.astimezone(timezone(timedelta(hours=2)))) == "2026-11-23T10:15:30.123Z"


def test_given_a_naive_datetime_when_formatted_then_it_is_taken_as_utc() -> None:
    assert to_iso(MOMENT.replace(tzinfo=None)) == "2026-11-23T10:15:30.123Z"


@pytest.mark.parametrize(
    "text", ["2026-11-23T10:15:30.123Z", "2026-11-23T10:15:30.123+00:00", "2026-11-23T12:15:30.123+02:00"]
)
def test_given_iso_text_when_parsed_then_aware_utc(text: str) -> None:
    assert parse_iso(text, "deadline") == MOMENT.replace(microsecond=123000)


def test_given_iso_text_without_offset_when_parsed_then_utc() -> None:
    assert parse_iso("2026-11-23T10:15:30", "deadline").tzinfo == UTC


def test_given_text_that_is_not_a_timestamp_when_parsed_then_invalid_input_names_the_field() -> None:
    with pytest.raises(InvalidInputError, match=r"migration.deadline: not an ISO-8601 timestamp: 'soon'"):
        parse_iso("soon", "migration.deadline")


def test_given_a_start_when_a_deadline_is_computed_then_it_is_that_many_seconds_later() -> None:
    assert deadline_after(MOMENT, 1800) == "2026-11-23T10:45:30.123Z"


def test_given_start_and_end_when_measured_then_seconds_else_none() -> None:
    assert seconds_between(MOMENT, MOMENT + timedelta(seconds=46, milliseconds=531)) == 46.531
    assert seconds_between(None, MOMENT) is None
    assert seconds_between(MOMENT, None) is None


@pytest.mark.parametrize(
    ("ceiling", "waits"),
    [(10, [1, 2, 4, 8, 10, 10, 10]), (15, [1, 2, 4, 8, 15, 15, 15]), (16, [1, 2, 4, 8, 16, 16, 16]), (1, [1] * 7)],
)
def test_given_successive_checks_when_the_next_wait_is_asked_then_it_doubles_from_one_second_to_the_ceiling(
    ceiling: int, waits: list[int]
) -> None:
    assert [next_poll_seconds(checks, ceiling) for checks in range(1, 8)] == waits


def test_given_a_very_long_loop_when_the_next_wait_is_asked_then_it_stays_at_the_ceiling() -> None:
    assert next_poll_seconds(10_000, 300) == 300


def test_given_a_ceiling_below_one_second_when_the_next_wait_is_asked_then_invalid_input() -> None:
    with pytest.raises(InvalidInputError, match="at least 1 second"):
        next_poll_seconds(1, 0)
