"""Create Kafka topics: create the release's missing topics, grow those with fewer partitions; never shrink or delete.

With ``KAFKA_AUTH_MODE=sasl_scram`` the credentials come from the Secrets Manager secret ``KAFKA_SECRET_ARN`` in the
MSK SCRAM format (``{"username": ..., "password": ...}``), read by ``dbmigrate.aws_secrets`` (the secret reader of
every step and of the runner) and cached for warm starts. A dry run reads the cluster exactly as a real run does
(so unreachable brokers, refused credentials and conflicts still fail it) and changes nothing.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import msgspec
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import BotoCoreError, ClientError
from dbmigrate import aws_secrets

from release_steps import config
from release_steps.aws_errors import is_throttling, throttling_error
from release_steps.config import KafkaSettings
from release_steps.errors import ConfigurationError, KafkaAuthError
from release_steps.kafka_topics import (
    SecretStr,
    TopicSpec,
    connection_from_settings,
    ensure_topics,
    open_admin,
    wanted_from_settings,
)
from release_steps.messages import describe_validation_error
from release_steps.models import ReleaseRequest, ReleaseState, TopicsResult
from release_steps.observability import logger, parse_event, step

STEP_NAME = "Create Kafka topics"
# Long enough that a busy release reads the secret once per container, short enough that a rotation is picked up.
SECRET_MAX_AGE_SECONDS = 300
SECRET_KEYS = ("username", "password")
# Kept from the function's remaining time (KAFKA_TIME_RESERVE_SECONDS): the error (or the result) must reach Step
# Functions before Lambda's timeout would end the function with Sandbox.Timedout instead of the retried
# KafkaUnreachableError.
TIME_RESERVE_SECONDS: float = KafkaSettings.time_reserve_seconds


@dataclass(frozen=True)
class ScramCredentials:
    """The SASL/SCRAM user of the step (from the secret); the password never reaches a log line or a message."""

    username: str
    password: SecretStr


def forget_credentials() -> None:
    """Drop the cached secret, so the next invocation reads it afresh (a fixed or rotated secret, a redrive)."""
    aws_secrets.forget()


def kafka_credentials(settings: KafkaSettings) -> ScramCredentials | None:
    """The SCRAM credentials for auth mode sasl_scram; None for the modes that need no secret (plaintext, tls, msk_iam).

    A missing, unreadable or malformed secret is a ConfigurationError naming the ARN (and the key at fault)."""
    if settings.auth_mode != "sasl_scram":
        return None
    arn = settings.secret_arn
    if not arn:
        raise ConfigurationError(
            "KAFKA_AUTH_MODE is sasl_scram but KAFKA_SECRET_ARN is not set: give the stack the ARN of the SCRAM secret"
        )
    where = f"Kafka SCRAM secret {arn} (KAFKA_SECRET_ARN)"
    try:
        text = aws_secrets.read_secret(arn, max_age=SECRET_MAX_AGE_SECONDS)
    except (ClientError, BotoCoreError, ValueError) as e:
        if isinstance(e, ClientError) and is_throttling(e):
            raise throttling_error(e, "secretsmanager:GetSecretValue") from e
        raise ConfigurationError(f"{where} could not be read: {' '.join(str(e).split())}") from e
    try:
        value: Any = json.loads(text)
    except ValueError as e:
        raise ConfigurationError(f"{where} is not JSON: {e}") from e
    problem: str | None = None
    if not isinstance(value, dict):
        problem = f"is a JSON {type(value).__name__}, not an object"
    else:
        bad = [key for key in SECRET_KEYS if not isinstance(value.get(key), str) or not value[key]]
        if bad:
            problem = "lacks " + " and ".join(repr(key) for key in bad) + " (a non-empty string each)"
    if problem is not None:
        forget_credentials()  # a fixed secret must not wait for max_age
        raise ConfigurationError(f'{where} {problem}: the MSK SCRAM format is {{"username": ..., "password": ...}}')
    return ScramCredentials(username=value["username"], password=SecretStr(value["password"]))


def _wanted(settings: KafkaSettings) -> list[TopicSpec]:
    duplicates = sorted({name for name in settings.topics if settings.topics.count(name) > 1})
    if duplicates:
        raise ConfigurationError(f"KAFKA_TOPICS names {', '.join(duplicates)} more than once")
    try:
        return wanted_from_settings(settings)
    except msgspec.ValidationError as e:
        raise ConfigurationError(describe_validation_error(e, "topic in KAFKA_TOPICS / KAFKA_TOPIC_CONFIGS")) from e


def create_topics(
    request: ReleaseRequest,
    settings: KafkaSettings,
    credentials: ScramCredentials | None,
    deadline: float | None = None,
) -> TopicsResult:
    """Create the missing topics and grow the short ones (a dry run only plans): one TopicChange per topic.

    ``deadline`` (``time.monotonic()``) bounds the whole run, see kafka_topics.
    """
    wanted = _wanted(settings)
    connection = connection_from_settings(
        settings,
        username=credentials.username if credentials else None,
        password=credentials.password.get_secret_value() if credentials else None,
    )
    report = ensure_topics(open_admin(connection, deadline), wanted, dry_run=request.dry_run)
    logger.info(
        "topics ensured",
        # "created" is a LogRecord attribute: the keys carry a prefix.
        extra={
            "dry_run": report.dry_run,
            "bootstrap_servers": report.bootstrap_servers,
            "topics_created": report.created,
            "topics_grown": [g.topic for g in report.grown],
            "topics_unchanged": report.unchanged,
            "duration_ms": report.duration_ms,
        },
    )
    return report.to_result()


@step(STEP_NAME)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Create Kafka topics."""
    state = parse_event(ReleaseState, event)
    settings = config.kafka_settings()
    deadline = time.monotonic() + context.get_remaining_time_in_millis() / 1000 - settings.time_reserve_seconds
    try:
        return create_topics(state.request, settings, kafka_credentials(settings), deadline).to_json()
    except KafkaAuthError:
        forget_credentials()  # the redrive after a rotation or a fix reads the secret afresh
        raise
