"""`baseline`: adopt a database created before the runner (the one-shot script), against a real PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import psycopg2.extensions
import pytest
from dbmigrate import baseline, migrate, verify
from dbmigrate.baseline import BASELINE_MARK, parse_version
from dbmigrate.errors import (
    BaselineHistoryNotEmptyError,
    BaselineSchemaMismatchError,
    DbConfigurationError,
    ExitCode,
    MigrationLockNotAcquiredError,
    MigrationStatementError,
)
from dbmigrate.files import discover_migrations
from dbmigrate.verify import load_expected_schema

from deployflow.local.postgres import ConnectionParams
from tests.dbmigrate.conftest import INITIAL, SQL_DIR, SettingsFactory
from tests.dbmigrate.test_cli import assert_failed, by_event, cli_env, run_cli
from tests.dbmigrate.test_runner import advisory_lock_held, history_rows, relation_exists, write

HISTORY = "deployflow_schema_history"


def apply_by_hand(conn: psycopg2.extensions.connection, path: Path = SQL_DIR / INITIAL) -> None:
    """What the old one-shot script did: run the SQL straight at the database, no history table."""
    with conn.cursor() as cur:
        cur.execute(path.read_text(encoding="utf-8"))


def execute(conn: psycopg2.extensions.connection, *statements: str) -> None:
    with conn.cursor() as cur:
        for statement in statements:
            cur.execute(statement)


def history_checksums(conn: psycopg2.extensions.connection) -> dict[int, str]:
    with conn.cursor() as cur:
        cur.execute(f"SELECT version, checksum FROM {HISTORY}")
        return dict(cur.fetchall())


@pytest.fixture
def adopted_db(pg_conn: psycopg2.extensions.connection) -> psycopg2.extensions.connection:
    """A database whose schema was created by hand from V0001's SQL: the production situation."""
    apply_by_hand(pg_conn)
    assert not relation_exists(pg_conn, HISTORY), "test setup: applying by hand must not create the history"
    return pg_conn


def test_given_schema_created_by_hand_when_migrate_without_baseline_then_v0001_fails_on_existing_objects(
    make_settings: SettingsFactory, adopted_db: psycopg2.extensions.connection
) -> None:
    # The reason baseline exists: the runner cannot adopt such a database on its own.
    with pytest.raises(MigrationStatementError) as raised:
        migrate(make_settings())

    # 42723 here (V0001 starts with CREATE FUNCTION); 42P07 where the first statement is a CREATE TABLE.
    assert raised.value.sqlstate in {"42723", "42P07"}, str(raised.value)
    assert "already exists" in str(raised.value)
    assert INITIAL in str(raised.value)


def test_given_schema_created_by_hand_when_baselined_then_history_recorded_and_migrate_is_a_noop(
    make_settings: SettingsFactory, adopted_db: psycopg2.extensions.connection
) -> None:
    settings = make_settings()

    report = baseline(settings, 1)
    rerun = migrate(settings)

    assert report.recorded == (INITIAL,)
    (file,) = discover_migrations(SQL_DIR)
    assert history_rows(adopted_db) == [(1, "initial_schema", f"{BASELINE_MARK} (pytest)")]
    assert history_checksums(adopted_db) == {1: file.checksum}, "the baseline must record the file's checksum"
    assert rerun.applied == (), f"migrate after baseline applied {rerun.applied}"
    assert rerun.lock_taken is False, "migrate at head must be the read-only fast path"
    result = verify(adopted_db, load_expected_schema())
    assert result.ok, f"verify after baseline: {result.lines()}"


def test_given_baseline_at_v0001_when_a_newer_file_exists_then_migrate_applies_only_that_one(
    make_settings: SettingsFactory, adopted_db: psycopg2.extensions.connection, migrations_dir: Path
) -> None:
    write(migrations_dir, "V0002__add_note.sql", "ALTER TABLE clients ADD COLUMN note text;\n")
    settings = make_settings(migrations_dir)

    baseline(settings, 1)
    report = migrate(settings)

    assert [m.filename for m in report.applied] == ["V0002__add_note.sql"]
    assert [row[0] for row in history_rows(adopted_db)] == [1, 2]


@pytest.mark.parametrize(
    ("drift", "expected_lines"),
    [
        (
            ["ALTER TABLE notifications DROP COLUMN last_error"],
            ["column missing: notifications.last_error: text NULL"],
        ),
        (
            ["DROP INDEX notifications_pending_created_at_idx", "ALTER TABLE rules ALTER COLUMN name DROP NOT NULL"],
            [
                "column nullability differs: rules.name: expected NOT NULL, found NULL",
                "index missing: notifications.notifications_pending_created_at_idx",
            ],
        ),
    ],
)
def test_given_hand_made_schema_with_drift_when_baselined_then_refused_listing_the_diff_and_nothing_recorded(
    make_settings: SettingsFactory,
    adopted_db: psycopg2.extensions.connection,
    drift: list[str],
    expected_lines: list[str],
) -> None:
    execute(adopted_db, *drift)

    with pytest.raises(BaselineSchemaMismatchError) as raised:
        baseline(make_settings(), 1)

    message = str(raised.value)
    for line in expected_lines:
        assert line in message, f"{line!r} not in the refusal: {message}"
    assert "nothing recorded" in message
    assert not relation_exists(adopted_db, HISTORY), "a refused baseline must not create the history table"


def test_given_empty_database_when_baselined_then_refused_pointing_at_migrate(
    make_settings: SettingsFactory, pg_conn: psycopg2.extensions.connection
) -> None:
    with pytest.raises(BaselineSchemaMismatchError, match="needs migrate, not baseline"):
        baseline(make_settings(), 1)

    assert not relation_exists(pg_conn, HISTORY)


def test_given_database_with_history_when_baselined_then_refused_and_history_unchanged(
    make_settings: SettingsFactory, migrated_db: ConnectionParams, pg_conn: psycopg2.extensions.connection
) -> None:
    before = history_rows(pg_conn)

    with pytest.raises(BaselineHistoryNotEmptyError) as raised:
        baseline(make_settings(), 1)

    assert f"{HISTORY} already has 1 row(s) ({INITIAL})" in str(raised.value)
    assert "run migrate instead" in str(raised.value)
    assert history_rows(pg_conn) == before


def test_given_empty_history_table_left_behind_when_baselined_then_recorded(
    make_settings: SettingsFactory, adopted_db: psycopg2.extensions.connection
) -> None:
    # e.g. a runner that created the table, then failed on V0001 with 42P07.
    with pytest.raises(MigrationStatementError):
        migrate(make_settings())
    assert relation_exists(adopted_db, HISTORY)
    assert history_rows(adopted_db) == []

    baseline(make_settings(), 1)

    assert [row[0] for row in history_rows(adopted_db)] == [1]


def test_given_a_version_the_expected_schema_does_not_describe_when_baselined_then_refused_before_connecting(
    make_settings: SettingsFactory, adopted_db: psycopg2.extensions.connection, migrations_dir: Path
) -> None:
    write(migrations_dir, "V0002__add_note.sql", "ALTER TABLE clients ADD COLUMN note text;\n")
    execute(adopted_db, "ALTER TABLE clients ADD COLUMN note text")

    with pytest.raises(DbConfigurationError) as newer:
        baseline(make_settings(migrations_dir), 2)
    with pytest.raises(DbConfigurationError) as missing:
        baseline(make_settings(), 7)

    assert "V0002 cannot be baselined: only V0001, the version expected_schema.json describes" in str(newer.value)
    assert "V0007 has no migration file (files: V0001)" in str(missing.value)
    assert not relation_exists(adopted_db, HISTORY)


def test_given_a_file_edited_since_the_snapshot_when_baselined_then_refused_as_stale(
    make_settings: SettingsFactory, adopted_db: psycopg2.extensions.connection, migrations_dir: Path
) -> None:
    with (migrations_dir / INITIAL).open("a") as f:
        f.write("\n-- edited\n")

    with pytest.raises(DbConfigurationError, match=f"expected_schema.json does not match .*{INITIAL}.*regenerate"):
        baseline(make_settings(migrations_dir), 1)

    assert not relation_exists(adopted_db, HISTORY)


def test_given_lock_held_by_a_runner_when_baselined_then_lock_not_acquired_and_nothing_recorded(
    make_settings: SettingsFactory, postgres_db: ConnectionParams, adopted_db: psycopg2.extensions.connection
) -> None:
    with advisory_lock_held(postgres_db), pytest.raises(MigrationLockNotAcquiredError):
        baseline(make_settings(lock_wait_seconds=0), 1)

    assert not relation_exists(adopted_db, HISTORY)


@pytest.mark.parametrize(("text", "version"), [("0001", 1), ("1", 1), ("V0012", 12), (" 3 ", 3)])
def test_given_version_spellings_when_parsed_then_the_number(text: str, version: int) -> None:
    assert parse_version(text) == version


@pytest.mark.parametrize("text", ["", "0", "V", "1.0", "x1", "-1"])
def test_given_a_bad_version_when_parsed_then_configuration_error_naming_the_option(text: str) -> None:
    with pytest.raises(DbConfigurationError, match="--version"):
        parse_version(text)


# --- the command line -------------------------------------------------------------------------------------------------


def test_given_hand_made_schema_when_cli_baseline_then_exit_0_and_cli_migrate_is_a_noop(
    postgres_db: ConnectionParams, adopted_db: psycopg2.extensions.connection
) -> None:
    env = cli_env(postgres_db, MIGRATION_APPLIED_BY="ops@laptop")

    adopted = run_cli(env, "baseline", "--version", "0001")
    rerun = run_cli(env, "migrate")

    assert adopted.returncode == ExitCode.OK, adopted.stderr
    (recorded,) = by_event(adopted, "baseline_recorded")
    assert (recorded["recorded"], recorded["applied_by"]) == ([INITIAL], "baseline (ops@laptop)")
    assert rerun.returncode == ExitCode.OK, rerun.stderr
    (finished,) = by_event(rerun, "migrate_finished")
    assert (finished["applied"], finished["lock_taken"], finished["head_version"]) == ([], False, 1)
    assert postgres_db.password not in adopted.stdout + adopted.stderr


def test_given_drift_when_cli_baseline_then_exit_10_with_the_diff_on_one_line(
    postgres_db: ConnectionParams, adopted_db: psycopg2.extensions.connection
) -> None:
    execute(adopted_db, "ALTER TABLE notifications DROP COLUMN last_error")

    result = run_cli(cli_env(postgres_db), "baseline", "--version", "0001")

    assert_failed(result, ExitCode.SCHEMA_MISMATCH, "baseline refused", "column missing: notifications.last_error")
    assert [line["name"] for line in by_event(result, "schema_difference")] == ["last_error"]


def test_given_history_when_cli_baseline_then_exit_7(migrated_db: ConnectionParams) -> None:
    result = run_cli(cli_env(migrated_db), "baseline", "--version", "0001")

    assert_failed(result, ExitCode.HISTORY_MISMATCH, "baseline refused", "already has 1 row(s)")


def test_given_no_version_or_a_bad_one_when_cli_baseline_then_usage_or_configuration_exit(
    postgres_db: ConnectionParams,
) -> None:
    missing = run_cli(cli_env(postgres_db), "baseline")

    assert missing.returncode == ExitCode.USAGE, missing.stderr
    assert "--version" in missing.stderr
    assert_failed(run_cli(cli_env(postgres_db), "baseline", "--version", "first"), ExitCode.CONFIGURATION, "--version")
