"""Create Kafka topics within the function's time, and a TLS / plaintext listener mismatch as a configuration error.

Real Kafka (the session's broker) and a real socket that accepts and never answers.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from release_steps import create_topics
from release_steps.errors import ConfigurationError, KafkaUnreachableError

from tests.functional import test_create_topics as plain
from tests.functional.conftest import FakeLambdaContext
from tests.functional.test_create_topics import NO_PREFIX, KafkaStack, invoke

# The step's Kafka environment fixture (the session broker's PLAINTEXT listener, this test's topic prefix).
kafka = plain.kafka


@dataclass
class ContextWithTime(FakeLambdaContext):
    """A Lambda context whose function has ``remaining_ms`` left."""

    remaining_ms: int = 60_000

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


@contextlib.contextmanager
def silent_listener() -> Iterator[str]:
    """A TCP listener that completes the handshake (the kernel's backlog) and never answers a request."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield f"127.0.0.1:{server.getsockname()[1]}"


def test_given_a_broker_that_never_answers_when_the_function_has_5s_left_then_unreachable_before_lambda_stops_it(
    kafka: KafkaStack,
) -> None:
    # Each Kafka call may wait 10 s; the function has 5 s left: the step must raise the retried error within them,
    # or Lambda would end it with Sandbox.Timedout (not retried as KafkaUnreachableError is).
    context = ContextWithTime(remaining_ms=5_000)
    with silent_listener() as bootstrap:
        kafka.configure(KAFKA_BOOTSTRAP_SERVERS=bootstrap, KAFKA_TIMEOUT_SECONDS="10")
        began = time.monotonic()

        with pytest.raises(KafkaUnreachableError) as raised:
            invoke(context)

        elapsed = time.monotonic() - began
    assert elapsed < 5.0, f"raised after {elapsed:.1f}s: the function would have been stopped at 5 s"
    assert elapsed >= 5.0 - create_topics.TIME_RESERVE_SECONDS - 0.5, "the budget is used, not given up early"
    assert "the rest of the function's time" in raised.value.message
    assert raised.value.message.startswith(NO_PREFIX) is False, raised.value.message


def test_given_the_function_time_is_spent_when_the_step_runs_then_unreachable_and_nothing_created(
    kafka: KafkaStack,
) -> None:
    context = ContextWithTime(remaining_ms=int(create_topics.TIME_RESERVE_SECONDS * 1000))

    with pytest.raises(KafkaUnreachableError, match="the function's time ran out"):
        invoke(context)

    assert kafka.partitions() == {}, "nothing was created"


def test_given_enough_time_when_the_step_runs_then_the_budget_changes_nothing(kafka: KafkaStack) -> None:
    result = invoke(ContextWithTime(remaining_ms=90_000))

    assert sorted(t.name for t in result.topics if t.action == "create") == sorted(kafka.topics)


def test_given_tls_against_a_plaintext_listener_when_the_step_runs_then_configuration_error(kafka: KafkaStack) -> None:
    kafka.configure(KAFKA_AUTH_MODE="tls", KAFKA_TIMEOUT_SECONDS="5")

    with pytest.raises(ConfigurationError) as raised:
        invoke(ContextWithTime())

    assert "speaks another protocol than KAFKA_AUTH_MODE" in raised.value.message
    assert kafka.partitions() == {}
