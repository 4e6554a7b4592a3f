"""Adopt a database that already has the schema (created before the runner existed): record history, apply nothing.

`baseline(settings, version)` refuses unless, under the migration advisory lock, the history table is empty (or
missing) and the live schema verifies clean against the expected schema of that version. Only the version
expected_schema.json describes (its last migration) can be baselined: the schema as of an older version is not
recorded anywhere. It then writes one history row per migration file up to that version, in one transaction, with
`applied_by` starting with BASELINE_MARK, so a later `migrate` applies only what comes after.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from dbmigrate import history
from dbmigrate.db import Connection, connect
from dbmigrate.errors import (
    BaselineHistoryNotEmptyError,
    BaselineSchemaMismatchError,
    DbConfigurationError,
)
from dbmigrate.events import EventSink, discard
from dbmigrate.files import MigrationFile, discover_migrations, file_name
from dbmigrate.runner import database_errors, migration_lock
from dbmigrate.settings import Settings
from dbmigrate.verify import REGENERATE_COMMAND, DifferenceKind, ExpectedSchema, load_expected_schema, verify

BASELINE_MARK = "baseline"


@dataclass(frozen=True)
class BaselineReport:
    """What a baseline recorded: the migration files now marked applied without running them."""

    target: str
    version: int
    recorded: tuple[str, ...]
    applied_by: str
    duration_ms: int


def parse_version(text: str) -> int:
    """`0001`, `1` or `V0001` -> 1; anything else is a configuration error naming --version."""
    digits = text.strip().removeprefix("V").removeprefix("v")
    if not digits.isdigit() or int(digits) < 1:
        raise DbConfigurationError("--version", f"must be a migration version such as 0001 (got {text!r})")
    return int(digits)


def baseline_applied_by(settings: Settings) -> str:
    """The history's applied_by of baselined rows: `baseline (<who>)`, telling them apart from applied ones."""
    return f"{BASELINE_MARK} ({settings.applied_by})"


def check_baseline_version(
    version: int, files: tuple[MigrationFile, ...], expected: ExpectedSchema
) -> tuple[MigrationFile, ...]:
    """The files a baseline at `version` records; refuses a version the expected schema does not describe."""
    by_version = {migration.version: migration for migration in files}
    if version not in by_version:
        known = ", ".join(f"V{v:04d}" for v in by_version) or "none"
        raise DbConfigurationError("--version", f"V{version:04d} has no migration file (files: {known})")
    if not expected.migrations:
        raise DbConfigurationError("--version", "the expected schema lists no migration; regenerate it")
    head = expected.migrations[-1]
    if version != head.version:
        raise DbConfigurationError(
            "--version",
            f"V{version:04d} cannot be baselined: only V{head.version:04d}, the version expected_schema.json "
            "describes, can be verified before recording it (the schema as of an older version is not recorded)",
        )
    recorded = tuple(migration for migration in files if migration.version <= version)
    wanted = [(m.version, m.name, m.checksum) for m in expected.migrations]
    found = [(m.version, m.name, m.checksum) for m in recorded]
    if wanted != found:
        stale = sorted({file_name(v, n) for v, n, _ in set(wanted) ^ set(found)})
        raise DbConfigurationError(
            "--version",
            f"expected_schema.json does not match the migration files up to V{version:04d} "
            f"(differs for {', '.join(stale)}); regenerate it: {REGENERATE_COMMAND}",
        )
    return recorded


def baseline(
    settings: Settings, version: int, *, expected: ExpectedSchema | None = None, log: EventSink = discard
) -> BaselineReport:
    """Record migrations up to `version` as applied on a database that already has their schema (see module doc)."""
    started = time.monotonic()
    expected = expected or load_expected_schema()
    files = discover_migrations(settings.migrations_dir)
    recorded = check_baseline_version(version, files, expected)
    applied_by = baseline_applied_by(settings)
    log("baseline_started", target=settings.target, version=version, files=[m.filename for m in recorded])
    conn = connect(settings, log=log)
    try:
        conn.autocommit = True
        with database_errors(settings), migration_lock(conn, settings, log=log):
            _refuse_unless_history_empty(conn, settings)
            _refuse_unless_schema_matches(conn, settings, version, expected, log)
            _record(conn, recorded, applied_by)
    finally:
        conn.close()
    report = BaselineReport(
        target=settings.target,
        version=version,
        recorded=tuple(m.filename for m in recorded),
        applied_by=applied_by,
        duration_ms=round((time.monotonic() - started) * 1000),
    )
    log(
        "baseline_recorded",
        target=report.target,
        version=version,
        recorded=list(report.recorded),
        applied_by=applied_by,
        duration_ms=report.duration_ms,
    )
    return report


def _refuse_unless_history_empty(conn: Connection, settings: Settings) -> None:
    rows = history.read_history(conn)
    if rows:
        listed = ", ".join(file_name(row.version, row.name) for row in rows[:5])
        more = f" and {len(rows) - 5} more" if len(rows) > 5 else ""
        raise BaselineHistoryNotEmptyError(
            f"baseline refused on {settings.target}: {history.HISTORY_TABLE} already has {len(rows)} row(s) "
            f"({listed}{more}); a baseline is only for a database the runner never migrated: run migrate instead"
        )


def _refuse_unless_schema_matches(
    conn: Connection, settings: Settings, version: int, expected: ExpectedSchema, log: EventSink
) -> None:
    result = verify(conn, expected, check_migrations=False)
    for difference in result.differences:
        log("schema_difference", level="WARNING", **difference.to_json())
    if result.differences and all(d.kind is DifferenceKind.TABLE_MISSING for d in result.differences):
        raise BaselineSchemaMismatchError(
            f"baseline refused on {settings.target}: none of the expected tables exists "
            f"({', '.join(expected.catalog.table_names)}), nothing recorded; an empty database needs migrate, "
            "not baseline"
        )
    if not result.ok:
        raise BaselineSchemaMismatchError(
            f"baseline refused on {settings.target}: the schema differs from the expected schema of V{version:04d} "
            f"in {len(result.differences)} place(s), nothing recorded; fix the drift by hand first: "
            + "; ".join(result.lines())
        )


def _record(conn: Connection, recorded: tuple[MigrationFile, ...], applied_by: str) -> None:
    """The history table (if missing) and its rows, in one transaction: all recorded, or nothing."""
    conn.autocommit = False
    try:
        history.ensure_history_table(conn)
        for migration in recorded:
            history.record(
                conn,
                version=migration.version,
                name=migration.name,
                checksum=migration.checksum,
                duration_ms=0,
                applied_by=applied_by,
            )
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    finally:
        conn.autocommit = True
