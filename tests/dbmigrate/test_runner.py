"""The migration runner against a real PostgreSQL: apply, rerun, refuse, lock, fail, time out."""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import psycopg2.extensions
import pytest
from dbmigrate import migrate, pending
from dbmigrate.errors import (
    DbConnectionRejectedError,
    DbUnreachableError,
    ExitCode,
    MigrationChecksumMismatchError,
    MigrationDatabaseError,
    MigrationFileMissingError,
    MigrationHistoryMismatchError,
    MigrationLockNotAcquiredError,
    MigrationLockTimeoutError,
    MigrationOutOfOrderError,
    MigrationStatementError,
)
from dbmigrate.events import Recorder
from dbmigrate.history import HISTORY_TABLE
from dbmigrate.runner import ADVISORY_LOCK_KEY, MigrationReport

from deployflow.local.ports import free_loopback_port
from deployflow.local.postgres import ConnectionParams
from tests.dbmigrate.conftest import INITIAL

TABLES = ["clients", "endpoints", "notifications", "rules"]


def public_tables(conn: psycopg2.extensions.connection) -> list[str]:
    with conn.cursor() as cur:
        cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename")
        return [row[0] for row in cur.fetchall()]


def history_rows(conn: psycopg2.extensions.connection) -> list[tuple[int, str, str]]:
    with conn.cursor() as cur:
        cur.execute("SELECT to_regclass(%s) IS NOT NULL", (HISTORY_TABLE,))
        row = cur.fetchone()
        if not (row and row[0]):
            return []
        cur.execute(f"SELECT version, name, applied_by FROM {HISTORY_TABLE} ORDER BY version")
        return list(cur.fetchall())


def relation_exists(conn: psycopg2.extensions.connection, name: str) -> bool:
    with conn.cursor() as cur:
        cur.execute("SELECT to_regclass(%s) IS NOT NULL", (name,))
        row = cur.fetchone()
        return bool(row and row[0])


@contextlib.contextmanager
def advisory_lock_held(params: ConnectionParams) -> Iterator[None]:
    """Another session holding the runner's advisory lock."""
    conn = params.connect()
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_try_advisory_lock(%s)", (ADVISORY_LOCK_KEY,))
            row = cur.fetchone()
            assert row == (True,), "test setup: could not take the advisory lock"
        yield
    finally:
        conn.close()


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text)
    return path


# -- apply and rerun -------------------------------------------------------------------------------


def test_given_empty_database_when_migrate_then_four_tables_and_one_history_row(make_settings, pg_conn):
    report = migrate(make_settings())

    assert [m.filename for m in report.applied] == [INITIAL]
    assert report.lock_taken is True
    assert report.head_version == 1
    assert public_tables(pg_conn) == sorted([*TABLES, HISTORY_TABLE])
    assert history_rows(pg_conn) == [(1, "initial_schema", "pytest")]


def test_given_database_at_head_when_rerun_while_another_session_holds_the_lock_then_noop_without_lock(
    make_settings, postgres_db, pg_conn
):
    settings = make_settings(lock_wait_seconds=0)
    migrate(settings)
    recorder = Recorder()

    with advisory_lock_held(postgres_db):
        report = migrate(settings, log=recorder)

    assert report.applied == ()
    assert report.lock_taken is False, "a rerun at head must not take the advisory lock"
    assert report.already_applied == 1
    assert "lock_waiting" not in recorder.names()
    assert "lock_acquired" not in recorder.names()
    assert history_rows(pg_conn) == [(1, "initial_schema", "pytest")]


def test_given_pending_migration_and_lock_held_elsewhere_when_migrate_then_lock_not_acquired(
    make_settings, postgres_db, pg_conn
):
    # The counterpart of the rerun test: the held lock does block a run that has work to do.
    with advisory_lock_held(postgres_db), pytest.raises(MigrationLockNotAcquiredError) as caught:
        migrate(make_settings(lock_wait_seconds=0))

    assert caught.value.exit_code == ExitCode.LOCK_NOT_ACQUIRED
    assert "DB_LOCK_WAIT_SECONDS" in str(caught.value)
    assert "pid " in str(caught.value)
    assert public_tables(pg_conn) == [], "nothing may be created without the lock"


def test_given_fresh_database_when_pending_then_lists_files_and_changes_nothing(make_settings, pg_conn):
    todo = pending(make_settings())

    assert [m.filename for m in todo] == [INITIAL]
    assert public_tables(pg_conn) == [], "--dry-run must not create the history table"


# -- history mismatches ----------------------------------------------------------------------------


def test_given_applied_file_edited_when_migrate_then_refused_naming_the_file(make_settings, migrations_dir, pg_conn):
    settings = make_settings(migrations_dir)
    migrate(settings)
    with (migrations_dir / INITIAL).open("a") as f:
        f.write("\n-- an innocent-looking edit\n")
    write(migrations_dir, "V0002__add_note.sql", "ALTER TABLE clients ADD COLUMN note text;\n")

    with pytest.raises(MigrationChecksumMismatchError) as caught:
        migrate(settings)

    assert INITIAL in str(caught.value)
    assert caught.value.exit_code == ExitCode.HISTORY_MISMATCH
    assert history_rows(pg_conn) == [(1, "initial_schema", "pytest")], "V0002 must not be applied after a mismatch"


def test_given_applied_file_deleted_when_migrate_then_refused_naming_the_version(make_settings, migrations_dir):
    settings = make_settings(migrations_dir)
    second = write(migrations_dir, "V0002__add_note.sql", "ALTER TABLE clients ADD COLUMN note text;\n")
    migrate(settings)
    second.unlink()

    with pytest.raises(MigrationFileMissingError, match=r"V0002__add_note\.sql"):
        migrate(settings)


def test_given_applied_file_renamed_when_migrate_then_refused(make_settings, migrations_dir):
    settings = make_settings(migrations_dir)
    second = write(migrations_dir, "V0002__add_note.sql", "ALTER TABLE clients ADD COLUMN note text;\n")
    migrate(settings)
    second.rename(migrations_dir / "V0002__add_client_note.sql")

    with pytest.raises(MigrationHistoryMismatchError, match=r"V0002__add_client_note\.sql.*V0002__add_note\.sql"):
        migrate(settings)


def test_given_file_below_the_applied_head_when_migrate_then_out_of_order_refused(make_settings, migrations_dir):
    settings = make_settings(migrations_dir)
    write(migrations_dir, "V0003__add_note.sql", "ALTER TABLE clients ADD COLUMN note text;\n")
    migrate(settings)
    write(migrations_dir, "V0002__late.sql", "ALTER TABLE clients ADD COLUMN late text;\n")

    with pytest.raises(MigrationOutOfOrderError, match=r"V0002__late\.sql"):
        migrate(settings)


# -- concurrency -----------------------------------------------------------------------------------


def test_given_two_runners_at_once_when_lock_released_then_exactly_one_applies(make_settings, postgres_db, pg_conn):
    settings = make_settings(lock_wait_seconds=60)
    waiting = [threading.Event(), threading.Event()]
    reports: list[MigrationReport | None] = [None, None]
    errors: list[BaseException] = []

    def run(index: int) -> None:
        def on_event(event: str, _fields: dict[str, object]) -> None:
            if event == "lock_waiting":
                waiting[index].set()

        try:
            reports[index] = migrate(settings, log=Recorder(on_event=on_event))
        except BaseException as e:
            errors.append(e)
            waiting[index].set()

    with advisory_lock_held(postgres_db):
        threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in (0, 1)]
        for thread in threads:
            thread.start()
        # Both runners saw the migration pending and are now polling for the lock.
        assert all(event.wait(30) for event in waiting), "both runners should be waiting for the advisory lock"
    for thread in threads:
        thread.join(60)

    assert not errors, f"runner failed: {errors!r}"
    assert all(report is not None for report in reports)
    applied = sorted(len(report.applied) for report in reports if report is not None)
    assert applied == [0, 1], f"exactly one runner applies V0001, got {reports}"
    assert all(report is not None and report.lock_taken for report in reports), "both waited for the lock"
    assert history_rows(pg_conn) == [(1, "initial_schema", "pytest")]


# -- failures --------------------------------------------------------------------------------------


def test_given_failing_file_when_migrate_then_its_transaction_rolls_back_and_the_error_names_it(
    make_settings, migrations_dir, pg_conn
):
    write(migrations_dir, "V0002__good.sql", "CREATE TABLE good_thing (id integer PRIMARY KEY);\n")
    write(
        migrations_dir,
        "V0003__bad.sql",
        "CREATE TABLE partial_thing (id integer);\n"
        "ALTER TABLE partial_thing ADD COLUMN note text;\n"
        "INSERT INTO no_such_table VALUES (1);\n",
    )

    with pytest.raises(MigrationStatementError) as caught:
        migrate(make_settings(migrations_dir))

    error = caught.value
    assert error.exit_code == ExitCode.MIGRATION_FAILED
    assert (error.file, error.statement_number, error.line, error.sqlstate) == ("V0003__bad.sql", 3, 3, "42P01")
    message = str(error)
    assert "V0003__bad.sql" in message
    assert "INSERT INTO no_such_table VALUES (1)" in message
    assert "SQLSTATE 42P01" in message
    assert "rolled back" in message
    assert not relation_exists(pg_conn, "partial_thing"), "partial DDL of the failed file must be rolled back"
    assert relation_exists(pg_conn, "good_thing"), "the file before it was committed in its own transaction"
    assert [row[0] for row in history_rows(pg_conn)] == [1, 2]


def test_given_table_locked_by_another_session_when_migration_alters_it_then_lock_timeout_error(
    make_settings, migrated_db, migrations_dir, pg_conn
):
    write(migrations_dir, "V0002__add_note.sql", "ALTER TABLE clients ADD COLUMN note text;\n")
    settings = make_settings(migrations_dir, lock_timeout_ms=200)
    blocker = migrated_db.connect()
    try:
        with blocker.cursor() as cur:
            cur.execute("SELECT count(*) FROM clients")  # holds ACCESS SHARE until the transaction ends
        with pytest.raises(MigrationLockTimeoutError) as caught:
            migrate(settings)
    finally:
        blocker.close()

    assert caught.value.exit_code == ExitCode.MIGRATION_LOCK_TIMEOUT
    assert caught.value.sqlstate == "55P03"
    assert "V0002__add_note.sql" in str(caught.value)
    assert "DB_LOCK_TIMEOUT_MS=200" in str(caught.value)
    assert [row[0] for row in history_rows(pg_conn)] == [1]
    # Once the other session is gone the same run succeeds: a lock timeout is retryable.
    assert [m.filename for m in migrate(settings).applied] == ["V0002__add_note.sql"]


def test_given_slow_statement_when_statement_timeout_then_failure_names_the_timeout(
    make_settings, migrations_dir, pg_conn
):
    write(migrations_dir, "V0002__slow.sql", "SELECT pg_sleep(10);\n")

    with pytest.raises(MigrationStatementError) as caught:
        migrate(make_settings(migrations_dir, statement_timeout_ms=100))

    assert caught.value.sqlstate == "57014"
    assert "DB_STATEMENT_TIMEOUT_MS=100" in str(caught.value)
    assert [row[0] for row in history_rows(pg_conn)] == [1]


# -- no-transaction files --------------------------------------------------------------------------


def test_given_no_transaction_file_when_migrate_then_create_index_concurrently_runs(
    make_settings, migrations_dir, pg_conn
):
    write(
        migrations_dir,
        "V0002__notifications_status_idx.sql",
        "-- deployflow:no-transaction\nCREATE INDEX CONCURRENTLY notifications_status_idx ON notifications (status);\n",
    )

    report = migrate(make_settings(migrations_dir))

    assert [(m.filename, m.transactional) for m in report.applied] == [
        (INITIAL, True),
        ("V0002__notifications_status_idx.sql", False),
    ]
    with pg_conn.cursor() as cur:
        cur.execute("SELECT indisvalid FROM pg_index WHERE indexrelid = 'notifications_status_idx'::regclass")
        assert cur.fetchone() == (True,)
    assert [row[0] for row in history_rows(pg_conn)] == [1, 2]


def test_given_concurrent_index_without_marker_when_migrate_then_postgres_refuses_it_in_a_transaction(
    make_settings, migrations_dir, pg_conn
):
    write(
        migrations_dir,
        "V0002__idx.sql",
        "CREATE INDEX CONCURRENTLY notifications_status_idx ON notifications (status);\n",
    )

    with pytest.raises(MigrationStatementError) as caught:
        migrate(make_settings(migrations_dir))

    assert caught.value.sqlstate == "25001", "CREATE INDEX CONCURRENTLY cannot run inside a transaction block"
    assert not relation_exists(pg_conn, "notifications_status_idx")


def test_given_no_transaction_file_failing_midway_when_migrate_then_earlier_statements_stay_and_no_history(
    make_settings, migrations_dir, pg_conn
):
    write(
        migrations_dir,
        "V0002__two_indexes.sql",
        "-- deployflow:no-transaction\n"
        "CREATE INDEX CONCURRENTLY notifications_status_idx ON notifications (status);\n"
        "CREATE INDEX CONCURRENTLY other_idx ON no_such_table (x);\n",
    )

    with pytest.raises(MigrationStatementError) as caught:
        migrate(make_settings(migrations_dir))

    assert caught.value.transactional is False
    assert caught.value.statement_number == 2
    assert "stay applied" in str(caught.value)
    assert relation_exists(pg_conn, "notifications_status_idx")
    assert [row[0] for row in history_rows(pg_conn)] == [1]


# -- connecting ------------------------------------------------------------------------------------


def test_given_closed_port_when_migrate_then_unreachable_after_retrying_within_the_bound(make_settings):
    recorder = Recorder()
    settings = make_settings(port=free_loopback_port(), connect_timeout_seconds=0.5)

    with pytest.raises(DbUnreachableError) as caught:
        migrate(settings, log=recorder)

    assert caught.value.exit_code == ExitCode.DATABASE_UNREACHABLE
    assert "unreachable" in str(caught.value)
    assert "DB_CONNECT_TIMEOUT_SECONDS=0.5" in str(caught.value)
    assert recorder.names().count("database_waiting") >= 1, "the runner retries before giving up"


def test_given_wrong_password_when_migrate_then_rejected_without_waiting(make_settings):
    recorder = Recorder()

    with pytest.raises(DbConnectionRejectedError, match="password authentication failed") as caught:
        migrate(make_settings(password="wrong", connect_timeout_seconds=30), log=recorder)

    assert caught.value.exit_code == ExitCode.CONNECTION_REJECTED
    assert "database_waiting" not in recorder.names(), "an authentication failure is not retried"


def test_given_role_without_create_privilege_when_migrate_then_database_error_names_the_sqlstate(
    make_settings, pg_conn
):
    role = f"limited_{uuid.uuid4().hex[:8]}"
    with pg_conn.cursor() as cur:
        cur.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'limited-pw'")
        cur.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")  # the default since PostgreSQL 15
    try:
        with pytest.raises(MigrationDatabaseError) as caught:
            migrate(make_settings(user=role, password="limited-pw"))
    finally:
        with pg_conn.cursor() as cur:
            cur.execute(f"DROP ROLE {role}")

    assert caught.value.exit_code == ExitCode.MIGRATION_FAILED
    assert "SQLSTATE 42501" in str(caught.value)
    assert public_tables(pg_conn) == []
