"""Settings parsed once from the function's environment variables (the stack's parameters), per area.

Logic never reads ``os.environ``: a handler asks for its area's settings, parsed and validated on first use and
cached for warm starts. A missing or invalid variable raises ``ConfigurationError`` naming the variable.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from functools import cache
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from release_steps.errors import ConfigurationError

Severity = Literal["CRITICAL", "HIGH", "MEDIUM", "LOW", "INFORMATIONAL", "NONE"]
KafkaAuthMode = Literal["plaintext", "tls", "sasl_scram", "msk_iam"]

_S = TypeVar("_S", bound="EnvSettings")


def _split_list(value: Any) -> Any:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class EnvSettings(BaseModel):
    """Base: each field's alias is its environment variable."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore", defer_build=True)

    @classmethod
    def from_mapping(cls: type[_S], environ: Mapping[str, str]) -> _S:
        """Parse from a mapping of environment variables; errors name the variable."""
        data = {
            field.alias or name: environ[field.alias or name]
            for name, field in cls.model_fields.items()
            if (field.alias or name) in environ and environ[field.alias or name] != ""
        }
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or cls.__name__}: {err['msg']}" for err in e.errors()
            )
            raise ConfigurationError(f"invalid function configuration ({cls.__name__}): {problems}") from e


class ReleaseSettings(EnvSettings):
    """What a release may touch and how often the state machine polls."""

    services: list[str] = Field(alias="SERVICES", min_length=1)
    migration_poll_seconds: int = Field(alias="MIGRATION_POLL_SECONDS", default=10, ge=1, le=3600)
    services_poll_seconds: int = Field(alias="SERVICES_POLL_SECONDS", default=15, ge=1, le=3600)

    _split = field_validator("services", mode="before")(_split_list)


class ImageSettings(EnvSettings):
    """The ECR repository of the migration image and the scan policy."""

    repository_name: str = Field(alias="ECR_REPOSITORY_NAME", min_length=2)
    scan_severity_threshold: Severity = Field(alias="SCAN_SEVERITY_THRESHOLD", default="HIGH")
    require_scan: bool = Field(alias="REQUIRE_IMAGE_SCAN", default=False)


class EcsSettings(EnvSettings):
    """The cluster, the migration task and the services' rollout bounds."""

    cluster: str = Field(alias="ECS_CLUSTER", min_length=1)
    migration_task_family: str = Field(alias="MIGRATION_TASK_FAMILY", min_length=1)
    migration_container_name: str = Field(alias="MIGRATION_CONTAINER_NAME", min_length=1)
    migration_launch_type: Literal["FARGATE", "EC2"] = Field(alias="MIGRATION_LAUNCH_TYPE", default="FARGATE")
    migration_subnets: list[str] = Field(alias="MIGRATION_SUBNETS", default_factory=list)
    migration_security_groups: list[str] = Field(alias="MIGRATION_SECURITY_GROUPS", default_factory=list)
    migration_assign_public_ip: bool = Field(alias="MIGRATION_ASSIGN_PUBLIC_IP", default=False)
    migration_timeout_seconds: int = Field(alias="MIGRATION_TIMEOUT_SECONDS", default=1800, ge=1)
    migration_log_tail_lines: int = Field(alias="MIGRATION_LOG_TAIL_LINES", default=30, ge=0, le=1000)
    services_timeout_seconds: int = Field(alias="SERVICES_TIMEOUT_SECONDS", default=1800, ge=1)

    _split = field_validator("migration_subnets", "migration_security_groups", mode="before")(_split_list)


class DatabaseSettings(EnvSettings):
    """How the verify step reaches PostgreSQL: credentials from a Secrets Manager secret (RDS format)."""

    secret_arn: str = Field(alias="DB_SECRET_ARN", min_length=1)
    # For secrets without the connection keys (RDS-managed master secrets hold only username and password);
    # when set they win over the secret's keys, as in the migration runner.
    host: str | None = Field(alias="DB_HOST", default=None)
    port: int | None = Field(alias="DB_PORT", default=None, ge=1, le=65535)
    dbname: str | None = Field(alias="DB_NAME", default=None)
    sslmode: Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] = Field(
        alias="DB_SSLMODE", default="require"
    )
    # The CA bundle verify-ca / verify-full check the server against: a path in the code asset or a secret's ARN.
    sslrootcert: str | None = Field(alias="DB_SSLROOTCERT", default=None)
    connect_timeout_seconds: int = Field(alias="DB_CONNECT_TIMEOUT_SECONDS", default=10, ge=1, le=300)
    secret_max_age_seconds: int = Field(alias="DB_SECRET_MAX_AGE_SECONDS", default=300, ge=0)

    @model_validator(mode="after")
    def _verified_tls_needs_a_ca_bundle(self) -> DatabaseSettings:
        # libpq would fail every connection ("root certificate file ... does not exist"): refuse it up front.
        if self.sslmode in ("verify-ca", "verify-full") and not self.sslrootcert:
            raise ValueError(
                f"DB_SSLMODE={self.sslmode} needs DB_SSLROOTCERT (DbSslRootCert): the CA bundle, a PEM file in the "
                "code asset or the ARN of a secret holding the PEM"
            )
        return self


class KafkaSettings(EnvSettings):
    """The brokers, their auth mode and the topics a release guarantees."""

    bootstrap_servers: str = Field(alias="KAFKA_BOOTSTRAP_SERVERS", min_length=1)
    auth_mode: KafkaAuthMode = Field(alias="KAFKA_AUTH_MODE", default="plaintext")
    secret_arn: str | None = Field(alias="KAFKA_SECRET_ARN", default=None)
    # sasl_scram runs over TLS (SASL_SSL) on MSK and any real cluster; false only for a local SASL_PLAINTEXT listener.
    sasl_over_tls: bool = Field(alias="KAFKA_SASL_OVER_TLS", default=True)
    ca_location: str | None = Field(alias="KAFKA_CA_LOCATION", default=None)
    topics: list[str] = Field(alias="KAFKA_TOPICS", min_length=1)
    partitions: int = Field(alias="KAFKA_PARTITIONS", default=9, ge=1, le=10000)
    replication_factor: int = Field(alias="KAFKA_REPLICATION_FACTOR", default=3, ge=1, le=32)
    topic_configs: dict[str, str] = Field(alias="KAFKA_TOPIC_CONFIGS", default_factory=dict)
    timeout_seconds: float = Field(alias="KAFKA_TIMEOUT_SECONDS", default=10.0, gt=0, le=120)
    # Kept from the function's remaining time for the error to reach Step Functions before Lambda's timeout.
    time_reserve_seconds: float = Field(alias="KAFKA_TIME_RESERVE_SECONDS", default=3.0, ge=0, le=60)
    region: str | None = Field(alias="AWS_REGION", default=None)

    _split = field_validator("topics", mode="before")(_split_list)

    @field_validator("topic_configs", mode="before")
    @classmethod
    def _json_object(cls, value: Any) -> Any:
        if isinstance(value, str):
            parsed = json.loads(value) if value.strip() else {}
            if not isinstance(parsed, dict):
                raise ValueError("must be a JSON object of topic configs")
            return {str(k): str(v) for k, v in parsed.items()}
        return value


class NotificationSettings(EnvSettings):
    """Where the notification of an execution stopped at its step is published."""

    topic_arn: str = Field(alias="NOTIFICATION_TOPIC_ARN", pattern=r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:[0-9]{12}:.+$")


@cache
def release_settings() -> ReleaseSettings:
    """Release settings of this function, parsed once."""
    return ReleaseSettings.from_mapping(os.environ)


@cache
def image_settings() -> ImageSettings:
    """Image settings of this function, parsed once."""
    return ImageSettings.from_mapping(os.environ)


@cache
def ecs_settings() -> EcsSettings:
    """ECS settings of this function, parsed once."""
    return EcsSettings.from_mapping(os.environ)


@cache
def database_settings() -> DatabaseSettings:
    """Database settings of this function, parsed once."""
    return DatabaseSettings.from_mapping(os.environ)


@cache
def kafka_settings() -> KafkaSettings:
    """Kafka settings of this function, parsed once."""
    return KafkaSettings.from_mapping(os.environ)


@cache
def notification_settings() -> NotificationSettings:
    """Notification settings of this function, parsed once."""
    return NotificationSettings.from_mapping(os.environ)


def reset() -> None:
    """Forget parsed settings (tests and the local stack change the environment between invocations)."""
    for loader in (
        release_settings,
        image_settings,
        ecs_settings,
        database_settings,
        kafka_settings,
        notification_settings,
    ):
        loader.cache_clear()
