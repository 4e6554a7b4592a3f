"""Connections to the session's Kafka broker and helpers that read the cluster independently of the code under test."""

from __future__ import annotations

import time
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._config import ConfigResource
from confluent_kafka.admin._resource import ResourceType
from confluent_kafka.cimpl import NewTopic
from release_steps.kafka_topics import (
    DEFAULT_TOPIC_NAMES,
    KafkaAuthMode,
    KafkaConnection,
    SecretStr,
    TopicAdmin,
    TopicSpec,
    open_admin,
    wanted_topics,
)

from deployflow.local.kafka import KafkaBroker


class Cluster:
    """Reads and seeds the broker through a plain AdminClient: the tests' own view, not the code under test's."""

    def __init__(self, broker: KafkaBroker, prefix: str) -> None:
        self.prefix = prefix
        self.admin = AdminClient({"bootstrap.servers": broker.bootstrap_plaintext, "socket.timeout.ms": 10000})

    def names(self, *short: str) -> list[str]:
        return [self.prefix + s for s in short]

    def wanted(self, replication_factor: int = 1, **kwargs: Any) -> list[TopicSpec]:
        return wanted_topics(replication_factor, names=self.names(*DEFAULT_TOPIC_NAMES), **kwargs)

    def partitions(self) -> dict[str, int]:
        """The partition count of every topic of this test."""
        topics = self.admin.list_topics(timeout=10).topics
        return {name: len(t.partitions) for name, t in topics.items() if name.startswith(self.prefix)}

    def create(self, name: str, partitions: int, config: dict[str, str] | None = None) -> None:
        """Seed a topic, and return once the broker's metadata shows it (Kafka acknowledges on the controller's
        commit; the broker applies it moments later)."""
        futures = self.admin.create_topics([NewTopic(name, partitions, 1, config=config or {})], request_timeout=10)
        futures[name].result(timeout=15)
        deadline = time.monotonic() + 15
        while self.partitions().get(name) != partitions:
            if time.monotonic() > deadline:
                pytest.fail(f"seeded topic {name} not in the broker's metadata after 15s", pytrace=False)
            time.sleep(0.05)

    def config(self, topic: str, key: str) -> str | None:
        resource = ConfigResource(ResourceType.TOPIC, topic)
        entries = self.admin.describe_configs([resource], request_timeout=10)[resource].result(timeout=15)
        value: str | None = entries[key].value
        return value


@pytest.fixture
def cluster(kafka_broker: KafkaBroker, kafka_topic_prefix: str) -> Cluster:
    return Cluster(kafka_broker, kafka_topic_prefix)


@pytest.fixture
def plaintext(kafka_broker: KafkaBroker) -> KafkaConnection:
    return KafkaConnection(bootstrap_servers=kafka_broker.bootstrap_plaintext, timeout_s=10)


@pytest.fixture
def sasl(kafka_broker: KafkaBroker) -> KafkaConnection:
    return KafkaConnection(
        bootstrap_servers=kafka_broker.bootstrap_sasl,
        auth_mode=KafkaAuthMode.SASL_SCRAM,
        username=kafka_broker.scram_username,
        password=SecretStr(kafka_broker.scram_password),
        sasl_over_tls=False,
        timeout_s=10,
    )


@pytest.fixture
def admin(plaintext: KafkaConnection) -> TopicAdmin:
    return open_admin(plaintext)
