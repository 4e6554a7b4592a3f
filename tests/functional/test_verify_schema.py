"""Verify schema through its handler: a real PostgreSQL (tests/fixtures/postgres.py), the secret in moto's Secrets
Manager."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import psycopg2.extensions
import pytest
from dbmigrate import Settings, aws_secrets, migrate
from moto import mock_aws
from release_steps import config, verify_schema
from release_steps.config import DatabaseSettings
from release_steps.errors import (
    ConfigurationError,
    DatabaseAuthError,
    DatabaseUnreachableError,
    DeployflowError,
    SchemaMismatchError,
)
from release_steps.models import ReleaseState, SchemaResult

from deployflow.local.ports import free_loopback_port
from deployflow.local.postgres import ConnectionParams
from tests.functional.release_world import REGION, load_event

INITIAL = "V0001__initial_schema.sql"
NO_PREFIX = "["  # the ASL names the failed state; a message never starts with one
# What the Step Functions cause may hold; the Lambda error envelope (type, request id, stack trace) shares it.
CAUSE_LIMIT = 32_768

SecretWriter = Callable[..., str]


def migrate_db(params: ConnectionParams) -> None:
    report = migrate(
        Settings(
            host=params.host,
            port=params.port,
            dbname=params.dbname,
            user=params.user,
            password=params.password,
            sslmode=params.sslmode,
            connect_timeout_seconds=5,
            lock_wait_seconds=5,
            applied_by="pytest",
        )
    )
    assert [m.filename for m in report.applied] == [INITIAL], f"test setup could not migrate: {report}"


def execute(conn: psycopg2.extensions.connection, *statements: str) -> None:
    with conn.cursor() as cur:
        for statement in statements:
            cur.execute(statement)


def rds_secret(params: ConnectionParams) -> dict[str, Any]:
    """The secret RDS writes for a database, pointed at the test database."""
    return {
        "engine": "postgres",
        "host": params.host,
        "port": params.port,
        "username": params.user,
        "password": params.password,
        "dbname": params.dbname,
    }


@pytest.fixture
def secrets_world(release_env: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """moto's Secrets Manager, the function's database settings (TLS off: the local cluster has none)."""
    aws_secrets.reset()
    with mock_aws():
        release_env.setenv("DB_SSLMODE", "disable")
        release_env.setenv("DB_CONNECT_TIMEOUT_SECONDS", "1")
        config.reset()
        yield release_env
    aws_secrets.reset()


@pytest.fixture
def put_secret(secrets_world: pytest.MonkeyPatch) -> SecretWriter:
    """Store a secret (a dict, or raw text) and point DB_SECRET_ARN at it; returns the ARN."""
    client = boto3.client("secretsmanager", region_name=REGION)
    counter = iter(range(1000))

    def write(value: dict[str, Any] | str) -> str:
        text = value if isinstance(value, str) else json.dumps(value)
        arn = str(client.create_secret(Name=f"deployflow/db-{next(counter)}", SecretString=text)["ARN"])
        secrets_world.setenv("DB_SECRET_ARN", arn)
        config.reset()
        return arn

    return write


@pytest.fixture
def migrated(postgres_db: ConnectionParams, put_secret: SecretWriter) -> ConnectionParams:
    """A database at head, named by the function's secret."""
    migrate_db(postgres_db)
    put_secret(rds_secret(postgres_db))
    return postgres_db


def invoke(context: Any, *, dry_run: bool = False) -> SchemaResult:
    event = load_event("verify_schema")
    event["request"]["dryRun"] = dry_run
    return SchemaResult.load(verify_schema.lambda_handler(event, context))


def invoke_error(context: Any, error: type[DeployflowError], *, dry_run: bool = False) -> str:
    """The step's error message (it must carry the step name); fails if the step returns or raises another error."""
    with pytest.raises(error) as raised:
        invoke(context, dry_run=dry_run)
    message = raised.value.message
    assert not message.startswith(NO_PREFIX), f"the message starts with a step prefix: {message}"
    return message


@contextlib.contextmanager
def silent_server() -> Iterator[int]:
    """A TCP port that completes the handshake (kernel backlog) and then never says a word."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        yield int(server.getsockname()[1])


# --- the events file ------------------------------------------------------------------------------------------------


def test_given_the_events_file_when_parsed_then_it_is_a_release_state() -> None:
    state = ReleaseState.load(load_event("verify_schema"))

    assert state.request.image_tag == "2026-11-23.4"
    assert state.request.dry_run is False


# --- verdicts -------------------------------------------------------------------------------------------------------


def test_given_a_migrated_database_when_verified_then_match_with_the_applied_versions(
    migrated: ConnectionParams, release_context: Any
) -> None:
    result = invoke(release_context)

    assert result.verdict == "match"
    assert result.applied_versions == ["V0001"]
    assert result.differences == []
    assert result.pending_migrations == []


def test_given_a_migrated_database_when_dry_run_then_match(migrated: ConnectionParams, release_context: Any) -> None:
    result = invoke(release_context, dry_run=True)

    assert (result.verdict, result.differences, result.pending_migrations) == ("match", [], [])


def test_given_a_dropped_column_when_verified_then_schema_mismatch_names_table_column_and_database(
    migrated: ConnectionParams, pg_conn: psycopg2.extensions.connection, release_context: Any
) -> None:
    execute(pg_conn, "ALTER TABLE notifications DROP COLUMN last_error")

    message = invoke_error(release_context, SchemaMismatchError)

    lines = message.splitlines()
    assert f"{migrated.host}:{migrated.port}/{migrated.dbname}" in lines[0]
    assert "in 1 place(s)" in lines[0]
    assert "  column missing: notifications.last_error: text NULL" in lines
    assert migrated.password not in message


def test_given_an_unmigrated_database_when_dry_run_then_would_change_listing_v0001_pending(
    postgres_db: ConnectionParams, put_secret: SecretWriter, release_context: Any
) -> None:
    put_secret(rds_secret(postgres_db))

    result = invoke(release_context, dry_run=True)

    assert result.verdict == "would-change"
    assert result.pending_migrations == [INITIAL]
    assert result.applied_versions == []
    assert "table missing: clients" in result.differences
    assert f"migration pending: {INITIAL}" in result.differences


def test_given_an_unmigrated_database_when_verified_after_the_migration_then_mismatch_says_still_pending(
    postgres_db: ConnectionParams, put_secret: SecretWriter, release_context: Any
) -> None:
    put_secret(rds_secret(postgres_db))

    message = invoke_error(release_context, SchemaMismatchError)

    assert f"1 migration(s) still pending after the migration task succeeded: {INITIAL}" in message
    assert "  table missing: notifications" in message.splitlines()


def test_given_drift_and_nothing_pending_when_dry_run_then_mismatch_reported_not_raised(
    migrated: ConnectionParams, pg_conn: psycopg2.extensions.connection, release_context: Any
) -> None:
    # No migration of this release removes the drift: the real run would fail, the dry run says so.
    execute(pg_conn, "DROP INDEX notifications_rule_id_idx")

    result = invoke(release_context, dry_run=True)

    assert result.verdict == "mismatch"
    assert result.pending_migrations == []
    assert [line for line in result.differences if "notifications_rule_id_idx" in line] == [
        "index missing: notifications.notifications_rule_id_idx: "
        "CREATE INDEX notifications_rule_id_idx ON public.notifications USING btree (rule_id) "
        "WHERE (rule_id IS NOT NULL)"
    ]


def test_given_a_huge_diff_when_verified_then_the_message_fits_the_cause_and_counts_the_rest(
    migrated: ConnectionParams, pg_conn: psycopg2.extensions.connection, release_context: Any
) -> None:
    columns = ", ".join(f"column_with_a_rather_long_name_{i} integer" for i in range(12))
    execute(pg_conn, *(f"CREATE TABLE stray_table_{i:04d} ({columns})" for i in range(300)))

    message = invoke_error(release_context, SchemaMismatchError)
    dry = invoke(release_context, dry_run=True)

    envelope = json.dumps(
        {
            "errorMessage": message,
            "errorType": "SchemaMismatchError",
            "requestId": "8f5a2b7c-0d1e-4f3a-9b6c-5d4e3f2a1b0c",
            "stackTrace": ['  File "/var/task/release_steps/observability.py", line 80, in wrapper\n' * 20],
        }
    )
    assert len(envelope) < CAUSE_LIMIT, f"the Lambda cause would be {len(envelope)} characters"
    assert "in 300 place(s)" in message.splitlines()[0]
    assert "  unexpected table: stray_table_0000: (column_with_a_rather_long_name_0" in message
    assert message.splitlines()[-1].endswith("300 in all (see the function log)")
    assert dry.verdict == "mismatch"
    assert dry.differences[-1].endswith("300 in all (see the function log)")
    assert len(json.dumps(dry.differences)) < 30_000, "a dry run's differences must stay small in the state"


# --- the database does not answer -----------------------------------------------------------------------------------


def test_given_a_closed_port_when_verified_then_unreachable_names_host_port_db_and_the_bound(
    postgres_db: ConnectionParams, put_secret: SecretWriter, release_context: Any
) -> None:
    port = free_loopback_port()
    put_secret({**rds_secret(postgres_db), "port": str(port)})

    message = invoke_error(release_context, DatabaseUnreachableError)

    assert f"127.0.0.1:{port}/{postgres_db.dbname} unreachable" in message
    assert "DB_CONNECT_TIMEOUT_SECONDS=1" in message


def test_given_a_server_that_never_answers_when_verified_then_unreachable_within_the_bound(
    postgres_db: ConnectionParams, put_secret: SecretWriter, release_context: Any
) -> None:
    outcome: list[BaseException | dict[str, Any]] = []

    def run() -> None:
        try:
            outcome.append(verify_schema.lambda_handler(load_event("verify_schema"), release_context))
        except BaseException as e:
            outcome.append(e)

    with silent_server() as port:
        put_secret({**rds_secret(postgres_db), "port": port})
        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        # A hang guard, not a measurement: the bound is 1 s (libpq's minimum connect_timeout is 2 s).
        worker.join(timeout=60)
        hung = worker.is_alive()
    assert not hung, "the step still waited 60 s after DB_CONNECT_TIMEOUT_SECONDS=1: the connect is not bounded"
    (error,) = outcome
    assert isinstance(error, DatabaseUnreachableError), f"expected DatabaseUnreachableError, got {error!r}"
    assert f"127.0.0.1:{port}/{postgres_db.dbname} unreachable" in error.message


# --- credentials and configuration ----------------------------------------------------------------------------------


def test_given_a_wrong_password_when_verified_then_database_auth_error(
    postgres_db: ConnectionParams, put_secret: SecretWriter, release_context: Any
) -> None:
    put_secret({**rds_secret(postgres_db), "password": "not-the-password"})

    message = invoke_error(release_context, DatabaseAuthError)

    assert "password authentication failed" in message
    assert f"{postgres_db.host}:{postgres_db.port}/{postgres_db.dbname}" in message
    assert "not-the-password" not in message


@pytest.mark.parametrize("missing", ["password", "host", "username", "dbname"])
def test_given_a_secret_without_a_key_when_verified_then_configuration_error_names_the_key(
    postgres_db: ConnectionParams, put_secret: SecretWriter, release_context: Any, missing: str
) -> None:
    secret = rds_secret(postgres_db)
    del secret[missing]
    arn = put_secret(secret)

    message = invoke_error(release_context, ConfigurationError)

    assert f"has no '{missing}' key" in message
    assert f"{arn} (DB_SECRET_ARN)" in message
    assert postgres_db.password not in message


def test_given_an_rds_managed_secret_with_only_credentials_when_db_host_and_name_are_set_then_match(
    migrated: ConnectionParams, put_secret: SecretWriter, secrets_world: pytest.MonkeyPatch, release_context: Any
) -> None:
    # GIVEN the secret RDS manages for a master user (username and password only) and the connection keys set on
    # the function (DbHost / DbName / the port)
    put_secret({"username": migrated.user, "password": migrated.password})
    secrets_world.setenv("DB_HOST", migrated.host)
    secrets_world.setenv("DB_PORT", str(migrated.port))
    secrets_world.setenv("DB_NAME", migrated.dbname)
    config.reset()

    # WHEN the schema is verified
    result = invoke(release_context)

    # THEN it reaches the database and matches
    assert result.verdict == "match", result


def test_given_a_credentials_only_secret_without_db_host_when_verified_then_the_error_names_both_ways(
    postgres_db: ConnectionParams, put_secret: SecretWriter, release_context: Any
) -> None:
    put_secret({"username": postgres_db.user, "password": postgres_db.password})

    message = invoke_error(release_context, ConfigurationError)

    assert "has no 'host', 'dbname' keys" in message, message
    assert "and DB_HOST, DB_NAME are not set" in message, message


def test_given_a_secret_without_port_when_read_then_5432_and_the_function_settings_apply() -> None:
    settings = DatabaseSettings.from_environ({"DB_SECRET_ARN": "arn:secret", "DB_CONNECT_TIMEOUT_SECONDS": "7"})
    secret = {"engine": "postgres", "host": "db.internal", "username": "u", "password": "p", "dbname": "alerting"}

    target = verify_schema.connection_settings(secret, settings)

    assert (target.host, target.port, target.dbname, target.user) == ("db.internal", 5432, "alerting", "u")
    assert target.sslmode == "require", "TLS must be on unless DB_SSLMODE says otherwise"
    assert target.connect_timeout_seconds == 7


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("not json at all", "is not JSON"),
        ('["a", "list"]', "is not a JSON object"),
        ('{"host": "h", "username": "u", "password": "p", "dbname": "d", "port": "eighty"}', "invalid 'port' key"),
        ('{"host": "h", "username": "u", "password": "p", "dbname": "d", "port": 70000}', "invalid 'port' key"),
    ],
)
def test_given_a_malformed_secret_when_verified_then_configuration_error(
    put_secret: SecretWriter, release_context: Any, value: str, problem: str
) -> None:
    put_secret(value)

    assert problem in invoke_error(release_context, ConfigurationError)


def test_given_a_secret_that_does_not_exist_when_verified_then_configuration_error_names_db_secret_arn(
    secrets_world: pytest.MonkeyPatch, release_context: Any
) -> None:
    arn = f"arn:aws:secretsmanager:{REGION}:123456789012:secret:deployflow/nothing-AbCdEf"
    secrets_world.setenv("DB_SECRET_ARN", arn)
    config.reset()

    message = invoke_error(release_context, ConfigurationError)

    assert f"{arn} (DB_SECRET_ARN) could not be read" in message


def test_given_default_sslmode_when_the_server_has_no_tls_then_configuration_error_names_db_sslmode(
    migrated: ConnectionParams, secrets_world: pytest.MonkeyPatch, release_context: Any
) -> None:
    # TLS is on by default (require): the local cluster has none, so the connection must be refused, not downgraded.
    secrets_world.delenv("DB_SSLMODE")
    config.reset()

    message = invoke_error(release_context, ConfigurationError)

    assert "DB_SSLMODE=require" in message
    assert "server does not support SSL" in message


# --- a least-privilege role, and a rotated password -----------------------------------------------------------------


@pytest.fixture
def verifier(migrated: ConnectionParams, pg_conn: psycopg2.extensions.connection) -> Iterator[ConnectionParams]:
    """A login role that may only read: what the verify function's secret should hold in production."""
    role = f"verifier_{migrated.dbname}"
    execute(
        pg_conn,
        f"CREATE ROLE {role} LOGIN PASSWORD 'first-password'",
        f"GRANT CONNECT ON DATABASE {migrated.dbname} TO {role}",
        f"GRANT SELECT ON deployflow_schema_history TO {role}",
    )
    try:
        yield ConnectionParams(
            host=migrated.host, port=migrated.port, user=role, password="first-password", dbname=migrated.dbname
        )
    finally:
        execute(pg_conn, f"DROP OWNED BY {role}", f"DROP ROLE {role}")


def test_given_a_read_only_role_when_verified_then_match(
    verifier: ConnectionParams, put_secret: SecretWriter, release_context: Any
) -> None:
    put_secret(rds_secret(verifier))

    assert invoke(release_context).verdict == "match"


def test_given_a_role_that_may_not_read_the_history_when_verified_then_database_auth_error(
    verifier: ConnectionParams,
    pg_conn: psycopg2.extensions.connection,
    put_secret: SecretWriter,
    release_context: Any,
) -> None:
    execute(pg_conn, f"REVOKE SELECT ON deployflow_schema_history FROM {verifier.user}")
    put_secret(rds_secret(verifier))

    message = invoke_error(release_context, DatabaseAuthError)

    assert "may not read the catalog or the migration history" in message
    assert "deployflow_schema_history" in message


def test_given_the_password_rotated_while_the_secret_is_cached_when_verified_then_the_secret_is_read_afresh(
    verifier: ConnectionParams,
    pg_conn: psycopg2.extensions.connection,
    put_secret: SecretWriter,
    release_context: Any,
) -> None:
    arn = put_secret(rds_secret(verifier))
    assert invoke(release_context).verdict == "match"  # the secret is now in Powertools' cache (300 s)
    execute(pg_conn, f"ALTER ROLE {verifier.user} PASSWORD 'second-password'")
    boto3.client("secretsmanager", region_name=REGION).put_secret_value(
        SecretId=arn, SecretString=json.dumps({**rds_secret(verifier), "password": "second-password"})
    )

    assert invoke(release_context).verdict == "match"


# --- the message budget ---------------------------------------------------------------------------------------------


def test_given_lines_within_the_budget_when_clipped_then_unchanged() -> None:
    lines = [f"column missing: t.c{i}: text NULL" for i in range(10)]

    assert verify_schema.clip_lines(lines, 10_000) == lines


def test_given_lines_over_the_budget_when_clipped_then_the_first_ones_and_a_count_within_the_budget() -> None:
    lines = [f'check constraint differs: t{i}.c: expected "{"x" * 40}", found "{"y" * 40}"' for i in range(1000)]

    kept = verify_schema.clip_lines(lines, 5_000)

    assert kept[:-1] == lines[: len(kept) - 1]
    assert kept[-1] == f"... and {1000 - (len(kept) - 1)} more difference(s), 1000 in all (see the function log)"
    assert len(json.dumps("\n".join(kept))) <= 5_000
    assert len(kept) > 10


def test_given_one_enormous_line_when_clipped_then_it_is_cut_to_line_max() -> None:
    (line,) = verify_schema.clip_lines(["unexpected table: t: (" + "c, " * 5000 + ")"], 100_000)

    assert len(line) == verify_schema.LINE_MAX
    assert line.endswith(" ... (clipped)")
