"""Schema verification: the live catalog against expected_schema.json, and the snapshot against sql/."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from dbmigrate.catalog import read_catalog
from dbmigrate.files import discover_migrations
from dbmigrate.snapshot import DEFAULT_OUTPUT, build_expected_schema, render_snapshot
from dbmigrate.verify import (
    REGENERATE_COMMAND,
    Difference,
    DifferenceKind,
    MigrationRef,
    compare_catalogs,
    load_expected_schema,
    pending_migrations,
    verify,
)

from tests.dbmigrate.conftest import INITIAL, SQL_DIR

K = DifferenceKind


@pytest.fixture
def expected():
    return load_expected_schema()


@pytest.fixture
def conn(migrated_db):
    connection = migrated_db.connect()
    connection.autocommit = True
    yield connection
    connection.close()


def execute(conn, *statements: str) -> None:
    with conn.cursor() as cur:
        for statement in statements:
            cur.execute(statement)


# -- the checked-in snapshot cannot drift from sql/ -------------------------------------------------------------------


def test_given_sql_dir_applied_to_fresh_database_then_expected_schema_json_matches_it(conn, expected):
    files = discover_migrations(SQL_DIR)
    live = build_expected_schema(conn, files)
    regenerate = f"functions/dbmigrate/expected_schema.json is stale; regenerate it with: {REGENERATE_COMMAND}"

    drift = [d.render() for d in compare_catalogs(expected.catalog, live.catalog)]
    assert not drift, regenerate + "\n" + "\n".join(drift)
    assert expected.migrations == live.migrations, (
        f"{regenerate}\nsnapshot lists {expected.migrations}, sql/ has {live.migrations}"
    )
    assert DEFAULT_OUTPUT.read_text(encoding="utf-8") == render_snapshot(live), regenerate


# -- verify ----------------------------------------------------------------------------------------


def test_given_migrated_database_when_verified_then_ok(conn, expected):
    result = verify(conn, expected)

    assert result.ok, result.render()
    assert result.pending_migrations == ()
    assert result.tables_checked == 4
    assert result.render() == "schema matches the expected schema (4 tables)"


@pytest.mark.parametrize(
    ("change", "differences"),
    [
        pytest.param(
            "ALTER TABLE notifications DROP COLUMN last_error",
            [Difference(K.COLUMN_MISSING, "notifications", "last_error", expected="text NULL")],
            id="column dropped",
        ),
        pytest.param(
            "UPDATE pg_index SET indisvalid = false "
            "WHERE indexrelid = 'notifications_pending_created_at_idx'::regclass",
            [
                Difference(
                    K.INDEX_INVALID,
                    "notifications",
                    "notifications_pending_created_at_idx",
                    actual="indisvalid = false (a failed CREATE INDEX CONCURRENTLY?): drop and recreate it",
                )
            ],
            id="index invalid",
        ),
        pytest.param("DROP TABLE notifications", [Difference(K.TABLE_MISSING, "notifications")], id="table dropped"),
        pytest.param(
            "ALTER TABLE notifications ALTER COLUMN attempts TYPE bigint",
            [Difference(K.COLUMN_TYPE_DIFFERS, "notifications", "attempts", "integer", "bigint")],
            id="column type",
        ),
        pytest.param(
            "ALTER TABLE rules ALTER COLUMN source SET NOT NULL",
            [Difference(K.COLUMN_NULLABILITY_DIFFERS, "rules", "source", "NULL", "NOT NULL")],
            id="nullability",
        ),
        pytest.param(
            "DROP INDEX notifications_rule_id_idx",
            [
                Difference(
                    K.INDEX_MISSING,
                    "notifications",
                    "notifications_rule_id_idx",
                    expected="CREATE INDEX notifications_rule_id_idx ON public.notifications USING btree (rule_id) "
                    "WHERE (rule_id IS NOT NULL)",
                )
            ],
            id="index dropped",
        ),
        pytest.param(
            "ALTER TABLE notifications DROP CONSTRAINT notifications_alert_id_endpoint_id_key",
            [
                Difference(
                    K.KEY_MISSING,
                    "notifications",
                    "notifications_alert_id_endpoint_id_key",
                    expected="UNIQUE (alert_id, endpoint_id)",
                ),
                Difference(
                    K.INDEX_MISSING,
                    "notifications",
                    "notifications_alert_id_endpoint_id_key",
                    expected="CREATE UNIQUE INDEX notifications_alert_id_endpoint_id_key ON public.notifications "
                    "USING btree (alert_id, endpoint_id)",
                ),
            ],
            id="unique key dropped",
        ),
        pytest.param(
            "ALTER TABLE endpoints DROP CONSTRAINT endpoints_client_fkey, ADD CONSTRAINT endpoints_client_fkey "
            "FOREIGN KEY (client_id) REFERENCES clients (id) ON DELETE RESTRICT",
            [
                Difference(
                    K.FOREIGN_KEY_DIFFERS,
                    "endpoints",
                    "endpoints_client_fkey",
                    "(client_id) REFERENCES clients (id) ON DELETE CASCADE",
                    "(client_id) REFERENCES clients (id) ON DELETE RESTRICT",
                )
            ],
            id="on delete changed",
        ),
        pytest.param(
            "CREATE TABLE scratch (id integer)",
            [Difference(K.TABLE_UNEXPECTED, "scratch", actual="(id)")],
            id="unexpected table",
        ),
        pytest.param(
            "ALTER TABLE clients ADD COLUMN legacy_email text",
            [Difference(K.COLUMN_UNEXPECTED, "clients", "legacy_email", actual="text NULL")],
            id="unexpected column",
        ),
    ],
)
def test_given_schema_changed_behind_the_runner_when_verified_then_precise_diff(conn, expected, change, differences):
    execute(conn, change)

    result = verify(conn, expected)

    assert not result.ok
    assert list(result.differences) == differences, result.render()
    assert result.lines() == [d.render() for d in differences]


def test_given_differences_when_rendered_then_one_line_each_naming_table_and_object(conn, expected):
    execute(
        conn,
        # (the type change rewrites the table and its indexes, so it goes before the index is made invalid)
        "ALTER TABLE notifications ALTER COLUMN attempts TYPE bigint",
        "ALTER TABLE notifications DROP COLUMN last_error",
        "UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'notifications_pending_created_at_idx'::regclass",
    )

    lines = verify(conn, expected).render().splitlines()

    assert lines == [
        "column type differs: notifications.attempts: expected integer, found bigint",
        "column missing: notifications.last_error: text NULL",
        "index invalid: notifications.notifications_pending_created_at_idx: "
        "indisvalid = false (a failed CREATE INDEX CONCURRENTLY?): drop and recreate it",
    ]


# -- migrations ------------------------------------------------------------------------------------


def test_given_expected_schema_with_a_newer_migration_when_verified_then_it_is_reported_pending(conn, expected):
    newer = dataclasses.replace(expected, migrations=(*expected.migrations, MigrationRef(2, "add_x", "ab" * 32)))

    result = verify(conn, newer)

    assert [m.filename for m in result.pending_migrations] == ["V0002__add_x.sql"]
    assert result.lines() == ["migration pending: V0002__add_x.sql"]
    assert pending_migrations(conn, newer) == (MigrationRef(2, "add_x", "ab" * 32),)


def test_given_database_without_history_when_pending_then_every_expected_migration(pg_conn, expected):
    assert pending_migrations(pg_conn, expected) == expected.migrations


def test_given_history_with_other_checksum_or_unknown_version_when_verified_then_both_reported(conn, expected):
    execute(
        conn,
        "UPDATE deployflow_schema_history SET checksum = repeat('0', 64) WHERE version = 1",
        "INSERT INTO deployflow_schema_history (version, name, checksum, duration_ms, applied_by) "
        "VALUES (7, 'from_the_future', 'x', 1, 'someone')",
    )

    kinds = [(d.kind, d.name) for d in verify(conn, expected).differences]

    assert kinds == [(K.MIGRATION_CHECKSUM_DIFFERS, INITIAL), (K.MIGRATION_UNEXPECTED, "V0007__from_the_future.sql")]


def test_given_check_migrations_disabled_when_verified_then_only_the_catalog_counts(conn, expected):
    execute(conn, "DELETE FROM deployflow_schema_history")
    assert verify(conn, expected, check_migrations=False).ok
    assert not verify(conn, expected).ok


def test_given_catalog_when_serialised_and_loaded_then_identical(conn, tmp_path: Path, expected):
    catalog = read_catalog(conn)
    path = tmp_path / "expected.json"
    path.write_text(render_snapshot(dataclasses.replace(expected, catalog=catalog)))

    assert load_expected_schema(path).catalog == catalog
    assert catalog.table_names == ("clients", "endpoints", "notifications", "rules"), "history table excluded"


def test_given_connection_in_transaction_mode_when_verified_then_ok(migrated_db, expected):
    # The verify Lambda's path: a plain psycopg2 connection (not autocommit) to a database the migration task migrated.
    connection = migrated_db.connect()
    try:
        result = verify(connection, expected)
        assert result.ok, result.render()
    finally:
        connection.close()
