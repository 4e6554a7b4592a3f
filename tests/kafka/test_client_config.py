"""Client configuration per auth mode, MSK IAM's token callback, and the typed inputs and outputs of the topic step."""

from __future__ import annotations

import json
from collections import deque
from pathlib import Path
from unittest import mock

import msgspec
import pytest
from confluent_kafka import KafkaError
from confluent_kafka.admin import AdminClient
from release_steps.config import KafkaSettings
from release_steps.errors import ConfigurationError, KafkaAuthError
from release_steps.kafka_topics import (
    DEFAULT_TOPIC_NAMES,
    KafkaAuthMode,
    KafkaConnection,
    MorePartitionsThanWanted,
    PartitionGrowth,
    SecretStr,
    TopicAdmin,
    TopicReport,
    TopicSpec,
    build_client_config,
    connection_from_settings,
    open_admin,
    plan_topics,
    wanted_from_settings,
    wanted_topics,
)
from release_steps.messages import describe_validation_error

from deployflow.local.kafka import KafkaBroker

SIGNER = "aws_msk_iam_sasl_signer.MSKAuthTokenProvider.generate_auth_token"


def test_given_plaintext_when_config_built_then_no_security_and_every_wait_bounded() -> None:
    config = build_client_config(KafkaConnection(bootstrap_servers="b1:9092,b2:9092", timeout_s=3))

    assert config["bootstrap.servers"] == "b1:9092,b2:9092"
    assert config["security.protocol"] == "PLAINTEXT"
    assert config["socket.timeout.ms"] == 3000
    assert config["socket.connection.setup.timeout.ms"] == 3000
    assert not any(key.startswith(("sasl.", "ssl.")) for key in config), config


def test_given_tls_with_a_ca_when_config_built_then_ssl_with_that_ca() -> None:
    config = build_client_config(
        KafkaConnection(bootstrap_servers="b:9094", auth_mode=KafkaAuthMode.TLS, ca_location="/opt/ca.pem")
    )

    assert config["security.protocol"] == "SSL"
    assert config["ssl.ca.location"] == "/opt/ca.pem"


def test_given_tls_without_a_ca_when_config_built_then_the_default_trust_store_is_used() -> None:
    config = build_client_config(KafkaConnection.load({"bootstrap_servers": "b:9094", "auth_mode": "tls"}))

    assert config["security.protocol"] == "SSL"
    assert "ssl.ca.location" not in config


@pytest.mark.parametrize(("over_tls", "protocol"), [(True, "SASL_SSL"), (False, "SASL_PLAINTEXT")])
def test_given_sasl_scram_when_config_built_then_scram_sha_512_with_the_credentials(
    over_tls: bool, protocol: str
) -> None:
    config = build_client_config(
        KafkaConnection(
            bootstrap_servers="b:9096",
            auth_mode=KafkaAuthMode.SASL_SCRAM,
            username="deployer",
            password=SecretStr("s3cret"),
            sasl_over_tls=over_tls,
        )
    )

    assert config["security.protocol"] == protocol
    assert config["sasl.mechanism"] == "SCRAM-SHA-512"
    assert (config["sasl.username"], config["sasl.password"]) == ("deployer", "s3cret")


def test_given_sasl_scram_connection_when_printed_then_the_password_is_hidden() -> None:
    connection = KafkaConnection(
        bootstrap_servers="b:9096", auth_mode=KafkaAuthMode.SASL_SCRAM, username="u", password=SecretStr("s3cret")
    )

    assert "s3cret" not in repr(connection)
    assert "s3cret" not in str(connection)
    assert "s3cret" not in json.dumps(connection.to_json())
    assert connection.password is not None
    assert connection.password.get_secret_value() == "s3cret"


def test_given_tls_with_a_missing_ca_file_when_admin_opened_then_configuration_error(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-ca.pem"
    connection = KafkaConnection(bootstrap_servers="127.0.0.1:9", auth_mode=KafkaAuthMode.TLS, ca_location=str(missing))

    with pytest.raises(ConfigurationError, match=r"ssl\.ca\.location"):
        open_admin(connection)


def test_given_sasl_scram_without_password_when_validated_then_rejected() -> None:
    with pytest.raises(msgspec.ValidationError, match="sasl_scram needs username and password"):
        KafkaConnection.load({"bootstrap_servers": "b:9096", "auth_mode": "sasl_scram", "username": "u"})
    with pytest.raises(ValueError, match="sasl_scram needs username and password"):  # the constructor checks it too
        KafkaConnection(bootstrap_servers="b:9096", auth_mode=KafkaAuthMode.SASL_SCRAM, username="u")


def test_given_sasl_scram_settings_and_a_password_when_loaded_then_it_is_a_hidden_secret() -> None:
    connection = KafkaConnection.load(
        {"bootstrap_servers": "b:9096", "auth_mode": "sasl_scram", "username": "u", "password": "s3cret"}
    )

    assert isinstance(connection.password, SecretStr)
    assert connection.password.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(connection)
    assert connection.to_json()["password"] == "**********", "the JSON document carries the mask, not the password"
    assert KafkaConnection.load(connection.to_json()).password == SecretStr("**********")


@pytest.mark.parametrize(
    ("document", "field"),
    [
        ({"bootstrap_servers": ""}, "bootstrap_servers"),
        ({"bootstrap_servers": "b:9092", "timeout_s": 0}, "timeout_s"),
        ({"bootstrap_servers": "b:9092", "timeout_s": 121}, "timeout_s"),
        ({"bootstrap_servers": "b:9092", "auth_mode": "kerberos"}, "auth_mode"),
        ({"bootstrap_servers": "b:9092", "password": 42}, "password"),
        ({"bootstrap_servers": "b:9092", "sasl_over_tls": "off"}, "sasl_over_tls"),
        ({"bootstrap_servers": "b:9092", "pasword": "x"}, "pasword"),
    ],
)
def test_given_a_bad_connection_field_when_loaded_then_the_error_names_it(
    document: dict[str, object], field: str
) -> None:
    with pytest.raises(msgspec.ValidationError) as raised:
        KafkaConnection.load(document)

    assert f"{field}: " in describe_validation_error(raised.value, "Kafka configuration"), str(raised.value)


def test_given_msk_iam_when_config_built_then_oauthbearer_over_tls_with_a_callback() -> None:
    config = build_client_config(
        KafkaConnection(bootstrap_servers="b-1.msk:9098", auth_mode=KafkaAuthMode.MSK_IAM, region="eu-west-1")
    )

    assert config["security.protocol"] == "SASL_SSL"
    assert config["sasl.mechanism"] == "OAUTHBEARER"
    assert callable(config["oauth_cb"])
    assert "sasl.username" not in config


def test_given_msk_iam_when_librdkafka_asks_for_a_token_then_the_signer_token_and_expiry_in_seconds_are_returned() -> (
    None
):
    config = build_client_config(
        KafkaConnection(bootstrap_servers="b-1.msk:9098", auth_mode=KafkaAuthMode.MSK_IAM, region="eu-west-1")
    )

    with mock.patch(SIGNER, return_value=("signed-token", 1_790_000_900_000)) as signer:
        token = config["oauth_cb"](None)

    signer.assert_called_once_with("eu-west-1")
    assert token == ("signed-token", 1_790_000_900.0)


def test_given_msk_iam_without_region_when_validated_then_rejected() -> None:
    with pytest.raises(msgspec.ValidationError, match="msk_iam needs region"):
        KafkaConnection.load({"bootstrap_servers": "b:9098", "auth_mode": "msk_iam"})
    with pytest.raises(ValueError, match="msk_iam needs region"):
        KafkaConnection(bootstrap_servers="b:9098", auth_mode=KafkaAuthMode.MSK_IAM)


@pytest.mark.timeout(60)
def test_given_msk_iam_config_when_the_client_connects_then_librdkafka_calls_the_signer_and_a_refusal_is_auth_error(
    kafka_broker: KafkaBroker,
) -> None:
    # The real librdkafka against the real broker: its SASL listener offers SCRAM only, so the OAUTHBEARER handshake
    # is refused, but only after librdkafka fetched a token through oauth_cb (confluent-kafka 2.16 calls it from its
    # background thread, without poll()).
    connection = KafkaConnection(
        bootstrap_servers=kafka_broker.bootstrap_sasl, auth_mode=KafkaAuthMode.MSK_IAM, region="us-east-1", timeout_s=5
    )
    config = build_client_config(connection)
    config["security.protocol"] = "SASL_PLAINTEXT"  # no TLS on the local listener
    regions: list[str] = []

    def signer(region: str) -> tuple[str, int]:
        regions.append(region)
        return "signed-token", 4_102_444_800_000

    errors: deque[KafkaError] = deque(maxlen=50)
    config["error_cb"] = errors.append
    with mock.patch(SIGNER, side_effect=signer):
        admin = TopicAdmin(AdminClient(config), connection.bootstrap_servers, connection.timeout_s, errors)
        with pytest.raises(KafkaAuthError) as caught:
            plan_topics(admin, [TopicSpec(name="alerts.new", replication_factor=1)])

    assert regions, "librdkafka should have asked oauth_cb for a token"
    assert set(regions) == {"us-east-1"}, regions
    assert "OAUTHBEARER" in str(caught.value), str(caught.value)


@pytest.mark.timeout(60)
def test_given_msk_iam_and_a_signer_without_credentials_when_admin_opened_then_auth_error_names_the_cause() -> None:
    connection = KafkaConnection(bootstrap_servers="127.0.0.1:9", auth_mode=KafkaAuthMode.MSK_IAM, region="eu-west-1")

    with (
        mock.patch(SIGNER, side_effect=RuntimeError("Unable to locate credentials")),
        pytest.raises(KafkaAuthError) as caught,
    ):
        open_admin(connection)

    message = str(caught.value)
    assert "Unable to locate credentials" in message, message
    assert "127.0.0.1:9" in message, message


def test_given_stack_settings_when_converted_then_connection_and_topics_follow_them() -> None:
    settings = KafkaSettings.from_environ(
        {
            "KAFKA_BOOTSTRAP_SERVERS": "b-1:9096",
            "KAFKA_AUTH_MODE": "sasl_scram",
            "KAFKA_TOPICS": ",".join(DEFAULT_TOPIC_NAMES),
            "KAFKA_REPLICATION_FACTOR": "3",
            "KAFKA_TOPIC_CONFIGS": '{"retention.ms": 604800000}',
            "KAFKA_TIMEOUT_SECONDS": "4",
        }
    )

    connection = connection_from_settings(settings, username="u", password="p")
    wanted = wanted_from_settings(settings)

    assert build_client_config(connection)["security.protocol"] == "SASL_SSL"
    assert connection.timeout_s == 4
    assert [(t.name, t.partitions, t.replication_factor, t.configs) for t in wanted] == [
        (name, 9, 3, {"retention.ms": "604800000"}) for name in DEFAULT_TOPIC_NAMES
    ]


def test_given_msk_iam_settings_without_region_when_converted_then_configuration_error() -> None:
    settings = KafkaSettings.from_environ(
        {"KAFKA_BOOTSTRAP_SERVERS": "b-1:9098", "KAFKA_AUTH_MODE": "msk_iam", "KAFKA_TOPICS": "alerts.new"}
    )

    with pytest.raises(ConfigurationError, match=r"^invalid Kafka configuration \(msk_iam\): .*msk_iam needs region"):
        connection_from_settings(settings)


@pytest.mark.parametrize("name", ["", "has space", "a/b", "x" * 250, ".."])
def test_given_an_illegal_topic_name_when_validated_then_rejected(name: str) -> None:
    with pytest.raises(msgspec.ValidationError, match="legal Kafka topic name"):
        TopicSpec.load({"name": name, "replication_factor": 1})
    with pytest.raises(msgspec.ValidationError, match="legal Kafka topic name"):
        wanted_topics(1, names=["alerts.new", name])


@pytest.mark.parametrize(
    ("replication_factor", "partitions", "field"),
    [(0, 9, "[0].replication_factor"), (1, 0, "[0].partitions")],
)
def test_given_a_replication_factor_or_partitions_below_1_when_topics_built_then_rejected_naming_the_field(
    replication_factor: int, partitions: int, field: str
) -> None:
    with pytest.raises(msgspec.ValidationError) as raised:
        wanted_topics(replication_factor, partitions=partitions)

    assert f": {field}: expected an integer >= 1" in describe_validation_error(raised.value, "topic"), str(raised.value)


def test_given_numeric_and_boolean_config_values_when_validated_then_they_become_kafka_strings() -> None:
    spec = TopicSpec.load(
        {"name": "alerts.new", "replication_factor": 3, "configs": {"retention.ms": 3600000, "preallocate": True}}
    )

    assert spec.configs == {"retention.ms": "3600000", "preallocate": "true"}


def test_given_a_report_when_serialised_then_it_round_trips_as_json() -> None:
    report = TopicReport(
        dry_run=False,
        bootstrap_servers="b:9092",
        created=["alerts.new"],
        grown=[PartitionGrowth(topic="rule.changed", from_partitions=3, to_partitions=9)],
        more_partitions_than_wanted=[MorePartitionsThanWanted(topic="alerts.matched", partitions=12, wanted=9)],
        unchanged=["alerts.matched", "notifications.ready"],
        partitions={"alerts.new": 9, "rule.changed": 9, "alerts.matched": 12, "notifications.ready": 9},
    )

    assert TopicReport.load(json.loads(json.dumps(report.to_json()))) == report
    result = report.to_result().to_json()
    assert [(t["name"], t["action"], t["partitionsBefore"], t["partitionsAfter"]) for t in result["topics"]] == [
        ("alerts.new", "create", None, 9),
        ("rule.changed", "grow", 3, 9),
        ("alerts.matched", "over-partitioned", 12, 12),
        ("notifications.ready", "unchanged", 9, 9),
    ]
