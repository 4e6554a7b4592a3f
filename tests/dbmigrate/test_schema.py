"""The domain rules V0001 encodes: idempotent notifications, typed endpoints, wildcard rules, deliberate deletes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import psycopg2
import psycopg2.errors
import psycopg2.extensions
import pytest


@pytest.fixture
def conn(migrated_db) -> Iterator[psycopg2.extensions.connection]:
    connection = migrated_db.connect()
    connection.autocommit = True
    yield connection
    connection.close()


def one(conn: psycopg2.extensions.connection, query: str, *params: Any) -> Any:
    with conn.cursor() as cur:
        cur.execute(query, params)
        row = cur.fetchone()
    assert row is not None, f"no row from {query}"
    return row[0]


def client(conn, name: str = "acme") -> int:
    return int(one(conn, "INSERT INTO clients (name) VALUES (%s) RETURNING id", name))


def endpoint(conn, client_id: int, kind: str = "email", config: dict[str, Any] | None = None, name: str = "ops") -> int:
    config = config if config is not None else {"address": "ops@example.com"}
    return int(
        one(
            conn,
            "INSERT INTO endpoints (client_id, name, type, config) VALUES (%s, %s, %s, %s) RETURNING id",
            client_id,
            name,
            kind,
            json.dumps(config),
        )
    )


def rule(conn, client_id: int, endpoint_id: int, **matching: str | None) -> int:
    return int(
        one(
            conn,
            "INSERT INTO rules (client_id, endpoint_id, name, source, alert_type, severity) "
            "VALUES (%s, %s, 'r', %s, %s, %s) RETURNING id",
            client_id,
            endpoint_id,
            matching.get("source"),
            matching.get("alert_type"),
            matching.get("severity"),
        )
    )


def notification(conn, alert_id: str, client_id: int, endpoint_id: int, rule_id: int | None = None) -> int:
    return int(
        one(
            conn,
            "INSERT INTO notifications (alert_id, client_id, rule_id, endpoint_id) "
            "VALUES (%s, %s, %s, %s) RETURNING id",
            alert_id,
            client_id,
            rule_id,
            endpoint_id,
        )
    )


def count(conn, table: str) -> int:
    return int(one(conn, f"SELECT count(*) FROM {table}"))


def test_given_migrated_database_then_each_table_is_commented_and_endpoints_have_no_legacy_email_columns(conn):
    with conn.cursor() as cur:
        cur.execute(
            "SELECT c.relname, obj_description(c.oid, 'pg_class') FROM pg_class c "
            "WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r' ORDER BY c.relname"
        )
        comments = dict(cur.fetchall())
        cur.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = 'endpoints'::regclass AND attnum > 0 "
            "AND NOT attisdropped ORDER BY attnum"
        )
        endpoint_columns = [row[0] for row in cur.fetchall()]
    for table in ("clients", "endpoints", "notifications", "rules"):
        assert comments.get(table), f"COMMENT ON TABLE {table} is missing"
    assert endpoint_columns == ["id", "client_id", "name", "type", "config", "enabled", "created_at", "updated_at"]


def test_given_a_notification_when_the_same_alert_notifies_the_same_endpoint_again_then_unique_violation(conn):
    client_id = client(conn)
    endpoint_id = endpoint(conn, client_id)
    notification(conn, "alert-1", client_id, endpoint_id)

    with pytest.raises(psycopg2.errors.UniqueViolation) as caught:
        notification(conn, "alert-1", client_id, endpoint_id)

    assert caught.value.diag.constraint_name == "notifications_alert_id_endpoint_id_key"
    other = endpoint(conn, client_id, "webhook", {"url": "https://hooks.example.com/x"}, name="hook")
    notification(conn, "alert-1", client_id, other)  # the same alert may notify another endpoint
    assert count(conn, "notifications") == 2


@pytest.mark.parametrize(
    ("kind", "config"),
    [
        ("email", {}),
        ("email", {"address": 42}),
        ("email", {"address": "not-an-address"}),
        ("email", {"email_address": "ops@example.com"}),
        ("slack", {}),
        ("slack", {"webhook_url": "http://insecure"}),
        ("slack", {"channel": "  "}),
        ("webhook", {"address": "ops@example.com"}),
        ("webhook", {"url": "ftp://files"}),
        ("email", ["ops@example.com"]),
    ],
)
def test_given_endpoint_config_not_matching_its_type_when_inserted_then_check_violation(conn, kind, config):
    client_id = client(conn)

    with pytest.raises(psycopg2.errors.CheckViolation) as caught:
        endpoint(conn, client_id, kind, config)

    assert caught.value.diag.constraint_name == "endpoints_config_matches_type"


@pytest.mark.parametrize(
    ("kind", "config"),
    [
        ("email", {"address": "ops@example.com"}),
        ("slack", {"webhook_url": "https://hooks.slack.com/services/T/B/x"}),
        ("slack", {"channel": "#alerts"}),
        ("webhook", {"url": "https://hooks.example.com/alert", "headers": {"X-Token": "t"}}),
    ],
)
def test_given_endpoint_config_matching_its_type_when_inserted_then_accepted(conn, kind, config):
    endpoint(conn, client(conn), kind, config)
    assert count(conn, "endpoints") == 1


def test_given_unknown_endpoint_type_when_inserted_then_type_check_violation(conn):
    with pytest.raises(psycopg2.errors.CheckViolation) as caught:
        endpoint(conn, client(conn), "sms", {"address": "ops@example.com"})
    assert caught.value.diag.constraint_name == "endpoints_type_check"


def test_given_rule_with_null_matching_fields_then_accepted_as_wildcards_and_empty_strings_refused(conn):
    client_id = client(conn)
    endpoint_id = endpoint(conn, client_id)
    rule(conn, client_id, endpoint_id)
    rule(conn, client_id, endpoint_id, severity="critical")

    with pytest.raises(psycopg2.errors.CheckViolation) as caught:
        rule(conn, client_id, endpoint_id, source="")

    assert caught.value.diag.constraint_name == "rules_matching_fields_not_blank"
    assert one(conn, "SELECT count(*) FROM rules WHERE source IS NULL AND alert_type IS NULL AND severity IS NULL") == 1


def test_given_rule_pointing_at_another_clients_endpoint_when_inserted_then_foreign_key_violation(conn):
    theirs = endpoint(conn, client(conn, "other"))

    with pytest.raises(psycopg2.errors.ForeignKeyViolation) as caught:
        rule(conn, client(conn, "acme"), theirs)

    assert caught.value.diag.constraint_name == "rules_endpoint_fkey"


def test_given_client_without_notifications_when_deleted_then_rules_and_endpoints_cascade(conn):
    client_id = client(conn)
    rule(conn, client_id, endpoint(conn, client_id))
    keeper = client(conn, "keeper")
    rule(conn, keeper, endpoint(conn, keeper))

    with conn.cursor() as cur:
        cur.execute("DELETE FROM clients WHERE id = %s", (client_id,))

    assert (count(conn, "clients"), count(conn, "endpoints"), count(conn, "rules")) == (1, 1, 1)


def test_given_client_with_notification_history_when_deleted_then_refused_and_nothing_changes(conn):
    client_id = client(conn)
    endpoint_id = endpoint(conn, client_id)
    rule_id = rule(conn, client_id, endpoint_id)
    notification(conn, "alert-1", client_id, endpoint_id, rule_id)

    with pytest.raises(psycopg2.errors.ForeignKeyViolation) as caught, conn.cursor() as cur:
        cur.execute("DELETE FROM clients WHERE id = %s", (client_id,))

    assert caught.value.diag.constraint_name in {"notifications_client_fkey", "notifications_endpoint_fkey"}
    assert [count(conn, t) for t in ("clients", "endpoints", "rules", "notifications")] == [1, 1, 1, 1]
    assert one(conn, "SELECT rule_id FROM notifications") == rule_id, "the failed delete left the history intact"


def test_given_endpoint_a_rule_routes_to_when_deleted_then_refused(conn):
    client_id = client(conn)
    endpoint_id = endpoint(conn, client_id)
    rule(conn, client_id, endpoint_id)

    with pytest.raises(psycopg2.errors.ForeignKeyViolation) as caught, conn.cursor() as cur:
        cur.execute("DELETE FROM endpoints WHERE id = %s", (endpoint_id,))

    assert caught.value.diag.constraint_name == "rules_endpoint_fkey"


def test_given_rule_with_notifications_when_deleted_then_notifications_keep_their_history_without_the_rule(conn):
    client_id = client(conn)
    endpoint_id = endpoint(conn, client_id)
    rule_id = rule(conn, client_id, endpoint_id)
    notification(conn, "alert-1", client_id, endpoint_id, rule_id)

    with conn.cursor() as cur:
        cur.execute("DELETE FROM rules WHERE id = %s", (rule_id,))

    assert one(conn, "SELECT count(*) FROM notifications WHERE rule_id IS NULL AND alert_id = 'alert-1'") == 1


@pytest.mark.parametrize(
    ("column", "value", "constraint"),
    [
        ("status", "delivered", "notifications_status_check"),
        ("attempts", -1, "notifications_attempts_check"),
        ("alert_id", " ", "notifications_alert_id_not_blank"),
    ],
)
def test_given_invalid_notification_state_when_updated_then_check_violation(conn, column, value, constraint):
    client_id = client(conn)
    notification_id = notification(conn, "alert-1", client_id, endpoint(conn, client_id))

    with pytest.raises(psycopg2.errors.CheckViolation) as caught, conn.cursor() as cur:
        cur.execute(f"UPDATE notifications SET {column} = %s WHERE id = %s", (value, notification_id))

    assert caught.value.diag.constraint_name == constraint


def test_given_new_notification_then_it_is_pending_and_found_through_the_partial_dispatch_index(conn):
    client_id = client(conn)
    notification(conn, "alert-1", client_id, endpoint(conn, client_id))

    assert one(conn, "SELECT status FROM notifications") == "pending"
    with conn.cursor() as cur:
        cur.execute("SET enable_seqscan = off")
        cur.execute("EXPLAIN SELECT id FROM notifications WHERE status = 'pending' ORDER BY created_at LIMIT 10")
        plan = "\n".join(row[0] for row in cur.fetchall())
    assert "notifications_pending_created_at_idx" in plan, plan


def test_given_row_when_updated_then_updated_at_is_maintained_by_the_database(conn):
    with conn.cursor() as cur:
        cur.execute(
            "INSERT INTO clients (name, created_at, updated_at) VALUES ('old', '2000-01-01Z', '2000-01-01Z') "
            "RETURNING id"
        )
        row = cur.fetchone()
        assert row is not None
        cur.execute("UPDATE clients SET active = false WHERE id = %s", (row[0],))

    assert one(conn, "SELECT updated_at > created_at FROM clients") is True
