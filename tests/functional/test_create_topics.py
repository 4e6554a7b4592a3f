"""Create Kafka topics through its lambda_handler: the session's real Kafka broker, moto's Secrets Manager for SCRAM.

Each test names its topics with the fixture's unique prefix (deleted after the test) and reads the cluster back with
its own AdminClient, not through the code under test.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic
from moto import mock_aws
from moto.core.exceptions import JsonRESTError
from moto.secretsmanager.models import SecretsManagerBackend
from release_steps import config, create_topics
from release_steps.errors import (
    AwsThrottlingError,
    ConfigurationError,
    KafkaAuthError,
    KafkaUnreachableError,
    TopicConflictError,
)
from release_steps.kafka_topics import DEFAULT_TOPIC_NAMES
from release_steps.models import ReleaseState, TopicsResult

from deployflow.local.kafka import KafkaBroker
from tests.functional.release_world import load_event

NO_PREFIX = "["  # the ASL names the failed state; a message never starts with one
SECRET_NAME = "deployflow/kafka-scram"


@dataclass
class KafkaStack:
    """The function's Kafka settings for one test, and the cluster as the test itself sees it."""

    broker: KafkaBroker
    prefix: str
    env: pytest.MonkeyPatch
    admin: AdminClient

    @property
    def topics(self) -> list[str]:
        return [self.prefix + name for name in DEFAULT_TOPIC_NAMES]

    def configure(self, **variables: str) -> None:
        """Change the function's environment; the step parses its settings afresh."""
        for name, value in variables.items():
            self.env.setenv(name, value)
        config.reset()

    def partitions(self) -> dict[str, int]:
        """Partition count of every topic of this test, read from the broker's metadata."""
        listed = self.admin.list_topics(timeout=10).topics
        return {name: len(t.partitions) for name, t in listed.items() if name.startswith(self.prefix)}

    def replication_factors(self) -> dict[str, set[int]]:
        listed = self.admin.list_topics(timeout=10).topics
        return {
            name: {len(p.replicas) for p in t.partitions.values()}
            for name, t in listed.items()
            if name.startswith(self.prefix)
        }

    def seed(self, name: str, partitions: int) -> None:
        """Create a topic outside the step; return once the broker's metadata shows it."""
        self.admin.create_topics([NewTopic(name, partitions, 1)], request_timeout=10)[name].result(timeout=15)
        for _ in range(300):
            if self.partitions().get(name) == partitions:
                return
            time.sleep(0.05)
        pytest.fail(f"seeded topic {name} did not show {partitions} partitions in the broker's metadata", pytrace=False)


@pytest.fixture
def kafka(release_env: pytest.MonkeyPatch, kafka_broker: KafkaBroker, kafka_topic_prefix: str) -> Iterator[KafkaStack]:
    """The function's environment as the template sets it, pointed at the test broker's PLAINTEXT listener."""
    stack = KafkaStack(
        broker=kafka_broker,
        prefix=kafka_topic_prefix,
        env=release_env,
        admin=AdminClient({"bootstrap.servers": kafka_broker.bootstrap_plaintext, "socket.timeout.ms": 10000}),
    )
    create_topics.forget_credentials()  # a warm container's cached secret must not leak from another test
    stack.configure(
        KAFKA_BOOTSTRAP_SERVERS=kafka_broker.bootstrap_plaintext,
        KAFKA_AUTH_MODE="plaintext",
        KAFKA_SECRET_ARN="",
        KAFKA_TOPICS=",".join(stack.topics),
        KAFKA_PARTITIONS="9",
        KAFKA_REPLICATION_FACTOR="1",
        KAFKA_TOPIC_CONFIGS="{}",
        KAFKA_TIMEOUT_SECONDS="10",
    )
    yield stack
    create_topics.forget_credentials()


@pytest.fixture
def secretsmanager(release_env: pytest.MonkeyPatch) -> Iterator[Any]:
    """moto's Secrets Manager (the fake credentials and region come from release_env)."""
    with mock_aws():
        yield boto3.client("secretsmanager")


@pytest.fixture
def sasl(kafka: KafkaStack, secretsmanager: Any) -> str:
    """sasl_scram against the broker's SASL_PLAINTEXT listener, the SCRAM user in a secret; yields the secret's ARN."""
    secret = {"username": kafka.broker.scram_username, "password": kafka.broker.scram_password}
    arn: str = secretsmanager.create_secret(Name=SECRET_NAME, SecretString=json.dumps(secret))["ARN"]
    kafka.configure(
        KAFKA_BOOTSTRAP_SERVERS=kafka.broker.bootstrap_sasl,
        KAFKA_AUTH_MODE="sasl_scram",
        KAFKA_SECRET_ARN=arn,
        KAFKA_SASL_OVER_TLS="false",
    )
    return arn


def invoke(context: Any, dry_run: bool = False) -> TopicsResult:
    event = load_event("create_topics")
    event["request"]["dryRun"] = dry_run
    return TopicsResult.load(create_topics.lambda_handler(event, context))


def actions(result: TopicsResult) -> dict[str, tuple[str, int | None, int]]:
    return {t.name: (t.action, t.partitions_before, t.partitions_after) for t in result.topics}


# --- the event ---------------------------------------------------------------------------------------------------


def test_given_the_events_file_when_parsed_then_it_is_a_release_state() -> None:
    state = ReleaseState.load(load_event("create_topics"))

    assert state.request.image_tag == "2026-11-23.4"
    assert state.request.dry_run is False
    assert state.execution.name == "release-2026-11-23-4"


# --- plaintext ---------------------------------------------------------------------------------------------------


def test_given_no_topics_when_the_step_runs_then_the_configured_topics_exist_with_9_partitions(
    kafka: KafkaStack, release_context: Any
) -> None:
    result = invoke(release_context)

    assert kafka.partitions() == dict.fromkeys(kafka.topics, 9), "the broker should hold the four topics, 9 each"
    assert kafka.replication_factors() == {name: {1} for name in kafka.topics}
    assert result.dry_run is False
    assert actions(result) == {name: ("create", None, 9) for name in kafka.topics}
    assert [t.name for t in result.topics] == kafka.topics, "the report follows KAFKA_TOPICS' order"


def test_given_the_topics_exist_when_the_step_runs_again_then_every_topic_is_unchanged(
    kafka: KafkaStack, release_context: Any
) -> None:
    invoke(release_context)

    again = invoke(release_context)

    assert actions(again) == {name: ("unchanged", 9, 9) for name in kafka.topics}, f"a rerun changed something: {again}"
    assert kafka.partitions() == dict.fromkeys(kafka.topics, 9)


def test_given_a_topic_with_3_partitions_when_the_step_runs_then_it_grows_to_9_and_the_rest_are_created(
    kafka: KafkaStack, release_context: Any
) -> None:
    short, *missing = kafka.topics
    kafka.seed(short, 3)

    result = invoke(release_context)

    assert kafka.partitions() == dict.fromkeys(kafka.topics, 9)
    assert actions(result) == {short: ("grow", 3, 9), **{name: ("create", None, 9) for name in missing}}


def test_given_a_dry_run_when_the_step_runs_then_it_reports_create_and_changes_nothing(
    kafka: KafkaStack, release_context: Any
) -> None:
    result = invoke(release_context, dry_run=True)

    assert kafka.partitions() == {}, "a dry run must not create any topic"
    assert result.dry_run is True
    assert actions(result) == {name: ("create", None, 9) for name in kafka.topics}


# --- SASL/SCRAM with the secret in Secrets Manager ---------------------------------------------------------------


def test_given_sasl_scram_and_the_secret_in_secrets_manager_when_the_step_runs_then_topics_are_created(
    kafka: KafkaStack, sasl: str, release_context: Any
) -> None:
    result = invoke(release_context)

    assert kafka.partitions() == dict.fromkeys(kafka.topics, 9), "topics should be created through the SCRAM listener"
    assert actions(result) == {name: ("create", None, 9) for name in kafka.topics}


def test_given_a_wrong_password_in_the_secret_when_the_step_runs_then_kafka_auth_error_and_nothing_created(
    kafka: KafkaStack, sasl: str, secretsmanager: Any, release_context: Any
) -> None:
    wrong = "not-the-scram-password"
    secretsmanager.put_secret_value(
        SecretId=sasl, SecretString=json.dumps({"username": kafka.broker.scram_username, "password": wrong})
    )

    with pytest.raises(KafkaAuthError) as raised:
        invoke(release_context)

    message = raised.value.message
    assert type(raised.value).__name__ == "KafkaAuthError"
    assert message.startswith(NO_PREFIX) is False, message
    assert kafka.broker.bootstrap_sasl in message, message
    assert wrong not in message, "the password must never appear in an error message"
    assert kafka.partitions() == {}


def test_given_the_password_was_wrong_and_is_fixed_when_the_step_is_redriven_then_it_reads_the_secret_afresh(
    kafka: KafkaStack, sasl: str, secretsmanager: Any, release_context: Any
) -> None:
    right = secretsmanager.get_secret_value(SecretId=sasl)["SecretString"]
    secretsmanager.put_secret_value(
        SecretId=sasl, SecretString=json.dumps({"username": kafka.broker.scram_username, "password": "wrong"})
    )
    with pytest.raises(KafkaAuthError):
        invoke(release_context)
    secretsmanager.put_secret_value(SecretId=sasl, SecretString=right)

    result = invoke(release_context)  # same warm container: the secret's cache must not hold the wrong password

    assert actions(result) == {name: ("create", None, 9) for name in kafka.topics}
    assert kafka.partitions() == dict.fromkeys(kafka.topics, 9)


@pytest.mark.parametrize(
    ("secret_string", "expected"),
    [
        ('{"username": "deployflow"}', "lacks 'password'"),
        ('{"username": "", "password": ""}', "lacks 'username' and 'password'"),
        ('["deployflow", "secret"]', "is a JSON list, not an object"),
        ("username=deployflow", "is not JSON"),
    ],
)
def test_given_a_malformed_secret_when_the_step_runs_then_configuration_error_names_the_arn_and_the_fault(
    kafka: KafkaStack, sasl: str, secretsmanager: Any, release_context: Any, secret_string: str, expected: str
) -> None:
    secretsmanager.put_secret_value(SecretId=sasl, SecretString=secret_string)

    with pytest.raises(ConfigurationError) as raised:
        invoke(release_context)

    message = raised.value.message
    assert message.startswith(NO_PREFIX) is False, message
    assert sasl in message, message
    assert expected in message, message
    assert kafka.partitions() == {}


def test_given_the_secret_does_not_exist_when_the_step_runs_then_configuration_error_names_the_arn(
    kafka: KafkaStack, sasl: str, secretsmanager: Any, release_context: Any
) -> None:
    secretsmanager.delete_secret(SecretId=sasl, ForceDeleteWithoutRecovery=True)

    with pytest.raises(ConfigurationError) as raised:
        invoke(release_context)

    assert sasl in raised.value.message
    assert "KAFKA_SECRET_ARN" in raised.value.message
    assert "ResourceNotFoundException" in raised.value.message, raised.value.message


def test_given_secrets_manager_throttles_when_the_step_runs_then_aws_throttling_error_for_the_state_machine_to_retry(
    kafka: KafkaStack, sasl: str, release_env: pytest.MonkeyPatch, release_context: Any
) -> None:
    release_env.setenv("AWS_MAX_ATTEMPTS", "1")  # the SDK's own retries would only delay the same answer

    def throttled(*args: Any, **kwargs: Any) -> Any:
        raise JsonRESTError("ThrottlingException", "Rate exceeded")

    release_env.setattr(SecretsManagerBackend, "get_secret_value", throttled)

    with pytest.raises(AwsThrottlingError) as raised:
        invoke(release_context)

    assert "secretsmanager:GetSecretValue was throttled" in raised.value.message, raised.value.message
    assert raised.value.message.startswith(NO_PREFIX) is False, raised.value.message


def test_given_sasl_scram_without_a_secret_arn_when_the_step_runs_then_configuration_error_names_the_variable(
    kafka: KafkaStack, release_context: Any
) -> None:
    kafka.configure(KAFKA_BOOTSTRAP_SERVERS=kafka.broker.bootstrap_sasl, KAFKA_AUTH_MODE="sasl_scram")

    with pytest.raises(ConfigurationError, match="KAFKA_SECRET_ARN is not set"):
        invoke(release_context)


# --- failures ------------------------------------------------------------------------------------------------------


def test_given_an_unreachable_bootstrap_when_the_step_runs_then_kafka_unreachable_error_names_the_servers(
    kafka: KafkaStack, release_context: Any
) -> None:
    # Bound but not listening: connections are refused, and no one else can take the port meanwhile.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as closed:
        closed.bind(("127.0.0.1", 0))
        bootstrap = f"127.0.0.1:{closed.getsockname()[1]}"
        kafka.configure(KAFKA_BOOTSTRAP_SERVERS=bootstrap, KAFKA_TIMEOUT_SECONDS="2")

        with pytest.raises(KafkaUnreachableError) as raised:
            invoke(release_context)

    assert type(raised.value).__name__ == "KafkaUnreachableError", "Step Functions matches the class name"
    assert raised.value.message.startswith(NO_PREFIX) is False, raised.value.message
    assert bootstrap in raised.value.message, raised.value.message


def test_given_a_replication_factor_above_the_broker_count_when_the_step_runs_then_conflict_and_nothing_created(
    kafka: KafkaStack, release_context: Any
) -> None:
    kafka.configure(KAFKA_REPLICATION_FACTOR="3")

    with pytest.raises(TopicConflictError) as raised:
        invoke(release_context)

    message = raised.value.message
    assert message.startswith(NO_PREFIX) is False, message
    assert "replication factor 3" in message, message
    assert all(name in message for name in kafka.topics), message
    assert kafka.partitions() == {}, "a conflict must leave the cluster as it was"


def test_given_partitions_that_are_not_a_number_when_the_step_runs_then_configuration_error_names_the_variable(
    kafka: KafkaStack, release_context: Any
) -> None:
    kafka.configure(KAFKA_PARTITIONS="abc")

    with pytest.raises(ConfigurationError) as raised:
        invoke(release_context)

    assert "KAFKA_PARTITIONS" in raised.value.message, raised.value.message
    assert raised.value.message.startswith(NO_PREFIX) is False, raised.value.message
    assert kafka.partitions() == {}


def test_given_a_topic_named_twice_when_the_step_runs_then_configuration_error_names_it(
    kafka: KafkaStack, release_context: Any
) -> None:
    kafka.configure(KAFKA_TOPICS=",".join([*kafka.topics, kafka.topics[0]]))

    with pytest.raises(ConfigurationError) as raised:
        invoke(release_context)

    assert f"KAFKA_TOPICS names {kafka.topics[0]} more than once" in raised.value.message, raised.value.message
    assert kafka.partitions() == {}


def test_given_an_illegal_topic_name_when_the_step_runs_then_configuration_error_names_it_and_the_variable(
    kafka: KafkaStack, release_context: Any
) -> None:
    illegal = kafka.prefix + "alerts/new"
    kafka.configure(KAFKA_TOPICS=",".join([*kafka.topics, illegal]))

    with pytest.raises(ConfigurationError) as raised:
        invoke(release_context)

    message = raised.value.message
    assert message.startswith("invalid topic in KAFKA_TOPICS"), message
    assert f"{illegal!r} is not a legal Kafka topic name" in message, message
    assert kafka.partitions() == {}, "nothing is created when one topic is illegal"
