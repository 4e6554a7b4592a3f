"""The local Kafka broker's lifecycle: it starts, answers on both listeners, and always stops."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import pytest

from deployflow.local.kafka import KAFKA_HOME_ENV, KafkaBroker, KafkaBrokerError, find_kafka_libs
from deployflow.local.ports import ephemeral_range


def _accepts(address: str) -> bool:
    host, port = address.rsplit(":", 1)
    with socket.socket() as s:
        s.settimeout(2)
        return s.connect_ex((host, int(port))) == 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_given_a_broker_when_its_block_raises_then_the_jvm_is_stopped_and_its_dir_removed(
    kafka_broker: KafkaBroker,
) -> None:
    broker = KafkaBroker(libs=kafka_broker.libs)
    seen: dict[str, Any] = {}

    def failing_body() -> None:
        with broker:
            seen.update(pid=broker.pid, workdir=broker.workdir)
            seen["addresses"] = [broker.bootstrap_plaintext, broker.bootstrap_sasl]
            seen["accepting"] = [_accepts(a) for a in seen["addresses"]]
            raise RuntimeError("test body failed")

    with pytest.raises(RuntimeError, match="test body failed"):
        failing_body()

    pid, workdir, addresses = seen["pid"], seen["workdir"], seen["addresses"]
    assert seen["accepting"] == [True, True], "both listeners should accept connections once started"
    assert not _alive(pid), f"the broker JVM {pid} is still running after the with block"
    assert not any(_accepts(a) for a in addresses), "a listener still accepts connections after stop"
    assert not workdir.exists(), f"{workdir} should be removed on stop"
    broker.stop()  # idempotent


def test_given_a_broker_that_exits_during_startup_when_started_then_the_error_carries_its_log_tail(
    kafka_broker: KafkaBroker,
) -> None:
    class BrokenConfigBroker(KafkaBroker):
        def _launch(self, libs: Path) -> None:
            assert self.workdir is not None
            with (self.workdir / "server.properties").open("a") as f:
                f.write("num.network.threads=not-a-number\n")  # formatted fine; the broker then refuses it
            super()._launch(libs)

    broker = BrokenConfigBroker(libs=kafka_broker.libs, startup_timeout_s=60)
    try:
        with pytest.raises(KafkaBrokerError) as caught:
            broker.start()
        message = str(caught.value)
        assert "exited with code" in message, message
        assert "num.network.threads" in message, f"the log tail should show the broker's complaint: {message}"
        assert broker.pid is None
    finally:
        broker.keep_workdir = False
        broker.stop()


def test_given_no_kafka_jars_when_started_then_formatting_fails_with_a_clear_error(tmp_path: Path) -> None:
    broker = KafkaBroker(libs=tmp_path)
    try:
        with pytest.raises(KafkaBrokerError, match=r"(?s)format exited 1:.*kafka\.tools\.StorageTool"):
            broker.start()
        assert broker.pid is None, "no broker process may be left behind"
    finally:
        broker.keep_workdir = False
        broker.stop()


def test_given_kafka_home_without_jars_when_looked_up_then_the_error_names_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KAFKA_HOME_ENV, str(tmp_path))

    with pytest.raises(KafkaBrokerError, match=KAFKA_HOME_ENV):
        find_kafka_libs()


def test_given_kafka_home_with_a_libs_folder_when_looked_up_then_that_folder_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "libs").mkdir()
    (tmp_path / "libs" / "kafka_2.13-4.1.2.jar").write_bytes(b"")
    monkeypatch.setenv(KAFKA_HOME_ENV, str(tmp_path))

    assert find_kafka_libs() == tmp_path / "libs"


def test_given_a_broker_stopped_keeping_its_data_when_restarted_then_same_addresses_same_topics(
    kafka_broker: KafkaBroker,
) -> None:
    from confluent_kafka.admin import AdminClient
    from confluent_kafka.cimpl import NewTopic

    broker = KafkaBroker(libs=kafka_broker.libs)
    with pytest.raises(KafkaBrokerError, match="nothing to restart"):
        broker.restart()
    with broker:
        addresses = [broker.bootstrap_plaintext, broker.bootstrap_sasl]
        admin = AdminClient({"bootstrap.servers": broker.bootstrap_plaintext})
        admin.create_topics([NewTopic("outage.probe", num_partitions=3, replication_factor=1)])["outage.probe"].result(
            30
        )
        broker.stop(keep_data=True)
        down = [_accepts(a) for a in addresses]
        with pytest.raises(KafkaBrokerError, match="nothing to restart"):
            KafkaBroker(libs=kafka_broker.libs).restart()

        broker.restart()

        assert down == [False, False], "the broker still listened while stopped"
        assert [broker.bootstrap_plaintext, broker.bootstrap_sasl] == addresses
        low, high = ephemeral_range()
        in_range = [a for a in addresses if low <= int(a.rsplit(":", 1)[1]) <= high]
        assert not in_range, f"a client connection may hold these while the broker is down: {in_range}"
        assert all(_accepts(a) for a in addresses)
        topics = AdminClient({"bootstrap.servers": addresses[0]}).list_topics(timeout=10).topics
        assert len(topics["outage.probe"].partitions) == 3
        with pytest.raises(KafkaBrokerError, match="the broker is running"):
            broker.restart()
    assert broker.workdir is not None
    assert not broker.workdir.exists(), "stop() after a restart removes the data"
