"""The migration runner: bounded wait for the database, advisory lock, checksummed history, one transaction per file."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import psycopg2
import psycopg2.extensions

from dbmigrate import history
from dbmigrate.db import Connection, connect, one_line
from dbmigrate.errors import (
    DbMigrateError,
    DbUnreachableError,
    MigrationChecksumMismatchError,
    MigrationDatabaseError,
    MigrationFileMissingError,
    MigrationHistoryMismatchError,
    MigrationLockNotAcquiredError,
    MigrationLockTimeoutError,
    MigrationOutOfOrderError,
    MigrationStatementError,
)
from dbmigrate.events import EventSink, discard
from dbmigrate.files import MigrationFile, discover_migrations, file_name
from dbmigrate.settings import Settings
from dbmigrate.statements import Statement

# Session-level advisory lock key, per database: the ASCII of "dflowmig" as a bigint. Any runner of any version
# must use the same key, so it never changes.
ADVISORY_LOCK_KEY = int.from_bytes(b"dflowmig", "big")
_LOCK_POLL_FIRST_SECONDS = 0.05
_LOCK_POLL_MAX_SECONDS = 1.0
_SQLSTATE_LOCK_NOT_AVAILABLE = "55P03"
_SQLSTATE_QUERY_CANCELED = "57014"


@dataclass(frozen=True)
class AppliedMigration:
    version: int
    name: str
    filename: str
    checksum: str
    duration_ms: int
    transactional: bool


@dataclass(frozen=True)
class MigrationReport:
    """What one run did. `lock_taken` is False when the database was already at head (the read-only fast path)."""

    target: str
    applied: tuple[AppliedMigration, ...]
    already_applied: int
    head_version: int | None
    lock_taken: bool
    duration_ms: int


def plan(files: Sequence[MigrationFile], applied: Sequence[history.AppliedRow] | None) -> tuple[MigrationFile, ...]:
    """The pending files, in order. Raises when the history and the files disagree (nothing may be applied then)."""
    by_version = {migration.version: migration for migration in files}
    applied_versions = set()
    for row in applied or ():
        applied_versions.add(row.version)
        migration = by_version.get(row.version)
        if migration is None:
            raise MigrationFileMissingError(row.version, row.name)
        if migration.name != row.name:
            raise MigrationHistoryMismatchError(
                f"{migration.filename} is recorded in the history as {file_name(row.version, row.name)}; "
                "applied files must not be renamed"
            )
        if migration.checksum != row.checksum:
            raise MigrationChecksumMismatchError(migration.filename, row.checksum, migration.checksum)
    pending = tuple(migration for migration in files if migration.version not in applied_versions)
    head = max(applied_versions, default=None)
    for migration in pending:
        if head is not None and migration.version < head:
            raise MigrationOutOfOrderError(migration.filename, head)
    return pending


def pending(settings: Settings, *, log: EventSink = discard) -> tuple[MigrationFile, ...]:
    """The migrations a run would apply, read without the lock and without changing anything (--dry-run)."""
    files = discover_migrations(settings.migrations_dir, parse=False)
    conn = connect(settings, log=log)
    try:
        conn.autocommit = True
        with database_errors(settings):
            return tuple(migration.parsed() for migration in plan(files, history.read_history(conn)))
    finally:
        conn.close()


def _watch_the_client(conn: Connection, settings: Settings) -> None:
    """Have the server check, while a statement runs, that this runner is still connected (PostgreSQL 14+)."""
    if settings.client_check_interval_ms > 0 and conn.server_version >= 140000:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT set_config('client_connection_check_interval', %s, false)",
                (str(settings.client_check_interval_ms),),
            )


def migrate(settings: Settings, *, log: EventSink = discard) -> MigrationReport:
    """Apply every pending migration of settings.migrations_dir; a fast read-only no-op at head."""
    started = time.monotonic()
    # Parsed lazily: at head nothing is split (no pglast, no linter); what is pending is parsed before the lint.
    files = discover_migrations(settings.migrations_dir, parse=False)
    log("migrate_started", target=settings.target, migrations_dir=str(settings.migrations_dir), files=len(files))
    conn = connect(settings, log=log)
    try:
        conn.autocommit = True
        with database_errors(settings):
            _watch_the_client(conn, settings)
            rows = history.read_history(conn)
            todo = plan(files, rows)
            lock_taken = False
            applied: list[AppliedMigration] = []
            if todo:
                log("migrations_pending", files=[migration.filename for migration in todo])
                todo = tuple(migration.parsed() for migration in todo)
                _lint_before_applying(todo, conn, log)
                _acquire_lock(conn, settings, log)
                lock_taken = True
                try:
                    _ensure_history_table(conn)
                    rows = history.read_history(conn)  # another runner may have applied them while we waited
                    todo = plan(files, rows)
                    for migration in todo:
                        applied.append(_apply(conn, migration, settings, log))
                finally:
                    _release_lock(conn)
            already = len(rows or ())
            head = max([row.version for row in rows or ()] + [migration.version for migration in applied], default=None)
    finally:
        conn.close()
    report = MigrationReport(
        target=settings.target,
        applied=tuple(applied),
        already_applied=already,
        head_version=head,
        lock_taken=lock_taken,
        duration_ms=_ms_since(started),
    )
    log(
        "migrate_finished",
        target=settings.target,
        applied=[migration.filename for migration in report.applied],
        already_applied=report.already_applied,
        head_version=report.head_version,
        lock_taken=report.lock_taken,
        duration_ms=report.duration_ms,
    )
    return report


def _lint_before_applying(todo: Sequence[MigrationFile], conn: Connection, log: EventSink) -> None:
    """Describe (plan_file events: statements, locks, findings) and lint the pending files; refuse before any lock."""
    from dbmigrate.plan import describe, refuse_unlinted

    refuse_unlinted(describe(todo, server_version=conn.server_version, log=log))


@contextlib.contextmanager
def database_errors(settings: Settings) -> Iterator[None]:
    """Outside a migration statement: a lost connection is 'unreachable', anything else names its SQLSTATE."""
    try:
        yield
    except DbMigrateError:
        raise
    except psycopg2.Error as e:
        if _connection_lost(e):
            raise DbUnreachableError(f"connection to {settings.target} lost: {one_line(str(e))}") from e
        raise MigrationDatabaseError(
            f"database error on {settings.target}: SQLSTATE {e.pgcode}: {one_line(str(e))}"
        ) from e


def _connection_lost(error: psycopg2.Error) -> bool:
    if isinstance(error, psycopg2.InterfaceError):
        return True
    code = error.pgcode or ""
    return isinstance(error, psycopg2.OperationalError) and (not code or code.startswith(("08", "57P")))


def _ms_since(started: float) -> int:
    return round((time.monotonic() - started) * 1000)


@contextlib.contextmanager
def migration_lock(conn: Connection, settings: Settings, *, log: EventSink = discard) -> Iterator[None]:
    """Hold the session-level migration advisory lock (waiting up to settings.lock_wait_seconds) for the block."""
    _acquire_lock(conn, settings, log)
    try:
        yield
    finally:
        _release_lock(conn)


def _acquire_lock(conn: Connection, settings: Settings, log: EventSink) -> None:
    started = time.monotonic()
    deadline = started + settings.lock_wait_seconds
    delay = _LOCK_POLL_FIRST_SECONDS
    announced = False
    with conn.cursor() as cur:
        while True:
            cur.execute("SELECT pg_try_advisory_lock(%s)", (ADVISORY_LOCK_KEY,))
            row = cur.fetchone()
            if row is not None and row[0]:
                log("lock_acquired", lock_key=ADVISORY_LOCK_KEY, waited_ms=_ms_since(started))
                return
            if not announced:
                log(
                    "lock_waiting",
                    lock_key=ADVISORY_LOCK_KEY,
                    holder=_lock_holder(conn),
                    bound_seconds=settings.lock_wait_seconds,
                )
                announced = True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise MigrationLockNotAcquiredError(
                    f"migration lock not acquired on {settings.target}: advisory lock {ADVISORY_LOCK_KEY} held by "
                    f"{_lock_holder(conn)} for longer than DB_LOCK_WAIT_SECONDS={settings.lock_wait_seconds:g}s "
                    "(another migration is running)"
                )
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, _LOCK_POLL_MAX_SECONDS)


def _lock_holder(conn: Connection) -> str:
    """'pid 123 (application_name)' of the session holding the lock, for the message."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT l.pid, coalesce(a.application_name, '') FROM pg_locks l "
            "LEFT JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 "
            "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
            "AND l.classid::bigint = %s AND l.objid::bigint = %s",
            (ADVISORY_LOCK_KEY >> 32, ADVISORY_LOCK_KEY & 0xFFFFFFFF),
        )
        row = cur.fetchone()
    if row is None:
        return "another session"
    return f"pid {row[0]}" + (f" ({row[1]})" if row[1] else "")


def _release_lock(conn: Connection) -> None:
    if conn.closed:
        return
    with contextlib.suppress(psycopg2.Error):
        if conn.get_transaction_status() != psycopg2.extensions.TRANSACTION_STATUS_IDLE:
            conn.rollback()
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_unlock(%s)", (ADVISORY_LOCK_KEY,))


def _ensure_history_table(conn: Connection) -> None:
    conn.autocommit = False
    try:
        history.ensure_history_table(conn)
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    finally:
        conn.autocommit = True


def _apply(conn: Connection, migration: MigrationFile, settings: Settings, log: EventSink) -> AppliedMigration:
    log(
        "migration_started",
        file=migration.filename,
        version=migration.version,
        transactional=migration.transactional,
        statements=len(migration.statements),
    )
    started = time.monotonic()
    if migration.transactional:
        _apply_in_transaction(conn, migration, settings, started)
    else:
        _apply_without_transaction(conn, migration, settings, started)
    duration_ms = _ms_since(started)
    log(
        "migration_applied",
        file=migration.filename,
        version=migration.version,
        transactional=migration.transactional,
        duration_ms=duration_ms,
    )
    return AppliedMigration(
        version=migration.version,
        name=migration.name,
        filename=migration.filename,
        checksum=migration.checksum,
        duration_ms=duration_ms,
        transactional=migration.transactional,
    )


def _apply_in_transaction(conn: Connection, migration: MigrationFile, settings: Settings, started: float) -> None:
    conn.autocommit = False
    try:
        with conn.cursor() as cur:
            # SET LOCAL semantics (is_local = true): the timeouts end with this file's transaction.
            cur.execute(
                "SELECT set_config('lock_timeout', %s, true), set_config('statement_timeout', %s, true)",
                (str(settings.lock_timeout_ms), str(settings.statement_timeout_ms)),
            )
            _run_statements(cur, migration, settings)
            _record(conn, migration, settings, started)
        conn.commit()
    except BaseException:
        with contextlib.suppress(psycopg2.Error):
            conn.rollback()
        raise
    finally:
        if not conn.closed:
            with contextlib.suppress(psycopg2.Error):
                conn.autocommit = True


def _apply_without_transaction(conn: Connection, migration: MigrationFile, settings: Settings, started: float) -> None:
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(
            "SELECT set_config('lock_timeout', %s, false), set_config('statement_timeout', %s, false)",
            (str(settings.lock_timeout_ms), str(settings.statement_timeout_ms)),
        )
        try:
            _run_statements(cur, migration, settings)
            _record(conn, migration, settings, started)
        finally:
            if not conn.closed:
                with contextlib.suppress(psycopg2.Error):
                    cur.execute("RESET lock_timeout; RESET statement_timeout")


def _run_statements(cur: psycopg2.extensions.cursor, migration: MigrationFile, settings: Settings) -> None:
    for statement in migration.statements:
        try:
            cur.execute(statement.text)
        except psycopg2.Error as e:
            raise _statement_error(migration, statement, e, settings) from e


def _record(conn: Connection, migration: MigrationFile, settings: Settings, started: float) -> None:
    history.record(
        conn,
        version=migration.version,
        name=migration.name,
        checksum=migration.checksum,
        duration_ms=_ms_since(started),
        applied_by=settings.applied_by,
    )


def _statement_error(
    migration: MigrationFile, statement: Statement, error: psycopg2.Error, settings: Settings
) -> DbMigrateError:
    if _connection_lost(error):
        return DbUnreachableError(
            f"connection to {settings.target} lost while applying {migration.filename} "
            f"(statement {statement.number}, line {statement.line}): {one_line(str(error))}"
        )
    message = error.diag.message_primary or one_line(str(error))
    kind: type[MigrationStatementError] = MigrationStatementError
    if error.pgcode == _SQLSTATE_LOCK_NOT_AVAILABLE:
        kind = MigrationLockTimeoutError
        message += f" (lock_timeout DB_LOCK_TIMEOUT_MS={settings.lock_timeout_ms}: another session holds a lock; retry)"
    elif error.pgcode == _SQLSTATE_QUERY_CANCELED:
        message += f" (statement_timeout DB_STATEMENT_TIMEOUT_MS={settings.statement_timeout_ms})"
    return kind(
        file=migration.filename,
        statement_number=statement.number,
        line=statement.line,
        excerpt=statement.excerpt(),
        sqlstate=error.pgcode,
        error=message,
        transactional=migration.transactional,
    )
