"""Settings parsed from the function's environment: defaults, list parsing, and errors naming the variable."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from release_steps import config
from release_steps.config import (
    DatabaseSettings,
    EcsSettings,
    ImageSettings,
    KafkaSettings,
    ReleaseSettings,
)
from release_steps.errors import ConfigurationError

ECS_REQUIRED = {
    "ECS_CLUSTER": "alerting",
    "MIGRATION_TASK_FAMILY": "deployflow-migrate",
    "MIGRATION_CONTAINER_NAME": "m",
}
KAFKA_REQUIRED = {"KAFKA_BOOTSTRAP_SERVERS": "b-1.msk:9098,b-2.msk:9098", "KAFKA_TOPICS": "alerts.new,rule.changed"}


def config_error(settings: type[config.EnvSettings], environ: dict[str, str]) -> str:
    with pytest.raises(ConfigurationError) as raised:
        settings.from_mapping(environ)
    assert "\n" not in raised.value.message, "one line"
    return raised.value.message


# --- ReleaseSettings -------------------------------------------------------------------------------------------


def test_given_a_comma_separated_services_list_when_parsed_then_names_are_trimmed_and_blanks_dropped() -> None:
    settings = ReleaseSettings.from_mapping({"SERVICES": " alert-ingest, alert-matcher ,, alert-notifier "})

    assert settings.services == ["alert-ingest", "alert-matcher", "alert-notifier"]


def test_given_only_services_when_parsed_then_poll_intervals_default() -> None:
    settings = ReleaseSettings.from_mapping({"SERVICES": "alert-ingest"})

    assert (settings.migration_poll_seconds, settings.services_poll_seconds) == (10, 15)


@pytest.mark.parametrize("environ", [{}, {"SERVICES": ""}, {"SERVICES": " , "}])
def test_given_no_services_when_parsed_then_configuration_error_names_services(environ: dict[str, str]) -> None:
    message = config_error(ReleaseSettings, environ)

    assert "SERVICES" in message
    assert "ReleaseSettings" in message


@pytest.mark.parametrize(("variable", "value"), [("MIGRATION_POLL_SECONDS", "0"), ("SERVICES_POLL_SECONDS", "ten")])
def test_given_a_bad_poll_interval_when_parsed_then_configuration_error_names_the_variable(
    variable: str, value: str
) -> None:
    assert variable in config_error(ReleaseSettings, {"SERVICES": "a", variable: value})


def test_given_unrelated_variables_when_parsed_then_they_are_ignored() -> None:
    settings = ReleaseSettings.from_mapping({"SERVICES": "a", "PATH": "/usr/bin", "AWS_REGION": "us-east-1"})

    assert settings.services == ["a"]


def test_given_parsed_settings_when_assigned_then_they_are_frozen() -> None:
    settings = ReleaseSettings.from_mapping({"SERVICES": "a"})

    with pytest.raises(ValidationError):
        setattr(settings, "services", ["b"])  # noqa: B010 - assignment is what is tested


# --- ImageSettings ---------------------------------------------------------------------------------------------


def test_given_a_repository_when_parsed_then_scan_policy_defaults_to_high_and_not_required() -> None:
    settings = ImageSettings.from_mapping({"ECR_REPOSITORY_NAME": "deployflow-migrations"})

    assert settings.scan_severity_threshold == "HIGH"
    assert settings.require_scan is False


@pytest.mark.parametrize(("raw", "expected"), [("true", True), ("1", True), ("false", False), ("no", False)])
def test_given_require_image_scan_when_parsed_then_it_is_a_boolean(raw: str, expected: bool) -> None:
    settings = ImageSettings.from_mapping({"ECR_REPOSITORY_NAME": "repo", "REQUIRE_IMAGE_SCAN": raw})

    assert settings.require_scan is expected


@pytest.mark.parametrize(
    ("variable", "value"),
    [("SCAN_SEVERITY_THRESHOLD", "SEVERE"), ("SCAN_SEVERITY_THRESHOLD", "high"), ("REQUIRE_IMAGE_SCAN", "maybe")],
)
def test_given_a_bad_scan_policy_when_parsed_then_configuration_error_names_the_variable(
    variable: str, value: str
) -> None:
    assert variable in config_error(ImageSettings, {"ECR_REPOSITORY_NAME": "repo", variable: value})


def test_given_no_repository_when_parsed_then_configuration_error_names_it() -> None:
    assert "ECR_REPOSITORY_NAME: Field required" in config_error(ImageSettings, {})


# --- EcsSettings -----------------------------------------------------------------------------------------------


def test_given_the_required_ecs_variables_when_parsed_then_fargate_private_and_bounded_defaults() -> None:
    settings = EcsSettings.from_mapping(ECS_REQUIRED)

    assert settings.migration_launch_type == "FARGATE"
    assert settings.migration_subnets == []
    assert settings.migration_security_groups == []
    assert settings.migration_assign_public_ip is False
    assert (settings.migration_timeout_seconds, settings.services_timeout_seconds) == (1800, 1800)
    assert settings.migration_log_tail_lines == 30


def test_given_subnets_and_security_groups_when_parsed_then_they_are_lists() -> None:
    settings = EcsSettings.from_mapping(
        {**ECS_REQUIRED, "MIGRATION_SUBNETS": "subnet-a,subnet-b", "MIGRATION_SECURITY_GROUPS": "sg-1"}
    )

    assert settings.migration_subnets == ["subnet-a", "subnet-b"]
    assert settings.migration_security_groups == ["sg-1"]


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("MIGRATION_LAUNCH_TYPE", "EXTERNAL"),
        ("MIGRATION_TIMEOUT_SECONDS", "0"),
        ("SERVICES_TIMEOUT_SECONDS", "-5"),
        ("MIGRATION_LOG_TAIL_LINES", "1001"),
        ("MIGRATION_ASSIGN_PUBLIC_IP", "sometimes"),
    ],
)
def test_given_a_bad_ecs_setting_when_parsed_then_configuration_error_names_the_variable(
    variable: str, value: str
) -> None:
    assert variable in config_error(EcsSettings, {**ECS_REQUIRED, variable: value})


@pytest.mark.parametrize("missing", sorted(ECS_REQUIRED))
def test_given_a_required_ecs_variable_missing_when_parsed_then_configuration_error_names_it(missing: str) -> None:
    environ = {k: v for k, v in ECS_REQUIRED.items() if k != missing}

    assert f"{missing}: Field required" in config_error(EcsSettings, environ)


# --- DatabaseSettings and KafkaSettings ------------------------------------------------------------------------


def test_given_a_secret_when_parsed_then_tls_is_required_by_default() -> None:
    settings = DatabaseSettings.from_mapping({"DB_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:1:secret:db"})

    assert settings.sslmode == "require"
    assert settings.connect_timeout_seconds == 10


def test_given_an_unknown_sslmode_when_parsed_then_configuration_error_names_db_sslmode() -> None:
    assert "DB_SSLMODE" in config_error(DatabaseSettings, {"DB_SECRET_ARN": "arn", "DB_SSLMODE": "on"})


def test_given_kafka_topic_configs_as_json_when_parsed_then_values_are_strings() -> None:
    settings = KafkaSettings.from_mapping(
        {**KAFKA_REQUIRED, "KAFKA_TOPIC_CONFIGS": '{"retention.ms": 604800000, "cleanup.policy": "delete"}'}
    )

    assert settings.topic_configs == {"retention.ms": "604800000", "cleanup.policy": "delete"}
    assert settings.topics == ["alerts.new", "rule.changed"]
    assert (settings.partitions, settings.replication_factor, settings.auth_mode) == (9, 3, "plaintext")


@pytest.mark.parametrize("raw", ['["retention.ms"]', "{not json", "42"])
def test_given_topic_configs_that_are_not_a_json_object_when_parsed_then_configuration_error(raw: str) -> None:
    assert "KAFKA_TOPIC_CONFIGS" in config_error(KafkaSettings, {**KAFKA_REQUIRED, "KAFKA_TOPIC_CONFIGS": raw})


def test_given_an_unknown_kafka_auth_mode_when_parsed_then_configuration_error_names_it() -> None:
    assert "KAFKA_AUTH_MODE" in config_error(KafkaSettings, {**KAFKA_REQUIRED, "KAFKA_AUTH_MODE": "kerberos"})


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
