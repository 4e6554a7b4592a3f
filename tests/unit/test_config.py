"""The steps' settings (release_steps.config): defaults, each variable's parsing once, errors naming the variable.

The parsers themselves are tested in tests/unit/test_envsettings.py; the DB_* variables Verify schema shares with
the migration runner (DB_PORT, DB_SSLMODE, DB_CONNECT_TIMEOUT_SECONDS, ...) in tests/dbmigrate/test_settings.py.
"""

from __future__ import annotations

import pytest
from release_steps import config
from release_steps.config import (
    DatabaseSettings,
    EcsSettings,
    ImageSettings,
    KafkaSettings,
    NotificationSettings,
    ReleaseSettings,
)
from release_steps.errors import ConfigurationError

ECS_REQUIRED = {
    "ECS_CLUSTER": "alerting",
    "MIGRATION_TASK_FAMILY": "deployflow-migrate",
    "MIGRATION_CONTAINER_NAME": "m",
}
KAFKA_REQUIRED = {"KAFKA_BOOTSTRAP_SERVERS": "b-1.msk:9098,b-2.msk:9098", "KAFKA_TOPICS": "alerts.new,rule.changed"}
DB_REQUIRED = {"DB_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:1:secret:db"}
REQUIRED: dict[type[config.EnvSettings], dict[str, str]] = {
    ReleaseSettings: {"SERVICES": "alert-ingest"},
    ImageSettings: {"ECR_REPOSITORY_NAME": "deployflow-migrations"},
    EcsSettings: ECS_REQUIRED,
    DatabaseSettings: DB_REQUIRED,
    KafkaSettings: KAFKA_REQUIRED,
    NotificationSettings: {"NOTIFICATION_TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:deployflow-notifications"},
}


def config_error(settings: type[config.EnvSettings], environ: dict[str, str]) -> str:
    with pytest.raises(ConfigurationError) as raised:
        settings.from_environ(environ)
    assert "\n" not in raised.value.message, "one line"
    assert raised.value.message.startswith(f"invalid function configuration ({settings.__name__}): ")
    return raised.value.message


# --- defaults --------------------------------------------------------------------------------------------------


def test_given_only_the_required_variables_when_parsed_then_every_default() -> None:
    assert ReleaseSettings.from_environ(REQUIRED[ReleaseSettings]) == ReleaseSettings(
        services=["alert-ingest"], migration_poll_seconds=10, services_poll_seconds=15
    )
    image = ImageSettings.from_environ(REQUIRED[ImageSettings])
    assert (image.scan_severity_threshold, image.require_scan) == ("HIGH", False)
    ecs = EcsSettings.from_environ(ECS_REQUIRED)
    assert (ecs.migration_launch_type, ecs.migration_subnets, ecs.migration_security_groups) == ("FARGATE", [], [])
    assert ecs.migration_assign_public_ip is False
    assert (ecs.migration_timeout_seconds, ecs.services_timeout_seconds, ecs.migration_log_tail_lines) == (
        1800,
        1800,
        30,
    )
    database = DatabaseSettings.from_environ(DB_REQUIRED)
    assert (database.sslmode, database.connect_timeout_seconds, database.secret_max_age_seconds) == ("require", 10, 300)
    kafka = KafkaSettings.from_environ(KAFKA_REQUIRED)
    assert (kafka.partitions, kafka.replication_factor, kafka.auth_mode, kafka.topic_configs) == (9, 3, "plaintext", {})
    assert (kafka.sasl_over_tls, kafka.timeout_seconds, kafka.time_reserve_seconds) == (True, 10.0, 3.0)


@pytest.mark.parametrize("settings", list(REQUIRED), ids=lambda s: s.__name__)
def test_given_a_required_variable_missing_when_parsed_then_configuration_error_names_it(
    settings: type[config.EnvSettings],
) -> None:
    required = REQUIRED[settings]
    assert {name for name, needed in settings.variables().items() if needed} == set(required)
    for missing in required:
        environ = {k: v for k, v in required.items() if k != missing}

        assert f"{missing} is not set" in config_error(settings, environ)


def test_given_unrelated_variables_when_parsed_then_they_are_ignored() -> None:
    assert ReleaseSettings.from_environ({"SERVICES": "a", "PATH": "/usr/bin"}).services == ["a"]


# --- each variable's parsing, once -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "variable", "raw", "field", "expected"),
    [
        (
            ReleaseSettings,
            "SERVICES",
            " alert-ingest, alert-matcher ,, alert-notifier ",
            "services",
            ["alert-ingest", "alert-matcher", "alert-notifier"],
        ),
        (ReleaseSettings, "MIGRATION_POLL_SECONDS", "3600", "migration_poll_seconds", 3600),
        (ReleaseSettings, "SERVICES_POLL_SECONDS", "1", "services_poll_seconds", 1),
        (ImageSettings, "SCAN_SEVERITY_THRESHOLD", "NONE", "scan_severity_threshold", "NONE"),
        (ImageSettings, "REQUIRE_IMAGE_SCAN", "true", "require_scan", True),
        (EcsSettings, "MIGRATION_LAUNCH_TYPE", "EC2", "migration_launch_type", "EC2"),
        (EcsSettings, "MIGRATION_SUBNETS", "subnet-a,subnet-b", "migration_subnets", ["subnet-a", "subnet-b"]),
        (EcsSettings, "MIGRATION_SECURITY_GROUPS", "sg-1", "migration_security_groups", ["sg-1"]),
        (EcsSettings, "MIGRATION_ASSIGN_PUBLIC_IP", "1", "migration_assign_public_ip", True),
        (EcsSettings, "MIGRATION_TIMEOUT_SECONDS", "60", "migration_timeout_seconds", 60),
        (EcsSettings, "MIGRATION_LOG_TAIL_LINES", "0", "migration_log_tail_lines", 0),
        (EcsSettings, "SERVICES_TIMEOUT_SECONDS", "600", "services_timeout_seconds", 600),
        (DatabaseSettings, "DB_SECRET_MAX_AGE_SECONDS", "0", "secret_max_age_seconds", 0),
        (KafkaSettings, "KAFKA_AUTH_MODE", "sasl_scram", "auth_mode", "sasl_scram"),
        (KafkaSettings, "KAFKA_SECRET_ARN", "arn:aws:secretsmanager:x", "secret_arn", "arn:aws:secretsmanager:x"),
        (KafkaSettings, "KAFKA_SASL_OVER_TLS", "false", "sasl_over_tls", False),
        (KafkaSettings, "KAFKA_CA_LOCATION", "certs/ca.pem", "ca_location", "certs/ca.pem"),
        (KafkaSettings, "KAFKA_PARTITIONS", "12", "partitions", 12),
        (KafkaSettings, "KAFKA_REPLICATION_FACTOR", "1", "replication_factor", 1),
        (
            KafkaSettings,
            "KAFKA_TOPIC_CONFIGS",
            '{"retention.ms": 604800000}',
            "topic_configs",
            {"retention.ms": "604800000"},
        ),
        (KafkaSettings, "KAFKA_TIMEOUT_SECONDS", "2.5", "timeout_seconds", 2.5),
        (KafkaSettings, "KAFKA_TIME_RESERVE_SECONDS", "0", "time_reserve_seconds", 0.0),
        (KafkaSettings, "AWS_REGION", "eu-west-1", "region", "eu-west-1"),
    ],
)
def test_given_a_variable_when_parsed_then_its_field_has_the_typed_value(
    settings: type[config.EnvSettings], variable: str, raw: str, field: str, expected: object
) -> None:
    parsed = settings.from_environ({**REQUIRED[settings], variable: raw})

    assert getattr(parsed, field) == expected


@pytest.mark.parametrize(
    ("settings", "variable", "raw"),
    [
        (ReleaseSettings, "SERVICES", " , "),
        (ReleaseSettings, "MIGRATION_POLL_SECONDS", "0"),
        (ReleaseSettings, "SERVICES_POLL_SECONDS", "ten"),
        (ImageSettings, "ECR_REPOSITORY_NAME", "r"),
        (ImageSettings, "SCAN_SEVERITY_THRESHOLD", "high"),
        (ImageSettings, "REQUIRE_IMAGE_SCAN", "maybe"),
        (EcsSettings, "MIGRATION_LAUNCH_TYPE", "EXTERNAL"),
        (EcsSettings, "MIGRATION_ASSIGN_PUBLIC_IP", "sometimes"),
        (EcsSettings, "MIGRATION_TIMEOUT_SECONDS", "0"),
        (EcsSettings, "MIGRATION_LOG_TAIL_LINES", "1001"),
        (EcsSettings, "SERVICES_TIMEOUT_SECONDS", "-5"),
        (DatabaseSettings, "DB_SECRET_MAX_AGE_SECONDS", "-1"),
        (KafkaSettings, "KAFKA_AUTH_MODE", "kerberos"),
        (KafkaSettings, "KAFKA_SASL_OVER_TLS", "perhaps"),
        (KafkaSettings, "KAFKA_TOPICS", ","),
        (KafkaSettings, "KAFKA_PARTITIONS", "0"),
        (KafkaSettings, "KAFKA_REPLICATION_FACTOR", "33"),
        (KafkaSettings, "KAFKA_TOPIC_CONFIGS", '["retention.ms"]'),
        (KafkaSettings, "KAFKA_TIMEOUT_SECONDS", "0"),
        (KafkaSettings, "KAFKA_TIME_RESERVE_SECONDS", "61"),
        (NotificationSettings, "NOTIFICATION_TOPIC_ARN", "deployflow-notifications"),
    ],
)
def test_given_a_bad_value_when_parsed_then_configuration_error_names_the_variable(
    settings: type[config.EnvSettings], variable: str, raw: str
) -> None:
    assert f"): {variable} " in config_error(settings, {**REQUIRED[settings], variable: raw})


@pytest.mark.parametrize(
    ("environ", "problem"),
    [
        (
            {"DB_CONNECT_TIMEOUT_SECONDS": "301"},
            "DB_CONNECT_TIMEOUT_SECONDS must be between 1 and 300 in this function",
        ),
        ({"DB_SSLMODE": "verify-full"}, "DB_SSLMODE is verify-full, which needs DB_SSLROOTCERT (DbSslRootCert)"),
    ],
)
def test_given_database_settings_the_function_cannot_use_when_parsed_then_configuration_error(
    environ: dict[str, str], problem: str
) -> None:
    assert problem in config_error(DatabaseSettings, {**DB_REQUIRED, **environ})


# --- loaders: parsed once, reset on demand ---------------------------------------------------------------------


def test_given_the_environment_when_loaded_twice_then_settings_are_parsed_once_until_reset(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config.reset()
    monkeypatch.setenv("SERVICES", "alert-ingest")
    try:
        first = config.release_settings()
        monkeypatch.setenv("SERVICES", "alert-matcher")

        assert config.release_settings() is first, "warm starts reuse the parsed settings"
        config.reset()
        assert config.release_settings().services == ["alert-matcher"], "reset re-reads the environment"
    finally:
        config.reset()


def test_given_a_broken_environment_when_loaded_then_configuration_error_and_nothing_is_cached(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config.reset()
    monkeypatch.delenv("ECR_REPOSITORY_NAME", raising=False)
    try:
        with pytest.raises(ConfigurationError, match="ECR_REPOSITORY_NAME"):
            config.image_settings()
        monkeypatch.setenv("ECR_REPOSITORY_NAME", "deployflow-migrations")

        assert config.image_settings().repository_name == "deployflow-migrations"
    finally:
        config.reset()
