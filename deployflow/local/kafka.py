"""A real Apache Kafka broker (KRaft combined mode) on free loopback ports, for the tests and the local stack.

The jars come from Maven Central through scripts/fetch-kafka.sh (see kafka-pom.xml beside this module). The broker
has a PLAINTEXT listener and a SASL_PLAINTEXT listener with SCRAM-SHA-512, so both auth paths of the topic step run
against the real thing. Storage is formatted with `kafka.tools.StorageTool format --standalone --add-scram ...`.
"""

from __future__ import annotations

import atexit
import base64
import os
import secrets
import shutil
import subprocess
import tempfile
import time
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path
from types import TracebackType
from typing import IO

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from deployflow.local.ports import free_loopback_port

KAFKA_HOME_ENV = "DEPLOYFLOW_KAFKA_HOME"
JAVA_ENV = "DEPLOYFLOW_JAVA"
TMP_ENV = "DEPLOYFLOW_KAFKA_TMP"
_POM = Path(__file__).with_name("kafka-pom.xml")
_REPO_ROOT = Path(__file__).resolve().parents[2]
_LOG_TAIL_LINES = 60
SCRAM_MECHANISM = "SCRAM-SHA-512"
# A test broker lives for minutes on 2 cores: C1 only and the serial collector start it faster (measured here:
# 2.9-5.4 s against 5.2-8.0 s with G1 and C2, same load) and its throughput does not matter.
DEFAULT_JVM_OPTIONS: tuple[str, ...] = ("-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1")


class KafkaBrokerError(RuntimeError):
    """The local Kafka broker could not be found, formatted, started or stopped."""


def kafka_version() -> str:
    """The Kafka version the repo fetches (the <kafka.version> property of kafka-pom.xml)."""
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    node = ET.parse(_POM).getroot().find("m:properties/m:kafka.version", ns)  # noqa: S314 - our own file
    if node is None or not (node.text or "").strip():
        raise KafkaBrokerError(f"no <kafka.version> property in {_POM}")
    return (node.text or "").strip()


def find_kafka_libs() -> Path:
    """The folder of Kafka's jars: $DEPLOYFLOW_KAFKA_HOME/libs (or that folder itself), else .cache/kafka/<v>/libs."""
    candidates: list[Path] = []
    home = os.environ.get(KAFKA_HOME_ENV)
    if home:
        candidates += [Path(home) / "libs", Path(home)]
    else:
        version = kafka_version()
        candidates += [root / ".cache" / "kafka" / version / "libs" for root in (_REPO_ROOT, Path.cwd())]
    for folder in candidates:
        if any(folder.glob("kafka_2.13-*.jar")):
            return folder
    where = ", ".join(str(c) for c in candidates)
    raise KafkaBrokerError(
        f"Kafka jars not found (looked for kafka_2.13-*.jar in {where}); run scripts/fetch-kafka.sh "
        f"or set {KAFKA_HOME_ENV} to a Kafka home with a libs/ folder"
    )


def _default_base_dir() -> Path | None:
    """Where the temp dir goes: $DEPLOYFLOW_KAFKA_TMP, else /dev/shm when writable, else the system temp dir.

    Kafka fsyncs each new partition's directory; on a disk that is ~45 ms a partition here, so a topic of 9
    partitions takes the broker seconds to apply, and its metadata lags the controller's meanwhile. tmpfs makes
    fsync free. The data is throwaway either way.
    """
    configured = os.environ.get(TMP_ENV)
    if configured:
        return Path(configured)
    shm = Path("/dev/shm")  # noqa: S108 - a private mkdtemp under it, not a fixed file
    if shm.is_dir() and os.access(shm, os.W_OK | os.X_OK):
        return shm
    return None


def _random_cluster_id() -> str:
    """A Kafka Uuid in its base64 form; like Uuid.randomUuid(), never one that starts with '-'."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def _log_tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as e:
        return f"<no log: {e}>"
    return "\n".join(text.splitlines()[-lines:])


_LOG4J2 = """\
status = warn
appender.out.type = Console
appender.out.name = STDOUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = STDOUT
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.state.name = state.change.logger
logger.state.level = WARN
logger.request.name = kafka.request.logger
logger.request.level = WARN
"""


class KafkaBroker:
    """One Kafka broker+controller process in a temp dir; a context manager. Stops on exit, on error and at exit."""

    def __init__(
        self,
        *,
        libs: Path | None = None,
        scram_username: str = "deployflow",
        scram_password: str | None = None,
        heap: str = "512m",
        startup_timeout_s: float = 90.0,
        stop_timeout_s: float = 20.0,
        java: str | None = None,
        keep_workdir: bool = False,
        base_dir: Path | None = None,
        jvm_options: tuple[str, ...] = DEFAULT_JVM_OPTIONS,
    ) -> None:
        self.libs = libs
        self.scram_username = scram_username
        self.scram_password = scram_password if scram_password is not None else secrets.token_urlsafe(16)
        self.heap = heap
        self.startup_timeout_s = startup_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.java = java or os.environ.get(JAVA_ENV) or shutil.which("java") or "java"
        # The temp dir (data, config, log) is removed on stop unless asked to keep it, or startup failed.
        self.keep_workdir = keep_workdir
        self.base_dir = base_dir if base_dir is not None else _default_base_dir()
        self.jvm_options = jvm_options
        self.workdir: Path | None = None
        self.cluster_id: str | None = None
        self.startup_seconds: float | None = None
        self._ports: dict[str, int] = {}
        self._process: subprocess.Popen[bytes] | None = None
        self._stdout: IO[bytes] | None = None
        self._atexit_registered = False

    # -- addresses ---------------------------------------------------------------------------------------------
    @property
    def bootstrap_plaintext(self) -> str:
        """host:port of the PLAINTEXT listener."""
        return f"127.0.0.1:{self._port('PLAINTEXT')}"

    @property
    def bootstrap_sasl(self) -> str:
        """host:port of the SASL_PLAINTEXT listener (SCRAM-SHA-512, user scram_username / scram_password)."""
        return f"127.0.0.1:{self._port('SASL_PLAINTEXT')}"

    @property
    def log_path(self) -> Path:
        """The broker's log file (the JVM's stdout and stderr; log4j2 writes to stdout)."""
        if self.workdir is None:
            raise KafkaBrokerError("the broker has not been started")
        return self.workdir / "kafka.log"

    @property
    def pid(self) -> int | None:
        """The JVM's process id while it runs."""
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def _port(self, listener: str) -> int:
        try:
            return self._ports[listener]
        except KeyError:
            raise KafkaBrokerError("the broker has not been started") from None

    # -- lifecycle ---------------------------------------------------------------------------------------------
    def __enter__(self) -> KafkaBroker:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Format storage, start the broker and wait (bounded) until both listeners answer metadata requests."""
        if self._process is not None:
            raise KafkaBrokerError("the broker is already started")
        libs = self.libs or find_kafka_libs()
        if not self._atexit_registered:
            atexit.register(self.stop)
            self._atexit_registered = True
        began = time.monotonic()
        # A free port found now can be taken by someone else before the JVM binds it: one retry with new ports.
        for attempt in (1, 2):
            self.workdir = Path(tempfile.mkdtemp(prefix="deployflow-kafka-", dir=self.base_dir))
            self._ports = {name: free_loopback_port() for name in ("PLAINTEXT", "SASL_PLAINTEXT", "CONTROLLER")}
            try:
                self._format(libs)
                self._launch(libs)
                self._wait_until_ready(began + self.startup_timeout_s)
            except KafkaBrokerError:
                retry = attempt == 1 and "Address already in use" in _log_tail(self.log_path, 400)
                self._terminate()
                if retry:
                    self._remove_workdir()
                    continue
                self.keep_workdir = True  # the error names the log in it
                raise
            break
        self.startup_seconds = time.monotonic() - began

    def stop(self, *, keep_data: bool = False) -> None:
        """Terminate the broker (SIGTERM, then SIGKILL after stop_timeout_s) and remove its temp dir; idempotent.

        ``keep_data``: keep the temp dir (data, configuration, ports) for ``restart()``: an outage, not a teardown.
        """
        self._terminate()
        if not (self.keep_workdir or keep_data):
            self._remove_workdir()

    def restart(self) -> None:
        """Start a broker stopped with ``keep_data`` again: same ports, same data and SCRAM user (the broker is back);
        waits (bounded) until both listeners answer. The ports lie outside the ephemeral range (ports.py), so no
        client connection made during the outage holds one."""
        if self._process is not None:
            raise KafkaBrokerError("the broker is running: stop(keep_data=True) first")
        if self.workdir is None or not (self.workdir / "server.properties").exists() or not self._ports:
            raise KafkaBrokerError("nothing to restart: the broker was never started or its data was removed")
        began = time.monotonic()
        libs = self.libs or find_kafka_libs()
        try:
            self._launch(libs)
            self._wait_until_ready(began + self.startup_timeout_s)
        except KafkaBrokerError:
            self._terminate()
            self.keep_workdir = True  # the error names the log in it
            raise

    def _remove_workdir(self) -> None:
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _terminate(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=self.stop_timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=self.stop_timeout_s)
        if self._stdout is not None:
            self._stdout.close()
            self._stdout = None

    # -- steps -------------------------------------------------------------------------------------------------
    def _write_config(self) -> Path:
        assert self.workdir is not None
        p = self._ports
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            # A dynamic quorum (KIP-853): formatted with --standalone, so no controller.quorum.voters.
            "controller.quorum.bootstrap.servers": f"127.0.0.1:{p['CONTROLLER']}",
            "listeners": (
                f"PLAINTEXT://127.0.0.1:{p['PLAINTEXT']},SASL_PLAINTEXT://127.0.0.1:{p['SASL_PLAINTEXT']},"
                f"CONTROLLER://127.0.0.1:{p['CONTROLLER']}"
            ),
            "advertised.listeners": (
                f"PLAINTEXT://127.0.0.1:{p['PLAINTEXT']},SASL_PLAINTEXT://127.0.0.1:{p['SASL_PLAINTEXT']}"
            ),
            "listener.security.protocol.map": (
                "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT"
            ),
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "sasl.enabled.mechanisms": SCRAM_MECHANISM,
            "listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config": (
                "org.apache.kafka.common.security.scram.ScramLoginModule required;"
            ),
            "log.dirs": str(self.workdir / "data"),
            "num.partitions": "1",
            "default.replication.factor": "1",
            "auto.create.topics.enable": "false",
            # Internal topics on a one-broker cluster.
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "log.flush.interval.messages": str(2**62),
            "delete.topic.enable": "true",
        }
        path = self.workdir / "server.properties"
        path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        (self.workdir / "log4j2.properties").write_text(_LOG4J2)
        return path

    def _java_command(self, libs: Path, main: str, *args: str) -> list[str]:
        assert self.workdir is not None
        return [
            self.java,
            f"-Xmx{self.heap}",
            *self.jvm_options,
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.workdir / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={self.workdir / 'logs'}",
            "-cp",
            f"{libs}/*",
            main,
            *args,
        ]

    def _format(self, libs: Path) -> None:
        config = self._write_config()
        self.cluster_id = _random_cluster_id()
        command = self._java_command(
            libs,
            "kafka.tools.StorageTool",
            "format",
            "--config",
            str(config),
            "--cluster-id",
            self.cluster_id,
            "--standalone",
            "--add-scram",
            f"{SCRAM_MECHANISM}=[name={self.scram_username},password={self.scram_password}]",
        )
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise KafkaBrokerError(f"kafka-storage format did not run: {e}") from e
        if result.returncode != 0:
            out = (result.stdout + result.stderr).strip()
            raise KafkaBrokerError(f"kafka-storage format exited {result.returncode}:\n{out[-4000:]}")

    def _launch(self, libs: Path) -> None:
        assert self.workdir is not None
        self._stdout = self.log_path.open("ab")
        try:
            self._process = subprocess.Popen(
                self._java_command(libs, "kafka.Kafka", str(self.workdir / "server.properties")),
                stdin=subprocess.DEVNULL,
                stdout=self._stdout,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
            )
        except OSError as e:
            raise KafkaBrokerError(f"could not start {self.java}: {e}") from e

    def _wait_until_ready(self, deadline: float) -> None:
        """Until a metadata request answers with this broker on both listeners (the SASL one with the SCRAM user)."""
        quiet: dict[str, str | int | float | bool] = {
            "socket.connection.setup.timeout.ms": 2000,
            "reconnect.backoff.max.ms": 200,
            "log_level": 0,  # refused connections are expected until the broker listens: keep librdkafka quiet
        }
        pending = {
            "PLAINTEXT": AdminClient({**quiet, "bootstrap.servers": self.bootstrap_plaintext}),
            "SASL_PLAINTEXT": AdminClient(
                {
                    **quiet,
                    "bootstrap.servers": self.bootstrap_sasl,
                    "security.protocol": "SASL_PLAINTEXT",
                    "sasl.mechanism": SCRAM_MECHANISM,
                    "sasl.username": self.scram_username,
                    "sasl.password": self.scram_password,
                }
            ),
        }
        last_error = "no answer yet"
        while pending:
            if self._process is None or self._process.poll() is not None:
                code = None if self._process is None else self._process.returncode
                raise KafkaBrokerError(
                    f"Kafka exited with code {code} during startup; log {self.log_path}:\n{_log_tail(self.log_path)}"
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise KafkaBrokerError(
                    f"Kafka did not answer metadata on {', '.join(pending)} within {self.startup_timeout_s:.0f}s "
                    f"({last_error}); log {self.log_path}:\n{_log_tail(self.log_path)}"
                )
            for name, admin in list(pending.items()):
                try:
                    metadata = admin.list_topics(timeout=min(1.0, max(remaining, 0.1)))
                except KafkaException as e:
                    last_error = f"{name}: {e}"
                    continue
                if metadata.brokers:
                    del pending[name]
            if pending:
                time.sleep(0.1)


if __name__ == "__main__":  # a quick manual check: python -m deployflow.local.kafka
    with KafkaBroker() as b:
        print(
            f"Kafka {kafka_version()} up in {b.startup_seconds:.1f}s: plaintext {b.bootstrap_plaintext}, "
            f"sasl {b.bootstrap_sasl} ({b.scram_username}/{b.scram_password}), log {b.log_path}"
        )
