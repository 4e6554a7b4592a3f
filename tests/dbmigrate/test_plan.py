"""`plan` and the lint gate against a real PostgreSQL and the pinned squawk: read-only, lock-free, named refusals."""

from __future__ import annotations

import contextlib
import hashlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2.extensions
import pytest
from dbmigrate import history, migrate
from dbmigrate.__main__ import main
from dbmigrate.errors import ExitCode, MigrationFileError, MigrationLintError
from dbmigrate.events import Recorder
from dbmigrate.files import parse_migration
from dbmigrate.history import HISTORY_TABLE
from dbmigrate.lint import KNOWN_RULES, SQUAWK_VERSION, squawk_binary, squawk_version
from dbmigrate.plan import build_plan
from dbmigrate.runner import ADVISORY_LOCK_KEY

from deployflow.local.postgres import ConnectionParams
from tests.dbmigrate.conftest import INITIAL, REPO_ROOT, SettingsFactory

ADD_PRIORITY = "ALTER TABLE rules ADD COLUMN priority integer NOT NULL DEFAULT 0;\n"
REQUIRED_COLUMN = "ALTER TABLE rules ADD COLUMN owner text NOT NULL;\n"
WAIVER = "-- deployflow:allow adding-required-field: rules is empty in every environment until v42 ships\n"
APP_TABLES = ("clients", "endpoints", "rules", "notifications")


def database_fingerprint(conn: psycopg2.extensions.connection) -> str:
    """Catalog (relations, columns, constraints, indexes) and history contents, hashed: any change shows."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT c.relname, c.relkind, a.attname, a.atttypid, a.attnotnull FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace LEFT JOIN pg_attribute a ON a.attrelid = c.oid "
            "AND a.attnum > 0 WHERE n.nspname = 'public' ORDER BY 1, 3"
        )
        catalog = cur.fetchall()
        cur.execute("SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint ORDER BY 1, 2")
        catalog += cur.fetchall()
        cur.execute("SELECT to_regclass('public.deployflow_schema_history') IS NOT NULL")
        row = cur.fetchone()
        history: list[Any] = []
        if row and row[0]:
            cur.execute("SELECT * FROM deployflow_schema_history ORDER BY version")
            history = cur.fetchall()
    return hashlib.sha256(repr((catalog, history)).encode()).hexdigest()


@contextlib.contextmanager
def exclusive_locks(params: ConnectionParams, tables: tuple[str, ...]) -> Iterator[None]:
    """Another session holding ACCESS EXCLUSIVE on the tables for the block (as a long ALTER TABLE would)."""
    holder = params.connect()
    try:
        with holder.cursor() as cur:
            cur.execute(f"LOCK TABLE {', '.join(tables)} IN ACCESS EXCLUSIVE MODE")
        yield
    finally:
        holder.rollback()
        holder.close()


def with_file(directory: Path, name: str, text: str) -> Path:
    (directory / name).write_text(text, encoding="utf-8")
    return directory


def test_given_pending_file_when_plan_then_statements_locks_and_findings_are_reported_and_nothing_changes(
    migrated_db: ConnectionParams, make_settings: SettingsFactory, migrations_dir: Path
):
    with_file(
        migrations_dir, "V0002__add_rule_priority.sql", ADD_PRIORITY + "CREATE INDEX rules_p ON rules (priority);\n"
    )
    conn = migrated_db.connect()
    conn.autocommit = True
    before = database_fingerprint(conn)
    log = Recorder()

    # GIVEN another session holds ACCESS EXCLUSIVE on every application table (a plan must not need any of them)
    with exclusive_locks(migrated_db, APP_TABLES):
        started = time.monotonic()
        result = build_plan(make_settings(migrations_dir), log=log)
        elapsed = time.monotonic() - started

    assert elapsed < 2.0, f"plan waited {elapsed:.1f}s: it must take no lock on application tables"
    assert database_fingerprint(conn) == before
    (planned,) = [fields for name, fields in log.events if name == "plan_file"]
    assert planned["file"] == "V0002__add_rule_priority.sql"
    assert [(s["number"], s["line"], s["kind"], s["lock"]) for s in planned["statements"]] == [
        (1, 1, "AlterTable", "ACCESS EXCLUSIVE"),
        (2, 2, "Index", "SHARE"),
    ]
    assert planned["lock"] == "ACCESS EXCLUSIVE"
    assert planned["lint"] == "fail"
    assert [f["rule"] for f in planned["findings"]] == ["require-concurrent-index-creation"]
    assert [f.migration.filename for f in result.lint_failed] == ["V0002__add_rule_priority.sql"]
    finished = dict(log.events)["plan_finished"]
    assert (finished["already_applied"], finished["pending"]) == (1, ["V0002__add_rule_priority.sql"])
    conn.close()


def test_given_plan_when_it_reads_the_history_then_its_transaction_is_read_only_and_locks_only_the_history(
    migrated_db: ConnectionParams, make_settings: SettingsFactory, migrations_dir: Path, monkeypatch: pytest.MonkeyPatch
):
    with_file(migrations_dir, "V0002__add_rule_priority.sql", ADD_PRIORITY)
    seen: dict[str, Any] = {}
    original = history.read_history

    def observed(conn: psycopg2.extensions.connection) -> Any:
        rows = original(conn)
        with conn.cursor() as cur:  # the plan's own session, inside its transaction, after its only read
            cur.execute("SELECT current_setting('transaction_read_only'), current_setting('lock_timeout')")
            seen["read_only"], seen["lock_timeout"] = cur.fetchone() or (None, None)
            cur.execute(
                "SELECT l.locktype, coalesce(c.relname, ''), l.mode FROM pg_locks l LEFT JOIN pg_class c "
                "ON c.oid = l.relation WHERE l.pid = pg_backend_pid() AND l.locktype IN ('relation', 'advisory') "
                "AND coalesce(c.relnamespace, 0) <> 'pg_catalog'::regnamespace ORDER BY 2"
            )
            seen["locks"] = cur.fetchall()
        return rows

    monkeypatch.setattr(history, "read_history", observed)
    # GIVEN another runner holds the migration advisory lock: a plan does not want it
    holder = migrated_db.connect()
    holder.autocommit = True
    with holder.cursor() as cur:
        cur.execute("SELECT pg_advisory_lock(%s)", (ADVISORY_LOCK_KEY,))
    try:
        build_plan(make_settings(migrations_dir))
    finally:
        holder.close()

    assert seen["read_only"] == "on"
    assert seen["lock_timeout"] == "2s"
    assert seen["locks"], "the history read holds its ACCESS SHARE lock until the transaction ends"
    assert {(kind, mode) for kind, _, mode in seen["locks"]} <= {("relation", "AccessShareLock")}
    assert {name for _, name, _ in seen["locks"]} <= {HISTORY_TABLE, f"{HISTORY_TABLE}_pkey"}


def test_given_plan_on_an_empty_database_when_run_then_no_history_table_is_created(
    postgres_db: ConnectionParams, make_settings: SettingsFactory
):
    result = build_plan(make_settings())
    assert [p.migration.filename for p in result.files] == [INITIAL]
    conn = postgres_db.connect()
    with conn.cursor() as cur:
        cur.execute("SELECT to_regclass('public.deployflow_schema_history') IS NULL")
        assert cur.fetchone() == (True,)
    conn.close()


def test_given_unwaived_finding_when_migrate_then_named_lint_error_and_nothing_applied(
    migrated_db: ConnectionParams, make_settings: SettingsFactory, migrations_dir: Path
):
    with_file(migrations_dir, "V0002__owner.sql", REQUIRED_COLUMN)
    conn = migrated_db.connect()
    conn.autocommit = True
    before = database_fingerprint(conn)
    log = Recorder()
    with pytest.raises(MigrationLintError, match=r"V0002__owner.sql line 1 adding-required-field") as caught:
        migrate(make_settings(migrations_dir), log=log)
    assert caught.value.exit_code == ExitCode.LINT_FAILED
    assert database_fingerprint(conn) == before
    assert "lock_acquired" not in log.names()
    conn.close()


def test_given_waived_finding_when_migrate_then_applied_and_the_waiver_is_logged(
    migrated_db: ConnectionParams, make_settings: SettingsFactory, migrations_dir: Path
):
    with_file(migrations_dir, "V0002__owner.sql", WAIVER + REQUIRED_COLUMN)
    log = Recorder()
    report = migrate(make_settings(migrations_dir), log=log)
    assert [m.filename for m in report.applied] == ["V0002__owner.sql"]
    planned = dict(log.events)["plan_file"]
    assert planned["lint"] == "pass"
    assert planned["findings"][0]["rule"] == "adding-required-field"
    assert planned["findings"][0]["waived"].startswith("rules is empty")
    assert planned["waivers"] == [
        {"rule": "adding-required-field", "reason": WAIVER.split(": ", 1)[1].strip(), "line": 1, "used": True}
    ]


@pytest.mark.parametrize(
    ("waiver", "problem"),
    [
        ("-- deployflow:allow no-such-rule: a reason that is long enough\n", "unknown rule 'no-such-rule'"),
        ("-- deployflow:allow ban-drop-column:\n", "has no reason"),
        ("-- deployflow:allow ban-drop-column\n", "a waiver is a comment line of its own"),
        ("-- deployflow:allow require-lock-timeout: the runner sets it anyway\n", "is off for every file"),
        ("-- squawk-ignore ban-drop-column\n", "squawk-ignore comments are not used here"),
    ],
)
def test_given_bad_waiver_when_parsed_then_refused_naming_the_line(waiver, problem):
    with pytest.raises(MigrationFileError, match=rf"V0002__x.sql: line 2: .*{problem}"):
        parse_migration("V0002__x.sql", ("-- drop it\n" + waiver + "ALTER TABLE t DROP COLUMN c;\n").encode())


def test_given_unparsable_file_when_plan_then_refused_with_its_line_before_connecting(tmp_path: Path):
    bad = with_file(tmp_path, "V0001__bad.sql", "CREATE TABLE a (id int);\n\nALTER TABLE a ADD COLUMN;\n")
    env = {"DB_HOST": "127.0.0.1", "DB_PORT": "1", "DB_NAME": "x", "DB_USER": "x", "DEPLOYFLOW_LOCAL": "1"}
    log = Recorder()
    code = main(["plan", "--migrations-dir", str(bad)], env=env, log=log)
    assert code == ExitCode.CONFIGURATION
    failed = dict(log.events)["plan_failed"]
    assert "V0001__bad.sql" in failed["message"]
    assert "line 3" in failed["message"]
    assert "database_waiting" not in log.names()


def test_given_sql_dir_when_lint_command_then_clean_with_the_pinned_squawk():
    done = subprocess.run(
        [sys.executable, "-m", "dbmigrate", "lint", "--migrations-dir", str(REPO_ROOT / "sql")],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env={"PYTHONPATH": str(REPO_ROOT / "functions"), "PATH": str(Path(sys.executable).parent)},
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert events[-1]["event"] == "lint_finished"
    assert events[-1]["failed"] == []


def test_given_the_installed_squawk_then_it_is_the_pinned_version_and_accepts_every_known_rule(tmp_path: Path):
    binary = squawk_binary()
    assert squawk_version(binary) == SQUAWK_VERSION
    assert f"squawk-cli=={SQUAWK_VERSION}" in (REPO_ROOT / "constraints.txt").read_text().splitlines()
    empty = tmp_path / "empty.sql"
    empty.write_text("SELECT 1;\n")
    done = subprocess.run(
        [str(binary), "--exclude", ",".join(sorted(KNOWN_RULES)), str(empty)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    refused = subprocess.run([str(binary), "--exclude", "no-such-rule", str(empty)], capture_output=True, text=True)
    assert refused.returncode == 2  # the binary, too, refuses a name it does not know
