"""Settings parsed once from the function's environment variables (the stack's parameters), per area.

Logic never reads ``os.environ``: a handler asks for its area's settings, parsed and validated on first use and
cached for warm starts. A missing or invalid variable raises ``ConfigurationError`` naming the variable. The models
are ``dbmigrate.envsettings`` models, the one settings system of functions/ (its docstring says why it is not
pydantic-settings); the ``DB_*`` connection variables are the migration runner's own declarations.
"""

from __future__ import annotations

from functools import cache
from typing import Literal

import dbmigrate.settings as db
from dbmigrate.envsettings import (
    EnvModel,
    SettingError,
    boolean,
    choice,
    integer,
    json_object,
    names,
    number,
    pattern,
    setting,
    text,
)

from release_steps.errors import ConfigurationError

Severity = Literal["CRITICAL", "HIGH", "MEDIUM", "LOW", "INFORMATIONAL", "NONE"]
KafkaAuthMode = Literal["plaintext", "tls", "sasl_scram", "msk_iam"]


class EnvSettings(EnvModel):
    """Base: a bad variable is a ConfigurationError naming it (and the settings it belongs to)."""

    @classmethod
    def configuration_error(cls, error: SettingError) -> Exception:
        return ConfigurationError(f"invalid function configuration ({cls.__name__}): {error}")


class ReleaseSettings(EnvSettings):
    """What a release may touch and how often the state machine polls."""

    services: list[str] = setting("SERVICES", names(min_items=1))
    migration_poll_seconds: int = setting("MIGRATION_POLL_SECONDS", integer(1, 3600), default=10)
    services_poll_seconds: int = setting("SERVICES_POLL_SECONDS", integer(1, 3600), default=15)


class LockSettings(EnvSettings):
    """The one-release lock's DynamoDB table (ReleaseLockTable)."""

    # DynamoDB table names: 3-255 of [a-zA-Z0-9_.-] (DynamoDB developer guide, "Naming rules").
    table_name: str = setting("LOCK_TABLE_NAME", pattern(r"[a-zA-Z0-9_.-]{3,255}", "a DynamoDB table name"))


class ImageSettings(EnvSettings):
    """The ECR repository of the migration image and the scan policy."""

    repository_name: str = setting("ECR_REPOSITORY_NAME", text(min_length=2))
    scan_severity_threshold: Severity = setting(
        "SCAN_SEVERITY_THRESHOLD", choice("CRITICAL", "HIGH", "MEDIUM", "LOW", "INFORMATIONAL", "NONE"), default="HIGH"
    )
    require_scan: bool = setting("REQUIRE_IMAGE_SCAN", boolean, default=False)


class EcsSettings(EnvSettings):
    """The cluster, the migration task and the services' rollout bounds."""

    cluster: str = setting("ECS_CLUSTER", text())
    migration_task_family: str = setting("MIGRATION_TASK_FAMILY", text())
    migration_container_name: str = setting("MIGRATION_CONTAINER_NAME", text())
    migration_launch_type: Literal["FARGATE", "EC2"] = setting(
        "MIGRATION_LAUNCH_TYPE", choice("FARGATE", "EC2"), default="FARGATE"
    )
    migration_subnets: list[str] = setting("MIGRATION_SUBNETS", names(), default_factory=list)
    migration_security_groups: list[str] = setting("MIGRATION_SECURITY_GROUPS", names(), default_factory=list)
    migration_assign_public_ip: bool = setting("MIGRATION_ASSIGN_PUBLIC_IP", boolean, default=False)
    migration_timeout_seconds: int = setting("MIGRATION_TIMEOUT_SECONDS", integer(minimum=1), default=1800)
    migration_log_tail_lines: int = setting("MIGRATION_LOG_TAIL_LINES", integer(0, 1000), default=30)
    services_timeout_seconds: int = setting("SERVICES_TIMEOUT_SECONDS", integer(minimum=1), default=1800)


class DatabaseSettings(EnvSettings):
    """How the verify step reaches PostgreSQL: credentials from a Secrets Manager secret (RDS format)."""

    secret_arn: str = setting(db.DB_SECRET_ARN)
    # For secrets without the connection keys (RDS-managed master secrets hold only username and password);
    # when set they win over the secret's keys, as in the migration runner.
    host: str | None = setting(db.DB_HOST, default=None)
    port: int | None = setting(db.DB_PORT, default=None)
    dbname: str | None = setting(db.DB_NAME, default=None)
    sslmode: db.SslMode = setting(db.DB_SSLMODE, default="require")
    # The CA bundle verify-ca / verify-full check the server against: a path in the code asset or a secret's ARN.
    sslrootcert: str | None = setting(db.DB_SSLROOTCERT, default=None)
    # Shorter than the runner's default: the function's own Timeout bounds the step.
    connect_timeout_seconds: float = setting(db.DB_CONNECT_TIMEOUT_SECONDS, default=10.0)
    secret_max_age_seconds: int = setting("DB_SECRET_MAX_AGE_SECONDS", integer(minimum=0), default=300)

    def check(self) -> None:
        if not 1 <= self.connect_timeout_seconds <= 300:
            raise SettingError(
                db.DB_CONNECT_TIMEOUT_SECONDS.name,
                f"must be between 1 and 300 in this function (got {self.connect_timeout_seconds:g})",
            )
        # libpq would fail every connection ("root certificate file ... does not exist"): refuse it up front.
        if self.sslmode in ("verify-ca", "verify-full") and not self.sslrootcert:
            raise SettingError(
                db.DB_SSLMODE.name,
                f"is {self.sslmode}, which needs DB_SSLROOTCERT (DbSslRootCert): the CA bundle, a PEM file in the "
                "code asset or the ARN of a secret holding the PEM",
            )


class KafkaSettings(EnvSettings):
    """The brokers, their auth mode and the topics a release guarantees."""

    bootstrap_servers: str = setting("KAFKA_BOOTSTRAP_SERVERS", text())
    auth_mode: KafkaAuthMode = setting(
        "KAFKA_AUTH_MODE", choice("plaintext", "tls", "sasl_scram", "msk_iam"), default="plaintext"
    )
    secret_arn: str | None = setting("KAFKA_SECRET_ARN", text(), default=None)
    # sasl_scram runs over TLS (SASL_SSL) on MSK and any real cluster; false only for a local SASL_PLAINTEXT listener.
    sasl_over_tls: bool = setting("KAFKA_SASL_OVER_TLS", boolean, default=True)
    ca_location: str | None = setting("KAFKA_CA_LOCATION", text(), default=None)
    topics: list[str] = setting("KAFKA_TOPICS", names(min_items=1))
    partitions: int = setting("KAFKA_PARTITIONS", integer(1, 10000), default=9)
    replication_factor: int = setting("KAFKA_REPLICATION_FACTOR", integer(1, 32), default=3)
    topic_configs: dict[str, str] = setting("KAFKA_TOPIC_CONFIGS", json_object, default_factory=dict)
    timeout_seconds: float = setting("KAFKA_TIMEOUT_SECONDS", number(maximum=120, above=0), default=10.0)
    # Kept from the function's remaining time for the error to reach Step Functions before Lambda's timeout.
    time_reserve_seconds: float = setting("KAFKA_TIME_RESERVE_SECONDS", number(0, 60), default=3.0)
    region: str | None = setting("AWS_REGION", text(), default=None)


class NotificationSettings(EnvSettings):
    """Where the notification of an execution stopped at its step is published."""

    topic_arn: str = setting(
        "NOTIFICATION_TOPIC_ARN", pattern(r"arn:aws[a-z-]*:sns:[a-z0-9-]+:[0-9]{12}:.+", "an SNS topic ARN")
    )


@cache
def release_settings() -> ReleaseSettings:
    """Release settings of this function, parsed once."""
    return ReleaseSettings.from_environ()


@cache
def lock_settings() -> LockSettings:
    """Lock settings of this function, parsed once."""
    return LockSettings.from_environ()


@cache
def image_settings() -> ImageSettings:
    """Image settings of this function, parsed once."""
    return ImageSettings.from_environ()


@cache
def ecs_settings() -> EcsSettings:
    """ECS settings of this function, parsed once."""
    return EcsSettings.from_environ()


@cache
def database_settings() -> DatabaseSettings:
    """Database settings of this function, parsed once."""
    return DatabaseSettings.from_environ()


@cache
def kafka_settings() -> KafkaSettings:
    """Kafka settings of this function, parsed once."""
    return KafkaSettings.from_environ()


@cache
def notification_settings() -> NotificationSettings:
    """Notification settings of this function, parsed once."""
    return NotificationSettings.from_environ()


def reset() -> None:
    """Forget parsed settings (tests and the local stack change the environment between invocations)."""
    for loader in (
        release_settings,
        lock_settings,
        image_settings,
        ecs_settings,
        database_settings,
        kafka_settings,
        notification_settings,
    ):
        loader.cache_clear()
