"""Kafka topics for a release: plan what is missing or drifted, then create / grow / alter. Never shrink, never delete.

The "Create Kafka topics" handler parses its settings, resolves credentials (Secrets Manager), and calls
`ensure_topics(open_admin(connection, deadline), wanted, dry_run=...)`. Every Kafka call is bounded by the
connection's `timeout_s`, so an unreachable cluster fails with KafkaUnreachableError within about that many seconds;
and the whole run by ``deadline`` (the function's remaining time less a reserve): a run of several slow calls raises
the retried KafkaUnreachableError before Lambda would time the function out. A TLS / plaintext listener mismatch,
which librdkafka names in its error, is a ConfigurationError: retrying cannot fix it.
"""

from __future__ import annotations

import concurrent.futures
import logging
import re
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Annotated, Any, Literal, TypeVar

import msgspec
from aws_msk_iam_sasl_signer import MSKAuthTokenProvider
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

# confluent_kafka.admin re-exports these without __all__, which mypy --strict does not accept: import them from
# where they are defined (the same objects; confluent-kafka is pinned).
from confluent_kafka.admin._config import AlterConfigOpType, ConfigEntry, ConfigResource
from confluent_kafka.admin._metadata import ClusterMetadata
from confluent_kafka.admin._resource import ResourceType
from confluent_kafka.cimpl import NewPartitions, NewTopic
from msgspec import Meta

from release_steps.config import KafkaSettings
from release_steps.errors import ConfigurationError, KafkaAuthError, KafkaUnreachableError, TopicConflictError
from release_steps.messages import describe_validation_error
from release_steps.models import Codec, TopicChange, TopicsResult
from release_steps.observability import logger

# librdkafka's own log lines (connection failures, retries) go to this standard logger.
_librdkafka_logger = logging.getLogger("release_steps.kafka_topics.librdkafka")

DEFAULT_TOPIC_NAMES: tuple[str, ...] = ("alerts.new", "rule.changed", "alerts.matched", "notifications.ready")
DEFAULT_PARTITIONS = 9
DEFAULT_TIMEOUT_S = 5.0
SCRAM_MECHANISM = "SCRAM-SHA-512"
_TOPIC_NAME = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
# list_topics is probed in short slices so an authentication failure (reported only through error_cb) ends the wait
# early instead of after the whole bound.
_PROBE_S = 0.5

_UNREACHABLE_CODES = frozenset(
    {
        KafkaError._TRANSPORT,
        KafkaError._ALL_BROKERS_DOWN,
        KafkaError._TIMED_OUT,
        KafkaError._TIMED_OUT_QUEUE,
        KafkaError._RESOLVE,
        KafkaError._DESTROY,
        KafkaError.NETWORK_EXCEPTION,
        KafkaError.REQUEST_TIMED_OUT,
        KafkaError.BROKER_NOT_AVAILABLE,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.NOT_CONTROLLER,
    }
)
_AUTH_CODES = frozenset(
    {
        KafkaError._AUTHENTICATION,
        KafkaError._SSL,
        KafkaError.SASL_AUTHENTICATION_FAILED,
        KafkaError.UNSUPPORTED_SASL_MECHANISM,
        KafkaError.ILLEGAL_SASL_STATE,
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.CLUSTER_AUTHORIZATION_FAILED,
    }
)


# ---- connection -------------------------------------------------------------------------------------------------


class SecretStr:
    """A password that never shows: ``repr``, ``str``, a log line and ``to_json`` give ``**********``; only
    ``get_secret_value()`` returns it (the librdkafka config needs it)."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get_secret_value(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "SecretStr('**********')"

    def __str__(self) -> str:
        return "**********"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SecretStr) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


class _Codec(Codec):
    """``Codec`` with the SecretStr hooks; this module's keys stay snake_case (they are not the step's camelCase
    output, see ``TopicReport.to_result``). Values from outside (environment, secret) go through ``load``; ``kw_only``
    is given on each class: msgspec applies it to the fields a class defines, not to its subclasses'."""

    __slots__ = ()

    @staticmethod
    def decode_hook(type_: type, value: Any) -> Any:
        """A JSON string (or a SecretStr) into a SecretStr, the one type msgspec does not know."""
        if type_ is SecretStr:
            if isinstance(value, SecretStr):
                return value
            if isinstance(value, str):
                return SecretStr(value)
            raise TypeError(f"Expected `str`, got `{type(value).__name__}`")  # msgspec adds the field's path
        return Codec.decode_hook(type_, value)

    @staticmethod
    def encode_hook(value: Any) -> Any:
        """A SecretStr as its mask, never its value."""
        return str(value) if isinstance(value, SecretStr) else Codec.encode_hook(value)


class _Model(msgspec.Struct, _Codec, kw_only=True):
    """A mutable model of this module."""


class KafkaAuthMode(StrEnum):
    """How the step authenticates to the cluster."""

    PLAINTEXT = "plaintext"
    TLS = "tls"
    SASL_SCRAM = "sasl_scram"
    MSK_IAM = "msk_iam"


class KafkaConnection(msgspec.Struct, _Codec, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Where the cluster is and how to authenticate; credentials are resolved by the caller (Secrets Manager)."""

    bootstrap_servers: Annotated[str, Meta(min_length=1)]
    auth_mode: KafkaAuthMode = KafkaAuthMode.PLAINTEXT
    ca_location: str | None = None
    """PEM file of the CA for tls / sasl_scram over TLS; None: librdkafka's default trust store."""
    username: str | None = None
    password: SecretStr | None = None
    sasl_over_tls: bool = True
    """sasl_scram only: SASL_SSL (MSK, any real cluster) or SASL_PLAINTEXT (the local broker)."""
    region: str | None = None
    """msk_iam only: the AWS region the signer signs for."""
    timeout_s: Annotated[float, Meta(gt=0, le=120)] = DEFAULT_TIMEOUT_S
    """Bound of each Kafka call (metadata, create, describe, alter)."""

    def __post_init__(self) -> None:
        # Runs in the constructor too; in ``load`` a ValueError here becomes a msgspec.ValidationError.
        if self.auth_mode is KafkaAuthMode.SASL_SCRAM and (not self.username or self.password is None):
            raise ValueError("auth_mode sasl_scram needs username and password")
        if self.auth_mode is KafkaAuthMode.MSK_IAM and not self.region:
            raise ValueError("auth_mode msk_iam needs region")


def connection_from_settings(
    settings: KafkaSettings, *, username: str | None = None, password: str | None = None
) -> KafkaConnection:
    """The connection the stack's parameters describe; sasl_scram credentials come from the secret (the caller).

    A combination that cannot work (msk_iam without AWS_REGION, sasl_scram without credentials) is a
    ConfigurationError (never showing the password: msgspec names types and fields, not values)."""
    try:
        return KafkaConnection.load(
            {
                "bootstrap_servers": settings.bootstrap_servers,
                "auth_mode": settings.auth_mode,
                "ca_location": settings.ca_location,
                "username": username,
                "password": password,
                "sasl_over_tls": settings.sasl_over_tls,
                "region": settings.region,
                "timeout_s": settings.timeout_seconds,
            }
        )
    except msgspec.ValidationError as e:
        raise ConfigurationError(describe_validation_error(e, f"Kafka configuration ({settings.auth_mode})")) from e


def msk_iam_oauth_cb(region: str) -> Callable[[str | None], tuple[str, float]]:
    """librdkafka's OAUTHBEARER refresh callback for MSK IAM: (token, expiry in epoch seconds) from the AWS signer."""

    def oauth_cb(_oauth_config: str | None) -> tuple[str, float]:
        token, expiry_ms = MSKAuthTokenProvider.generate_auth_token(region)
        return token, expiry_ms / 1000

    return oauth_cb


def build_client_config(connection: KafkaConnection) -> dict[str, Any]:
    """librdkafka configuration for the connection's auth mode, with every network wait bounded by timeout_s."""
    timeout_ms = max(int(connection.timeout_s * 1000), 1000)
    config: dict[str, Any] = {
        "bootstrap.servers": connection.bootstrap_servers,
        "client.id": "deployflow-topics",
        "socket.timeout.ms": timeout_ms,
        "socket.connection.setup.timeout.ms": timeout_ms,
        "reconnect.backoff.ms": 100,
        "reconnect.backoff.max.ms": 1000,
    }
    mode = connection.auth_mode
    if mode is KafkaAuthMode.PLAINTEXT:
        config["security.protocol"] = "PLAINTEXT"
    elif mode is KafkaAuthMode.TLS:
        config["security.protocol"] = "SSL"
    elif mode is KafkaAuthMode.SASL_SCRAM:
        assert connection.username is not None  # checked by the model
        assert connection.password is not None
        config["security.protocol"] = "SASL_SSL" if connection.sasl_over_tls else "SASL_PLAINTEXT"
        config["sasl.mechanism"] = SCRAM_MECHANISM
        config["sasl.username"] = connection.username
        config["sasl.password"] = connection.password.get_secret_value()
    elif mode is KafkaAuthMode.MSK_IAM:
        assert connection.region is not None  # checked by the model
        config["security.protocol"] = "SASL_SSL"
        config["sasl.mechanism"] = "OAUTHBEARER"
        config["oauth_cb"] = msk_iam_oauth_cb(connection.region)
    if connection.ca_location and config["security.protocol"] in ("SSL", "SASL_SSL"):
        config["ssl.ca.location"] = connection.ca_location
    return config


# librdkafka's words when the client's security.protocol does not match the listener's (plaintext to a TLS listener;
# TLS to a plaintext one).
_PROTOCOL_MISMATCH_MARKERS = (
    "incorrect security.protocol",
    "connecting to a ssl listener",
    "connecting to a plaintext broker listener",
    "wrong version number",
)


@dataclass
class TopicAdmin:
    """An AdminClient with what the error messages and bounds need: its bootstrap servers, its timeout, its errors.

    ``deadline`` (``time.monotonic()``) is when the step must have returned or raised: each wait takes at most
    ``timeout_s`` and never past it. None: no overall bound (tests, tools).
    """

    client: AdminClient
    bootstrap_servers: str
    timeout_s: float
    errors: deque[KafkaError] = field(default_factory=lambda: deque(maxlen=50))
    deadline: float | None = None

    def bound(self, what: str) -> float:
        """Seconds the next wait may take; KafkaUnreachableError (retried) once the step's time is spent."""
        if self.deadline is None:
            return self.timeout_s
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise KafkaUnreachableError(
                f"Kafka on {self.bootstrap_servers} too slow: the function's time ran out before {what} "
                f"(each call waits up to {self.timeout_s:g}s); retried"
            )
        return min(self.timeout_s, left)

    def client_errors(self) -> list[KafkaError]:
        """Errors librdkafka reported through error_cb (served by poll) since the admin was opened."""
        self.client.poll(0)
        return list(self.errors)


def open_admin(connection: KafkaConnection, deadline: float | None = None) -> TopicAdmin:
    """An AdminClient for the connection. It connects on the first call, bounded by timeout_s.

    With msk_iam, librdkafka fetches the first token while the client is constructed (confluent-kafka 2.16 blocks
    the constructor until oauth_cb has answered, about 1 s, and for its own 10 s when the callback fails): a signer
    that cannot sign (no AWS credentials) is a KafkaAuthError naming the signer's error.
    """
    errors: deque[KafkaError] = deque(maxlen=50)
    config = build_client_config(connection)
    config["error_cb"] = errors.append
    token_failures: list[Exception] = []
    if "oauth_cb" in config:
        config["oauth_cb"] = _recording_failures(config["oauth_cb"], token_failures)
    try:
        client = AdminClient(config, logger=_librdkafka_logger)
    except KafkaException as e:
        err = _kafka_error(e)
        detail = f"{err.name()}: {err.str()}"
        if token_failures or err.code() in _AUTH_CODES:
            cause = f"; the token provider failed: {token_failures[-1]!r}" if token_failures else ""
            raise KafkaAuthError(
                f"Kafka client for {connection.bootstrap_servers} got no credentials: {detail}{cause}"
            ) from e
        # e.g. an ssl.ca.location that does not exist or is not a PEM file
        raise ConfigurationError(f"Kafka client for {connection.bootstrap_servers} not created: {detail}") from e
    return TopicAdmin(client, connection.bootstrap_servers, connection.timeout_s, errors, deadline)


def _recording_failures(
    oauth_cb: Callable[[str | None], tuple[str, float]], failures: list[Exception]
) -> Callable[[str | None], tuple[str, float]]:
    def recording(oauth_config: str | None) -> tuple[str, float]:
        try:
            return oauth_cb(oauth_config)
        except Exception as e:
            # librdkafka reports only "token not set": keep the real cause for the error message and the log.
            failures.append(e)
            logger.exception("the Kafka OAUTHBEARER token provider failed")
            raise

    return recording


# ---- plan and report ----------------------------------------------------------------------------------------------


class TopicSpec(msgspec.Struct, _Codec, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A topic as the release wants it."""

    name: str
    partitions: Annotated[int, Meta(ge=1)] = DEFAULT_PARTITIONS
    replication_factor: Annotated[int, Meta(ge=1)]
    configs: dict[str, str] = msgspec.field(default_factory=dict)

    def __post_init__(self) -> None:
        if not _TOPIC_NAME.match(self.name) or self.name in (".", ".."):
            raise ValueError(f"{self.name!r} is not a legal Kafka topic name (1-249 of [A-Za-z0-9._-])")

    @classmethod
    def load(cls, document: Any) -> TopicSpec:
        """As ``Codec.load``, config values that are numbers or booleans taken as Kafka's strings first."""
        return super().load(_string_configs(document))


def _string_configs(document: Any) -> Any:
    # Stack parameters arrive as numbers or booleans as often as strings; Kafka takes strings.
    configs = document.get("configs") if isinstance(document, Mapping) else None
    if not isinstance(configs, Mapping):
        return document
    strings = {str(k): (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in configs.items()}
    return {**document, "configs": strings}


def wanted_topics(
    replication_factor: int,
    *,
    names: Iterable[str] = DEFAULT_TOPIC_NAMES,
    partitions: int = DEFAULT_PARTITIONS,
    configs: Mapping[str, str] | None = None,
) -> list[TopicSpec]:
    """The platform's topics (DESIGN.md): same partitions, replication factor and configs for each.

    Validated (they come from the stack's parameters): ``msgspec.ValidationError`` names the topic's index and the
    field at fault, e.g. ``[2]: 'a/b' is not a legal Kafka topic name``."""
    documents = [
        _string_configs(
            {"name": n, "partitions": partitions, "replication_factor": replication_factor, "configs": configs or {}}
        )
        for n in names
    ]
    return msgspec.convert(documents, list[TopicSpec], dec_hook=TopicSpec.decode_hook)


def wanted_from_settings(settings: KafkaSettings) -> list[TopicSpec]:
    """The topics the stack's parameters ask for."""
    return wanted_topics(
        settings.replication_factor,
        names=settings.topics,
        partitions=settings.partitions,
        configs=settings.topic_configs,
    )


class TopicAction(StrEnum):
    """What happens to a topic's existence and partitions (config drift is listed apart, in config_changes)."""

    CREATE = "create"
    GROW = "grow"
    UNCHANGED = "unchanged"
    MORE_PARTITIONS_THAN_WANTED = "more_partitions_than_wanted"
    CONFLICT = "conflict"


class ConfigChange(_Model, kw_only=True):
    """One topic config set from its current value to the wanted one."""

    name: str
    current: str | None
    wanted: str


class PlannedTopic(_Model, kw_only=True):
    """One wanted topic compared with the cluster."""

    spec: TopicSpec
    action: TopicAction
    current_partitions: int | None = None
    current_replication_factor: int | None = None
    config_changes: list[ConfigChange] = msgspec.field(default_factory=list)
    conflicts: list[str] = msgspec.field(default_factory=list)

    @property
    def name(self) -> str:
        return self.spec.name


class TopicPlan(_Model, kw_only=True):
    """What apply_plan would do, topic by topic."""

    bootstrap_servers: str
    broker_count: int
    topics: list[PlannedTopic]

    def with_action(self, action: TopicAction) -> list[PlannedTopic]:
        return [t for t in self.topics if t.action is action]

    @property
    def conflicts(self) -> list[PlannedTopic]:
        return self.with_action(TopicAction.CONFLICT)

    @property
    def config_alterations(self) -> list[PlannedTopic]:
        return [t for t in self.topics if t.action is not TopicAction.CONFLICT and t.config_changes]

    @property
    def changes_anything(self) -> bool:
        return bool(self.with_action(TopicAction.CREATE) or self.with_action(TopicAction.GROW)) or bool(
            self.config_alterations
        )

    def conflict_message(self) -> str:
        lines = [f"{t.name}: {'; '.join(t.conflicts)}" for t in self.conflicts]
        return f"{len(lines)} topic(s) on {self.bootstrap_servers} cannot be reconciled: " + " | ".join(lines)


class PartitionGrowth(_Model, kw_only=True):
    topic: str
    from_partitions: int
    to_partitions: int


class MorePartitionsThanWanted(_Model, kw_only=True):
    """Kept as they are: partitions are never removed (and Kafka cannot remove them)."""

    topic: str
    partitions: int
    wanted: int


class TopicConfigChanges(_Model, kw_only=True):
    topic: str
    changes: list[ConfigChange]


class TopicReport(_Model, kw_only=True):
    """What was changed (or, in a dry run, what would be): the topics part of the deployment record."""

    dry_run: bool
    bootstrap_servers: str
    created: list[str] = msgspec.field(default_factory=list)
    grown: list[PartitionGrowth] = msgspec.field(default_factory=list)
    configs_altered: list[TopicConfigChanges] = msgspec.field(default_factory=list)
    unchanged: list[str] = msgspec.field(default_factory=list)
    more_partitions_than_wanted: list[MorePartitionsThanWanted] = msgspec.field(default_factory=list)
    already_applied: list[str] = msgspec.field(default_factory=list)
    """Planned to be created or grown, but another run (or a stale metadata view) got there first: the broker answered
    TOPIC_ALREADY_EXISTS, or INVALID_PARTITIONS saying the topic already has the wanted partitions."""
    partitions: dict[str, int] = msgspec.field(default_factory=dict)
    """Every wanted topic (in the wanted order) and its partition count after the run."""
    duration_ms: int = 0

    @classmethod
    def from_plan(cls, plan: TopicPlan, *, dry_run: bool, already_applied: Iterable[str] = ()) -> TopicReport:
        raced = set(already_applied)
        return cls(
            dry_run=dry_run,
            bootstrap_servers=plan.bootstrap_servers,
            created=[t.name for t in plan.with_action(TopicAction.CREATE) if t.name not in raced],
            already_applied=[t.name for t in plan.topics if t.name in raced],
            grown=[
                PartitionGrowth(
                    topic=t.name, from_partitions=t.current_partitions or 0, to_partitions=t.spec.partitions
                )
                for t in plan.with_action(TopicAction.GROW)
                if t.name not in raced
            ],
            configs_altered=[
                TopicConfigChanges(topic=t.name, changes=t.config_changes) for t in plan.config_alterations
            ],
            unchanged=[
                t.name
                for t in plan.topics
                if t.action in (TopicAction.UNCHANGED, TopicAction.MORE_PARTITIONS_THAN_WANTED) and not t.config_changes
            ],
            more_partitions_than_wanted=[
                MorePartitionsThanWanted(topic=t.name, partitions=t.current_partitions or 0, wanted=t.spec.partitions)
                for t in plan.with_action(TopicAction.MORE_PARTITIONS_THAN_WANTED)
            ],
            partitions={
                t.name: max(t.current_partitions or 0, t.spec.partitions)
                for t in plan.topics
                if t.action is not TopicAction.CONFLICT
            },
        )

    def to_result(self) -> TopicsResult:
        """The step's output model (release_steps.models): one TopicChange per topic, in the wanted order."""
        altered = {c.topic: c.changes for c in self.configs_altered}
        grown = {g.topic: g for g in self.grown}
        over = {m.topic: m for m in self.more_partitions_than_wanted}
        changes: list[TopicChange] = []
        for name, partitions in self.partitions.items():
            configs = {c.name: c.wanted for c in altered.get(name, [])}
            notes = [f"{c.name}: {c.current} -> {c.wanted}" for c in altered.get(name, [])]
            before: int | None = partitions
            action: Literal["create", "grow", "unchanged", "over-partitioned", "configs-altered"]
            if name in self.created:
                action, before = "create", None
            elif name in self.already_applied:
                action, before = "unchanged", None
                notes.insert(0, "created or grown by a concurrent run between plan and apply")
            elif name in grown:
                action, before = "grow", grown[name].from_partitions
            elif name in over:
                action = "over-partitioned"
                notes.insert(0, f"{partitions} partitions exist, {over[name].wanted} wanted: kept, never shrunk")
            elif configs:
                action = "configs-altered"
            else:
                action = "unchanged"
            changes.append(
                TopicChange(
                    name=name,
                    action=action,
                    partitions_before=before,
                    partitions_after=partitions,
                    configs_altered=configs,
                    note="; ".join(notes) or None,
                )
            )
        return TopicsResult(dry_run=self.dry_run, topics=changes)


# ---- Kafka calls ------------------------------------------------------------------------------------------------


def _error_from(err: KafkaError, admin: TopicAdmin, what: str) -> Exception:
    """The step's named error for a Kafka error: auth, unreachable (or otherwise retriable), or a topic conflict."""
    detail = f"{what} on {admin.bootstrap_servers}: {err.name()}: {err.str()}"
    code = err.code()
    if code in _AUTH_CODES:
        return KafkaAuthError(f"Kafka refused the credentials or the operation: {detail}")
    if code in _UNREACHABLE_CODES or err.retriable():
        return KafkaUnreachableError(f"Kafka not reachable or not ready: {detail}")
    return TopicConflictError(f"Kafka refused the change: {detail}")


def _kafka_error(e: KafkaException) -> KafkaError:
    err = e.args[0] if e.args else None
    return err if isinstance(err, KafkaError) else KafkaError(KafkaError._FAIL, str(e))


def _auth_error_seen(admin: TopicAdmin) -> KafkaError | None:
    return next((e for e in reversed(admin.client_errors()) if e.code() in _AUTH_CODES), None)


def _protocol_mismatch_seen(admin: TopicAdmin) -> KafkaError | None:
    return next(
        (
            e
            for e in reversed(admin.client_errors())
            if any(m in (e.str() or "").lower() for m in _PROTOCOL_MISMATCH_MARKERS)
        ),
        None,
    )


def _protocol_mismatch_error(err: KafkaError, admin: TopicAdmin) -> ConfigurationError:
    return ConfigurationError(
        f"Kafka on {admin.bootstrap_servers} speaks another protocol than KAFKA_AUTH_MODE: {err.name()}: {err.str()} "
        "(TLS to a plaintext listener or plaintext to a TLS one: give KafkaBootstrapServers the auth mode's listener, "
        "e.g. MSK's 9094 for tls, 9096 for sasl_scram, 9098 for msk_iam)"
    )


def _cluster_metadata(admin: TopicAdmin) -> ClusterMetadata:
    """All topics and brokers. KafkaAuthError as soon as librdkafka reports one; KafkaUnreachableError at the bound."""
    bound = admin.bound("reading cluster metadata")
    deadline = time.monotonic() + bound
    last: KafkaError | None = None
    while True:
        remaining = deadline - time.monotonic()
        try:
            metadata = admin.client.list_topics(timeout=max(min(_PROBE_S, remaining), 0.05))
        except KafkaException as e:
            last = _kafka_error(e)
            if last.code() not in _UNREACHABLE_CODES:
                raise _error_from(last, admin, "reading cluster metadata") from e
        else:
            if metadata.brokers:
                return metadata
        mismatch = _protocol_mismatch_seen(admin)
        if mismatch is not None:
            raise _protocol_mismatch_error(mismatch, admin)
        auth = _auth_error_seen(admin)
        if auth is not None:
            raise _error_from(auth, admin, "connecting")
        if time.monotonic() >= deadline:
            seen = admin.client_errors()
            cause = seen[-1] if seen else last
            why = f"{cause.name()}: {cause.str()}" if cause is not None else "no broker in the metadata"
            budget = "" if bound >= admin.timeout_s else ", the rest of the function's time"
            raise KafkaUnreachableError(
                f"Kafka not reachable: no answer from {admin.bootstrap_servers} within {bound:g}s{budget} ({why})"
            )


_K = TypeVar("_K")


def _results(
    admin: TopicAdmin, futures: Mapping[_K, concurrent.futures.Future[Any]], what: str
) -> tuple[dict[_K, Any], dict[_K, KafkaError]]:
    """Each future's result or Kafka error, waiting timeout_s (plus a margin) in all. Auth and unreachable raise."""
    bound = admin.bound(what)
    deadline = time.monotonic() + (bound + 1.0 if admin.deadline is None else bound)
    results: dict[_K, Any] = {}
    failures: dict[_K, KafkaError] = {}
    for key, future in futures.items():
        try:
            results[key] = future.result(timeout=max(deadline - time.monotonic(), 0.0))
        except concurrent.futures.TimeoutError:
            raise KafkaUnreachableError(
                f"Kafka not reachable: {what} on {admin.bootstrap_servers} got no answer within {bound:g}s"
            ) from None
        except KafkaException as e:
            err = _kafka_error(e)
            if err.code() in _AUTH_CODES or err.code() in _UNREACHABLE_CODES:
                raise _error_from(err, admin, f"{what} ({key})") from e
            failures[key] = err
    return results, failures


def _describe_topic_configs(admin: TopicAdmin, names: list[str]) -> dict[str, dict[str, ConfigEntry]]:
    if not names:
        return {}
    resources = [ConfigResource(ResourceType.TOPIC, n) for n in names]
    futures = admin.client.describe_configs(resources, request_timeout=admin.bound("DescribeConfigs"))
    results, failures = _results(admin, futures, "DescribeConfigs")
    if failures:
        resource, err = next(iter(failures.items()))
        raise _error_from(err, admin, f"DescribeConfigs ({resource.name})")
    return {resource.name: dict(entries) for resource, entries in results.items()}


def _same_value(current: str | None, wanted: str) -> bool:
    if current is None:
        return False
    if current.strip() == wanted.strip():
        return True
    # List configs (cleanup.policy=compact,delete) compare as sets.
    return "," in wanted and {v.strip() for v in current.split(",")} == {v.strip() for v in wanted.split(",")}


def _plan_topic(spec: TopicSpec, metadata: ClusterMetadata, configs: Mapping[str, ConfigEntry]) -> PlannedTopic:
    broker_count = len(metadata.brokers)
    topic = metadata.topics.get(spec.name)
    if topic is None:
        conflicts = []
        if spec.replication_factor > broker_count:
            conflicts.append(
                f"replication factor {spec.replication_factor} wanted but the cluster has {broker_count} broker(s)"
            )
        return PlannedTopic(
            spec=spec, action=TopicAction.CONFLICT if conflicts else TopicAction.CREATE, conflicts=conflicts
        )

    partitions = len(topic.partitions)
    replica_counts = {len(p.replicas) for p in topic.partitions.values()}
    replication_factor = max(replica_counts) if replica_counts else 0
    conflicts = []
    if replica_counts != {spec.replication_factor}:
        found = "/".join(str(c) for c in sorted(replica_counts)) or "?"
        conflicts.append(f"replication factor is {found}, wanted {spec.replication_factor}")

    changes: list[ConfigChange] = []
    for name, wanted in sorted(spec.configs.items()):
        entry = configs.get(name)
        if entry is None:
            conflicts.append(f"config {name} is not a topic config this cluster knows")
        elif not _same_value(entry.value, wanted):
            if entry.is_read_only:
                conflicts.append(f"config {name} is read-only ({entry.value!r}, wanted {wanted!r})")
            else:
                changes.append(ConfigChange(name=name, current=entry.value, wanted=wanted))

    if conflicts:
        action = TopicAction.CONFLICT
    elif partitions < spec.partitions:
        action = TopicAction.GROW
    elif partitions > spec.partitions:
        action = TopicAction.MORE_PARTITIONS_THAN_WANTED
    else:
        action = TopicAction.UNCHANGED
    return PlannedTopic(
        spec=spec,
        action=action,
        current_partitions=partitions,
        current_replication_factor=replication_factor,
        config_changes=changes,
        conflicts=conflicts,
    )


def plan_topics(admin: TopicAdmin, wanted: list[TopicSpec]) -> TopicPlan:
    """Compare the wanted topics with the cluster (Metadata + DescribeConfigs). Reads only; changes nothing."""
    names = [t.name for t in wanted]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"topics wanted twice: {', '.join(duplicates)}")
    metadata = _cluster_metadata(admin)
    for spec in wanted:
        topic = metadata.topics.get(spec.name)
        if topic is not None and topic.error is not None and topic.error.code() in _AUTH_CODES:
            raise _error_from(topic.error, admin, f"reading metadata of {spec.name}")
    existing = [t.name for t in wanted if t.name in metadata.topics]
    configs = _describe_topic_configs(admin, existing)
    plan = TopicPlan(
        bootstrap_servers=admin.bootstrap_servers,
        broker_count=len(metadata.brokers),
        topics=[_plan_topic(spec, metadata, configs.get(spec.name, {})) for spec in wanted],
    )
    logger.info(
        "topic plan: %s",
        ", ".join(f"{t.name}={t.action.value}{'+configs' if t.config_changes else ''}" for t in plan.topics),
    )
    return plan


def _config_resources(topics: list[PlannedTopic]) -> dict[str, ConfigResource]:
    return {
        t.name: ConfigResource(
            ResourceType.TOPIC,
            t.name,
            incremental_configs=[
                ConfigEntry(c.name, c.wanted, incremental_operation=AlterConfigOpType.SET) for c in t.config_changes
            ],
        )
        for t in topics
    }


def _submit(admin: TopicAdmin, plan: TopicPlan, *, validate_only: bool) -> tuple[dict[str, KafkaError], set[str]]:
    """CreateTopics, CreatePartitions, IncrementalAlterConfigs as planned: (refusals by topic, already applied)."""
    t = admin.bound("changing topics")
    mode = " (validate only)" if validate_only else ""
    refused: dict[str, KafkaError] = {}
    raced: set[str] = set()

    to_create = plan.with_action(TopicAction.CREATE)
    if to_create:
        new = [
            NewTopic(p.name, p.spec.partitions, p.spec.replication_factor, config=dict(p.spec.configs))
            for p in to_create
        ]
        futures = admin.client.create_topics(new, validate_only=validate_only, request_timeout=t, operation_timeout=t)
        _, failures = _results(admin, futures, "CreateTopics" + mode)
        for name, err in failures.items():
            if err.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                raced.add(name)  # created since the plan was read (a concurrent run, or metadata behind): fine
            else:
                refused[name] = err

    to_grow = plan.with_action(TopicAction.GROW)
    if to_grow and (validate_only or not refused):
        grow = [NewPartitions(p.name, p.spec.partitions) for p in to_grow]
        futures = admin.client.create_partitions(
            grow, validate_only=validate_only, request_timeout=t, operation_timeout=t
        )
        _, failures = _results(admin, futures, "CreatePartitions" + mode)
        wanted = {p.name: p.spec.partitions for p in to_grow}
        for name, err in failures.items():
            if _already_has_partitions(err, wanted[name]):
                raced.add(name)
            else:
                refused[name] = err

    to_alter = plan.config_alterations
    if to_alter and (validate_only or not refused):
        resources = _config_resources(to_alter)
        alter_futures = admin.client.incremental_alter_configs(
            list(resources.values()), validate_only=validate_only, request_timeout=t
        )
        _, alter_failures = _results(admin, alter_futures, "IncrementalAlterConfigs" + mode)
        refused.update({resource.name: err for resource, err in alter_failures.items()})
    return refused, raced


_CURRENT_PARTITIONS = re.compile(r"currently has (\d+) partition")


def _already_has_partitions(err: KafkaError, wanted: int) -> bool:
    """INVALID_PARTITIONS because the topic already has the wanted partitions (the plan read stale metadata)."""
    if err.code() != KafkaError.INVALID_PARTITIONS:
        return False
    found = _CURRENT_PARTITIONS.search(err.str() or "")
    return found is not None and int(found.group(1)) >= wanted


def _await_applied(admin: TopicAdmin, plan: TopicPlan, raced: set[str]) -> None:
    """Wait (bounded by timeout_s) until the brokers' metadata shows the changes the controller accepted.

    Kafka acknowledges CreateTopics / CreatePartitions / IncrementalAlterConfigs once the controller has committed
    them; brokers apply them moments later. The next steps restart services that expect the topics, and a rerun
    plans from broker metadata, so the step returns only once that metadata has caught up. This is a short read
    loop (typically well under a second), not a workflow wait; if it does not converge in the bound the step fails
    with the transient KafkaUnreachableError and a redrive finds the work done.
    """
    partitions = {
        t.name: (1 if t.name in raced else t.spec.partitions)
        for t in plan.topics
        if t.action in (TopicAction.CREATE, TopicAction.GROW)
    }
    configs = {t.name: {c.name: c.wanted for c in t.config_changes} for t in plan.config_alterations}
    bound = admin.bound("waiting for the topic changes to show")
    deadline = time.monotonic() + bound
    while True:
        metadata = _cluster_metadata(admin)
        lagging = sorted(
            name
            for name, count in partitions.items()
            if name not in metadata.topics or len(metadata.topics[name].partitions) < count
        )
        if not lagging and configs:
            described = _describe_topic_configs(admin, list(configs))
            lagging = sorted(
                name
                for name, wanted in configs.items()
                if any(
                    key not in described.get(name, {}) or not _same_value(described[name][key].value, value)
                    for key, value in wanted.items()
                )
            )
        if not lagging:
            return
        if time.monotonic() >= deadline:
            raise KafkaUnreachableError(
                f"Kafka on {admin.bootstrap_servers} accepted the topic changes but its metadata did not show them "
                f"within {bound:g}s: {', '.join(lagging)}"
            )
        time.sleep(0.05)


def _refusal_error(admin: TopicAdmin, refused: Mapping[str, KafkaError], *, changed: bool) -> TopicConflictError:
    parts = [f"{name}: {err.name()}: {err.str()}" for name, err in sorted(refused.items())]
    state = "some changes were applied before the refusal" if changed else "nothing was changed"
    return TopicConflictError(
        f"Kafka on {admin.bootstrap_servers} refused {len(parts)} topic change(s) ({state}): " + " | ".join(parts)
    )


def apply_plan(admin: TopicAdmin, plan: TopicPlan) -> TopicReport:
    """Create, grow and alter as planned. Validates every change with the broker first (validate_only), so a refused
    change (INVALID_REPLICATION_FACTOR, INVALID_CONFIG, a policy) fails the release before anything is changed."""
    began = time.monotonic()
    if plan.conflicts:
        raise TopicConflictError(plan.conflict_message() + " (nothing was changed)")
    if not plan.changes_anything:
        return TopicReport.from_plan(plan, dry_run=False)
    refused, _ = _submit(admin, plan, validate_only=True)
    if refused:
        raise _refusal_error(admin, refused, changed=False)
    refused, raced = _submit(admin, plan, validate_only=False)
    if refused:
        raise _refusal_error(admin, refused, changed=True)
    _await_applied(admin, plan, raced)
    report = TopicReport.from_plan(plan, dry_run=False, already_applied=raced)
    report.duration_ms = int((time.monotonic() - began) * 1000)
    logger.info(
        "topics: created %s, grown %s, configs altered %s, unchanged %s",
        report.created,
        [g.topic for g in report.grown],
        [c.topic for c in report.configs_altered],
        report.unchanged,
    )
    return report


def ensure_topics(admin: TopicAdmin, wanted: list[TopicSpec], *, dry_run: bool = False) -> TopicReport:
    """Plan, then apply unless dry_run. A conflict raises TopicConflictError in both modes: the release would fail."""
    began = time.monotonic()
    plan = plan_topics(admin, wanted)
    if plan.conflicts:
        raise TopicConflictError(plan.conflict_message() + " (nothing was changed)")
    report = TopicReport.from_plan(plan, dry_run=True) if dry_run else apply_plan(admin, plan)
    report.duration_ms = int((time.monotonic() - began) * 1000)
    return report
