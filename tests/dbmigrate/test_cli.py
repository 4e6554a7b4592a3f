"""`python -m dbmigrate` as the migration container runs it: environment in, JSON lines out, exit code per failure."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from dbmigrate.errors import ExitCode

from deployflow.local.ports import free_loopback_port
from deployflow.local.postgres import ConnectionParams
from tests.dbmigrate.conftest import INITIAL, REPO_ROOT
from tests.dbmigrate.test_runner import advisory_lock_held, history_rows, public_tables, write


def cli_env(params: ConnectionParams, **extra: str) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "functions"), str(REPO_ROOT)]),
        **params.as_env(),
        "DB_CONNECT_TIMEOUT_SECONDS": "5",
        "DB_LOCK_WAIT_SECONDS": "5",
    }
    env.update(extra)
    return env


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dbmigrate", *args],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def events(result: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert all({"ts", "level", "event"} <= line.keys() for line in lines), result.stdout
    return lines


def by_event(result: subprocess.CompletedProcess[str], name: str) -> list[dict[str, Any]]:
    return [line for line in events(result) if line["event"] == name]


def assert_failed(result: subprocess.CompletedProcess[str], code: ExitCode, *fragments: str) -> str:
    """The exit code, and one clear line on stderr containing every fragment."""
    assert result.returncode == code, f"exit {result.returncode}, wanted {code!r}; stderr: {result.stderr}"
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, f"one line expected on stderr, got: {result.stderr}"
    for fragment in fragments:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"
    (failure,) = [line for line in events(result) if line["event"].endswith("_failed")]
    assert failure["exit_code"] == code
    assert failure["level"] == "ERROR"
    return lines[0]


def test_given_empty_database_when_run_twice_then_applies_once_and_exits_0_both_times(postgres_db, pg_conn):
    first = run_cli(cli_env(postgres_db))
    second = run_cli(cli_env(postgres_db), "migrate")  # the default command, spelled out

    assert first.returncode == ExitCode.OK, first.stderr
    (applied,) = by_event(first, "migration_applied")
    assert applied["file"] == INITIAL
    assert isinstance(applied["duration_ms"], int)
    assert second.returncode == ExitCode.OK, second.stderr
    (finished,) = by_event(second, "migrate_finished")
    assert (finished["applied"], finished["lock_taken"], finished["head_version"]) == ([], False, 1)
    assert postgres_db.password not in first.stdout + first.stderr, "the password must never be logged"
    assert [row[0] for row in history_rows(pg_conn)] == [1]


def test_given_fresh_database_when_dry_run_then_lists_pending_and_changes_nothing(postgres_db, pg_conn):
    result = run_cli(cli_env(postgres_db), "--dry-run")

    assert result.returncode == ExitCode.OK, result.stderr
    assert [line["file"] for line in by_event(result, "migration_pending")] == [INITIAL]
    assert public_tables(pg_conn) == []


def test_given_closed_port_when_run_then_exit_4_unreachable(postgres_db):
    env = cli_env(postgres_db, DB_PORT=str(free_loopback_port()), DB_CONNECT_TIMEOUT_SECONDS="0.5")
    assert_failed(run_cli(env), ExitCode.DATABASE_UNREACHABLE, "unreachable", "DB_CONNECT_TIMEOUT_SECONDS=0.5")


def test_given_wrong_password_when_run_then_exit_5_rejected(postgres_db):
    assert_failed(
        run_cli(cli_env(postgres_db, DB_PASSWORD="wrong")),
        ExitCode.CONNECTION_REJECTED,
        "refused the connection",
        "password authentication failed",
    )


@pytest.mark.parametrize(
    ("change", "variable"),
    [({"DB_HOST": ""}, "DB_HOST"), ({"DB_PORT": "x"}, "DB_PORT"), ({"DB_SSLMODE": "yes"}, "DB_SSLMODE")],
)
def test_given_bad_configuration_when_run_then_exit_3_naming_the_variable(postgres_db, change, variable):
    assert_failed(run_cli(cli_env(postgres_db, **change)), ExitCode.CONFIGURATION, f"configuration error: {variable}")


def test_given_lock_held_by_another_runner_when_run_then_exit_6(postgres_db):
    with advisory_lock_held(postgres_db):
        result = run_cli(cli_env(postgres_db, DB_LOCK_WAIT_SECONDS="0"))
    assert_failed(result, ExitCode.LOCK_NOT_ACQUIRED, "migration lock not acquired")


def test_given_edited_applied_file_when_run_then_exit_7_naming_the_file(postgres_db, migrations_dir: Path):
    env = cli_env(postgres_db, MIGRATIONS_DIR=str(migrations_dir))
    assert run_cli(env).returncode == ExitCode.OK
    with (migrations_dir / INITIAL).open("a") as f:
        f.write("\nSELECT 1;\n")

    assert_failed(run_cli(env), ExitCode.HISTORY_MISMATCH, "checksum mismatch", INITIAL)


def test_given_a_pending_file_that_does_not_parse_when_run_then_exit_3_naming_its_line_and_nothing_applied(
    migrated_db, migrations_dir: Path, pg_conn
):
    # Files are parsed lazily (a run at head never loads the parser): a pending one is refused before the lock.
    write(migrations_dir, "V0002__broken.sql", "ALTER TABLE clients ADD COLUMN note text;\nCREATE TABLE (;\n")

    result = run_cli(cli_env(migrated_db, MIGRATIONS_DIR=str(migrations_dir)))

    assert_failed(result, ExitCode.CONFIGURATION, "invalid migration file V0002__broken.sql", "at line 2")
    assert "lock_acquired" not in {line["event"] for line in events(result)}
    assert [row[0] for row in history_rows(pg_conn)] == [1]


def test_given_failing_migration_when_run_then_exit_8_naming_file_statement_and_sqlstate(
    postgres_db, migrations_dir: Path
):
    write(migrations_dir, "V0002__bad.sql", "ALTER TABLE no_such_table ADD COLUMN x int;\n")

    result = run_cli(cli_env(postgres_db), "--migrations-dir", str(migrations_dir))

    assert_failed(
        result, ExitCode.MIGRATION_FAILED, "V0002__bad.sql", "ALTER TABLE no_such_table ADD COLUMN x int", "42P01"
    )
    # The exit line carries the facts as fields, so the check step reads them by name, not by parsing the message.
    (failure,) = by_event(result, "migrate_failed")
    assert failure["file"] == "V0002__bad.sql"
    assert failure["sqlstate"] == "42P01"
    assert failure["pg_error"] == 'relation "no_such_table" does not exist'
    assert failure["statement"].startswith("ALTER TABLE no_such_table ADD COLUMN x int")
    assert failure["statement_number"] == 1
    assert failure["line"] == 1
    assert failure["transactional"] is True


def test_given_table_locked_elsewhere_when_run_then_exit_9_lock_timeout(migrated_db, migrations_dir: Path):
    write(migrations_dir, "V0002__add_note.sql", "ALTER TABLE clients ADD COLUMN note text;\n")
    env = cli_env(migrated_db, MIGRATIONS_DIR=str(migrations_dir), DB_LOCK_TIMEOUT_MS="200")
    blocker = migrated_db.connect()
    try:
        with blocker.cursor() as cur:
            cur.execute("LOCK TABLE clients IN ACCESS SHARE MODE")
        result = run_cli(env)
    finally:
        blocker.close()

    assert_failed(result, ExitCode.MIGRATION_LOCK_TIMEOUT, "V0002__add_note.sql", "55P03", "lock_timeout")


def test_given_migrated_database_when_verify_then_0_and_after_drift_10(migrated_db):
    env = cli_env(migrated_db)
    ok = run_cli(env, "verify")
    assert ok.returncode == ExitCode.OK, ok.stderr
    assert by_event(ok, "verify_finished")[0]["ok"] is True

    connection = migrated_db.connect()
    connection.autocommit = True
    with connection, connection.cursor() as cur:
        cur.execute("ALTER TABLE notifications DROP COLUMN last_error")
    connection.close()

    drift = run_cli(env, "verify")
    assert_failed(drift, ExitCode.SCHEMA_MISMATCH, "column missing: notifications.last_error")
    assert [d["name"] for d in by_event(drift, "schema_difference")] == ["last_error"]


def test_given_unknown_option_when_run_then_exit_2_usage(postgres_db):
    result = run_cli(cli_env(postgres_db), "--bogus")
    assert result.returncode == ExitCode.USAGE
    assert "unrecognized arguments: --bogus" in result.stderr


def test_given_two_processes_at_once_then_both_exit_0_and_the_migration_is_applied_once(postgres_db, pg_conn):
    env = cli_env(postgres_db, DB_LOCK_WAIT_SECONDS="60")
    command = [sys.executable, "-m", "dbmigrate"]
    processes = [
        subprocess.Popen(command, env=env, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    try:
        outputs = [process.communicate(timeout=120) for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()

    assert [process.returncode for process in processes] == [0, 0], [err for _, err in outputs]
    applied = [out.count('"event":"migration_applied"') for out, _ in outputs]
    assert sorted(applied) == [0, 1], outputs
    assert [row[0] for row in history_rows(pg_conn)] == [1]
