"""The runner's JSON log lines as the steps read them back from CloudWatch (the lines dbmigrate really writes)."""

from __future__ import annotations

import io

from dbmigrate.events import JsonLines
from release_steps.migration_log import last_event, parse_line, parse_lines


def runner_lines() -> list[str]:
    stream = io.StringIO()
    log = JsonLines(stream)
    log("migrate_started", target="db", files=2)
    log("migrate_failed", error="MigrationStatementError", exit_code=8, message="migration V0002 failed")
    return stream.getvalue().splitlines()


def test_given_lines_the_runner_writes_when_parsed_then_event_level_and_fields_come_back():
    started, failed = parse_lines(runner_lines())
    assert (started.event, started.level, started.fields) == ("migrate_started", "INFO", {"target": "db", "files": 2})
    assert failed.is_failure
    assert (failed.level, failed.fields["exit_code"]) == ("ERROR", 8)
    assert (started.ts or "").endswith("Z")


def test_given_non_event_lines_when_parsed_then_skipped_not_raised():
    noise = ["dbmigrate: migration failed", "Traceback (most recent call last):", "{not json", "[1, 2]", '{"a": 1}']
    assert [parse_line(line) for line in noise] == [None] * len(noise)
    assert parse_line('{"event": "x", "logger": "powertools"}') is None


def test_given_events_when_last_event_then_the_last_by_name_or_the_last_failure():
    events = parse_lines(runner_lines() * 2)
    assert last_event(events) is events[3]
    assert last_event(events, "migrate_started") is events[2]
    assert last_event(events, "plan_finished") is None
