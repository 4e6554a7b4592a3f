"""Settings from the environment: defaults, overrides, the RDS secret, and errors that name the variable."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest
from dbmigrate.errors import DbConfigurationError, ExitCode
from dbmigrate.settings import Settings
from moto import mock_aws

from tests.dbmigrate.conftest import SQL_DIR

BASE = {"DB_HOST": "db.internal", "DB_NAME": "alerting", "DB_USER": "migrator", "DB_PASSWORD": "s3cret"}
RDS_SECRET = {
    "username": "postgres",
    "password": "from-secret",
    "engine": "postgres",
    "host": "prod.cluster.rds.amazonaws.com",
    "port": 5433,
    "dbname": "alerting",
    "dbInstanceIdentifier": "prod",
}
SECRET_ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:db-AbCdEf"


def test_given_minimal_env_when_parsed_then_production_defaults():
    settings = Settings.from_env(BASE)

    assert (settings.host, settings.port, settings.dbname, settings.user) == (
        "db.internal",
        5432,
        "alerting",
        "migrator",
    )
    assert settings.sslmode == "require", "TLS is required unless asked otherwise"
    assert settings.migrations_dir == SQL_DIR
    assert settings.target == "migrator@db.internal:5432/alerting"
    assert "s3cret" not in repr(settings), "the password must never reach a log line"


def test_given_every_variable_when_parsed_then_each_is_used():
    env = {
        **BASE,
        "DB_PORT": "6543",
        "DB_SSLMODE": "verify-full",
        "DB_SSLROOTCERT": "/etc/rds-ca.pem",
        "MIGRATIONS_DIR": str(SQL_DIR),
        "DB_CONNECT_TIMEOUT_SECONDS": "2.5",
        "DB_LOCK_WAIT_SECONDS": "7",
        "DB_LOCK_TIMEOUT_MS": "1500",
        "DB_STATEMENT_TIMEOUT_MS": "0",
        "DB_CLIENT_CHECK_INTERVAL_MS": "500",
        "MIGRATION_APPLIED_BY": "release 2026-11-23.4",
    }
    settings = Settings.from_env(env)

    assert (settings.port, settings.sslmode, settings.sslrootcert) == (6543, "verify-full", "/etc/rds-ca.pem")
    assert (settings.connect_timeout_seconds, settings.lock_wait_seconds) == (2.5, 7.0)
    assert (settings.lock_timeout_ms, settings.statement_timeout_ms, settings.client_check_interval_ms) == (
        1500,
        0,
        500,
    )
    assert settings.applied_by == "release 2026-11-23.4"


def test_given_local_mode_when_parsed_then_ssl_off_and_password_optional():
    env = {key: value for key, value in BASE.items() if key != "DB_PASSWORD"}
    settings = Settings.from_env({**env, "DEPLOYFLOW_LOCAL": "1"})
    assert (settings.sslmode, settings.password) == ("disable", "")
    assert Settings.from_env({**BASE, "DEPLOYFLOW_LOCAL": "1", "DB_SSLMODE": "prefer"}).sslmode == "prefer"


@pytest.mark.parametrize(
    ("change", "variable", "problem"),
    [
        ({"DB_HOST": None}, "DB_HOST", "is not set"),
        ({"DB_NAME": ""}, "DB_NAME", "is not set"),
        ({"DB_USER": None}, "DB_USER", "is not set"),
        ({"DB_PASSWORD": None}, "DB_PASSWORD", "is not set"),
        ({"DB_PORT": "five"}, "DB_PORT", "must be an integer"),
        ({"DB_PORT": "70000"}, "DB_PORT", "must be between 1 and 65535"),
        ({"DB_SSLMODE": "on"}, "DB_SSLMODE", "must be one of"),
        ({"DB_CONNECT_TIMEOUT_SECONDS": "-1"}, "DB_CONNECT_TIMEOUT_SECONDS", "must be >= 0"),
        ({"DB_LOCK_WAIT_SECONDS": "soon"}, "DB_LOCK_WAIT_SECONDS", "must be a number"),
        ({"DB_LOCK_TIMEOUT_MS": "1.5"}, "DB_LOCK_TIMEOUT_MS", "must be an integer"),
        ({"DB_STATEMENT_TIMEOUT_MS": "-5"}, "DB_STATEMENT_TIMEOUT_MS", "must be >= 0"),
        ({"DB_CLIENT_CHECK_INTERVAL_MS": "often"}, "DB_CLIENT_CHECK_INTERVAL_MS", "must be an integer"),
        ({"MIGRATIONS_DIR": "/no/such/dir"}, "MIGRATIONS_DIR", "is not a directory"),
    ],
)
def test_given_bad_setting_when_parsed_then_error_names_the_variable(change, variable, problem):
    env = {**BASE, **change}
    env = {key: value for key, value in env.items() if value is not None}

    with pytest.raises(DbConfigurationError) as caught:
        Settings.from_env(env)

    assert caught.value.variable == variable
    assert str(caught.value).startswith(f"configuration error: {variable} {problem}")
    assert caught.value.exit_code == ExitCode.CONFIGURATION


def test_given_migrations_dir_argument_when_parsed_then_it_overrides_and_is_named_in_errors(tmp_path: Path):
    assert Settings.from_env(BASE, migrations_dir=tmp_path).migrations_dir == tmp_path
    with pytest.raises(DbConfigurationError, match="--migrations-dir is not a directory"):
        Settings.from_env(BASE, migrations_dir=tmp_path / "missing")


# -- DB_SECRET_ARN ---------------------------------------------------------------------------------


def test_given_rds_secret_when_parsed_then_connection_comes_from_it():
    settings = Settings.from_env({"DB_SECRET_ARN": SECRET_ARN}, secret_reader=lambda arn: json.dumps(RDS_SECRET))

    assert (settings.host, settings.port, settings.dbname) == ("prod.cluster.rds.amazonaws.com", 5433, "alerting")
    assert (settings.user, settings.password) == ("postgres", "from-secret")


def test_given_secret_and_explicit_variables_when_parsed_then_variables_win():
    # RDS-managed master secrets hold only username/password: host and database come from the environment.
    managed = {"username": "postgres", "password": "rotated"}
    env = {"DB_SECRET_ARN": SECRET_ARN, "DB_HOST": "proxy.internal", "DB_NAME": "alerting", "DB_USER": "migrator"}

    settings = Settings.from_env(env, secret_reader=lambda arn: json.dumps(managed))

    assert (settings.host, settings.dbname, settings.user, settings.password) == (
        "proxy.internal",
        "alerting",
        "migrator",
        "rotated",
    )


@pytest.mark.parametrize(
    ("secret", "problem"),
    [
        ("not json", "DB_SECRET_ARN is not JSON"),
        ("[1]", "DB_SECRET_ARN is not a JSON object"),
        (
            json.dumps({"password": "x"}),
            "has no 'host', 'dbname', 'username' keys .*; and DB_HOST, DB_NAME, DB_USER are not set",
        ),
        (
            json.dumps({**RDS_SECRET, "port": "eighty"}),
            "DB_SECRET_ARN has an invalid 'port' key: 'eighty' is not a TCP port",
        ),
    ],
)
def test_given_unusable_secret_when_parsed_then_error_names_the_variable(secret, problem):
    with pytest.raises(DbConfigurationError, match=problem):
        Settings.from_env({"DB_SECRET_ARN": SECRET_ARN}, secret_reader=lambda arn: secret)


def test_given_secret_that_cannot_be_read_when_parsed_then_error_names_db_secret_arn():
    def denied(arn: str) -> str:
        raise PermissionError("AccessDeniedException")

    with pytest.raises(DbConfigurationError, match=r"DB_SECRET_ARN could not be read \(PermissionError"):
        Settings.from_env({"DB_SECRET_ARN": SECRET_ARN}, secret_reader=denied)


def test_given_secret_in_secrets_manager_when_parsed_then_read_with_boto3_in_the_arn_region(monkeypatch):
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(key, "testing")
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with mock_aws():
        arn = boto3.client("secretsmanager", region_name="eu-west-1").create_secret(
            Name="alerting/db", SecretString=json.dumps(RDS_SECRET)
        )["ARN"]

        settings = Settings.from_env({"DB_SECRET_ARN": arn})

        assert (settings.host, settings.password) == ("prod.cluster.rds.amazonaws.com", "from-secret")
        with pytest.raises(DbConfigurationError, match=r"DB_SECRET_ARN could not be read \(ResourceNotFound"):
            Settings.from_env({"DB_SECRET_ARN": arn.replace("alerting/db", "alerting/other")})
