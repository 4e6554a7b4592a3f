"""A migration runner killed mid-statement (SIGKILL: out of memory, host loss) against the real PostgreSQL.

Stopped (SIGTERM: ECS StopTask), the runner's own wait callback cancels the statement on the server, the transaction
rolls back and it exits with the migration-failed code, naming SQLSTATE 57014.

With client_connection_check_interval set by the runner (PostgreSQL 14+), the server notices the dead client within
the interval, cancels the statement and frees the table lock and the advisory lock; the next run then succeeds.
Without it (interval 0) the backend keeps running and keeps its locks, which is what the control case shows.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg2.extensions
from dbmigrate.errors import ExitCode

from deployflow.local.postgres import ConnectionParams
from tests.dbmigrate.conftest import REPO_ROOT
from tests.dbmigrate.test_cli import cli_env, run_cli
from tests.dbmigrate.test_runner import history_rows, write

SLOW_ALTER = "ALTER TABLE clients ADD COLUMN note text;\nSELECT pg_sleep(120);\n"
INTERVAL_MS = 1000


def _runner_backend(conn: psycopg2.extensions.connection, timeout: float = 30.0) -> int:
    """The pid of the runner's backend once it is inside the slow statement."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = 'deployflow-dbmigrate' "
                "AND state = 'active' AND query LIKE '%pg_sleep%'"
            )
            row = cur.fetchone()
        if row:
            return int(row[0])
        time.sleep(0.05)
    raise AssertionError("the runner never reached its slow statement")


def _locks_of(conn: psycopg2.extensions.connection, pid: int) -> list[Any]:
    with conn.cursor() as cur:
        cur.execute("SELECT locktype, mode FROM pg_locks WHERE pid = %s AND granted ORDER BY 1, 2", (pid,))
        return cur.fetchall()


def _alive(conn: psycopg2.extensions.connection, pid: int) -> bool:
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,))
        return cur.fetchone() is not None


def _kill_mid_statement(db: ConnectionParams, migrations_dir: Path, observer: Any, **env: str) -> int:
    runner = subprocess.Popen(
        [sys.executable, "-m", "dbmigrate"],
        env=cli_env(db, MIGRATIONS_DIR=str(migrations_dir), DB_STATEMENT_TIMEOUT_MS="0", **env),
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        pid = _runner_backend(observer)
        locks = _locks_of(observer, pid)
        assert ("advisory", "ExclusiveLock") in locks, locks
        assert ("relation", "AccessExclusiveLock") in locks, "the ALTER's table lock is held"
    finally:
        runner.kill()  # SIGKILL: no handler runs, the socket is simply closed by the kernel
        runner.wait(timeout=10)
    return pid


def test_given_a_runner_killed_mid_statement_then_its_locks_are_gone_within_the_interval_and_the_next_run_succeeds(
    migrated_db: ConnectionParams, migrations_dir: Path, pg_conn: psycopg2.extensions.connection
) -> None:
    write(migrations_dir, "V0002__add_note.sql", SLOW_ALTER)
    pid = _kill_mid_statement(migrated_db, migrations_dir, pg_conn, DB_CLIENT_CHECK_INTERVAL_MS=str(INTERVAL_MS))
    killed_at = time.monotonic()

    while _alive(pg_conn, pid) and time.monotonic() - killed_at < 10:
        time.sleep(0.05)
    gone_after = time.monotonic() - killed_at

    assert not _alive(pg_conn, pid), "the backend outlived its dead client by 10 s"
    assert gone_after < INTERVAL_MS / 1000 + 2.0, f"backend gone {gone_after:.1f}s after the kill"
    assert _locks_of(pg_conn, pid) == []
    with pg_conn.cursor() as cur:  # an application query on the table no longer waits
        cur.execute("SET lock_timeout = '500ms'; SELECT count(*) FROM clients")
        assert cur.fetchone() == (0,)
    assert [row[0] for row in history_rows(pg_conn)] == [1], "V0002 was rolled back, not recorded"

    write(migrations_dir, "V0002__add_note.sql", "ALTER TABLE clients ADD COLUMN note text;\n")
    result = run_cli(cli_env(migrated_db, MIGRATIONS_DIR=str(migrations_dir)))

    assert result.returncode == 0, result.stderr
    assert [row[0] for row in history_rows(pg_conn)] == [1, 2]


def test_given_the_check_turned_off_when_the_runner_is_killed_then_the_backend_keeps_its_locks(
    migrated_db: ConnectionParams, migrations_dir: Path, pg_conn: psycopg2.extensions.connection
) -> None:
    write(migrations_dir, "V0002__add_note.sql", SLOW_ALTER)
    pid = _kill_mid_statement(migrated_db, migrations_dir, pg_conn, DB_CLIENT_CHECK_INTERVAL_MS="0")
    try:
        time.sleep(INTERVAL_MS / 1000 + 2.0)

        assert _alive(pg_conn, pid), "without the check the server does not notice the dead client"
        assert ("relation", "AccessExclusiveLock") in _locks_of(pg_conn, pid)
    finally:
        with pg_conn.cursor() as cur:
            cur.execute("SELECT pg_terminate_backend(%s)", (pid,))


def test_given_a_runner_stopped_mid_statement_then_the_statement_is_cancelled_and_rolled_back_and_it_exits_8(
    migrated_db: ConnectionParams, migrations_dir: Path, pg_conn: psycopg2.extensions.connection
) -> None:
    write(migrations_dir, "V0002__add_note.sql", SLOW_ALTER)
    runner = subprocess.Popen(
        [sys.executable, "-m", "dbmigrate"],
        env=cli_env(migrated_db, MIGRATIONS_DIR=str(migrations_dir), DB_STATEMENT_TIMEOUT_MS="0"),
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        pid = _runner_backend(pg_conn)
        runner.send_signal(signal.SIGTERM)  # what ECS StopTask sends first
        stdout, stderr = runner.communicate(timeout=20)
    finally:
        runner.kill()

    assert runner.returncode == ExitCode.MIGRATION_FAILED, f"exit {runner.returncode}; stderr: {stderr}"
    (failed,) = [e for e in map(json.loads, stdout.splitlines()) if e["event"] == "migrate_failed"]
    assert (failed["sqlstate"], failed["file"]) == ("57014", "V0002__add_note.sql"), failed
    assert "canceling statement due to user request" in stderr, stderr
    assert not _alive(pg_conn, pid), "the runner exited and its backend with it"
    assert [row[0] for row in history_rows(pg_conn)] == [1], "V0002 was rolled back, not recorded"
    with pg_conn.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM information_schema.columns WHERE table_name = 'clients' AND column_name = 'note'"
        )
        assert cur.fetchone() == (0,), "the ALTER was rolled back with its transaction"
