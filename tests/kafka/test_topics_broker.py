"""The topic step's logic against a real Kafka broker (KRaft, PLAINTEXT and SASL_PLAINTEXT/SCRAM-SHA-512)."""

from __future__ import annotations

import socket

import pytest
from release_steps.errors import KafkaAuthError, KafkaUnreachableError, TopicConflictError
from release_steps.kafka_topics import (
    KafkaAuthMode,
    KafkaConnection,
    PlannedTopic,
    SecretStr,
    TopicAction,
    TopicAdmin,
    TopicPlan,
    TopicSpec,
    apply_plan,
    ensure_topics,
    open_admin,
    plan_topics,
)

from deployflow.local.kafka import KafkaBroker
from tests.kafka.conftest import Cluster

WEEK_MS = "604800000"  # Kafka's default retention.ms
HOUR_MS = "3600000"


def test_given_no_topics_when_ensured_over_plaintext_then_all_four_exist_with_9_partitions(
    admin: TopicAdmin, cluster: Cluster
) -> None:
    wanted = cluster.wanted()

    report = ensure_topics(admin, wanted)

    names = [t.name for t in wanted]
    assert cluster.partitions() == dict.fromkeys(names, 9), "the broker should hold the four topics with 9 partitions"
    assert report.created == names
    assert report.dry_run is False
    assert report.grown == []
    assert report.unchanged == []


def test_given_no_topics_when_ensured_over_sasl_scram_then_they_are_created(
    sasl: KafkaConnection, cluster: Cluster
) -> None:
    wanted = cluster.wanted()

    report = ensure_topics(open_admin(sasl), wanted)

    assert cluster.partitions() == {t.name: 9 for t in wanted}, "topics should be created through the SCRAM listener"
    assert report.created == [t.name for t in wanted]
    assert report.bootstrap_servers == sasl.bootstrap_servers


def test_given_topics_in_place_when_ensured_again_then_nothing_changes(admin: TopicAdmin, cluster: Cluster) -> None:
    wanted = cluster.wanted(configs={"retention.ms": HOUR_MS})
    ensure_topics(admin, wanted)

    again = ensure_topics(admin, wanted)

    assert again.unchanged == [t.name for t in wanted], f"a rerun should be a no-op, got {again}"
    assert again.created == []
    assert again.grown == []
    assert again.configs_altered == []
    assert all(c.action == "unchanged" for c in again.to_result().topics)


def test_given_a_topic_with_3_partitions_when_9_wanted_then_it_grows_to_9(admin: TopicAdmin, cluster: Cluster) -> None:
    [name] = cluster.names("alerts.new")
    cluster.create(name, 3)

    report = ensure_topics(admin, [TopicSpec(name=name, partitions=9, replication_factor=1)])

    assert cluster.partitions() == {name: 9}, "CreatePartitions should have grown the topic on the broker"
    assert [(g.topic, g.from_partitions, g.to_partitions) for g in report.grown] == [(name, 3, 9)]
    [change] = report.to_result().topics
    assert (change.action, change.partitions_before, change.partitions_after) == ("grow", 3, 9)


def test_given_a_topic_with_12_partitions_when_9_wanted_then_it_is_reported_and_kept(
    admin: TopicAdmin, cluster: Cluster
) -> None:
    [name] = cluster.names("alerts.matched")
    cluster.create(name, 12)

    report = ensure_topics(admin, [TopicSpec(name=name, partitions=9, replication_factor=1)])

    assert cluster.partitions() == {name: 12}, "partitions must never be removed"
    assert [(m.topic, m.partitions, m.wanted) for m in report.more_partitions_than_wanted] == [(name, 12, 9)]
    assert report.created == []
    assert report.grown == []
    [change] = report.to_result().topics
    assert change.action == "over-partitioned"
    assert change.partitions_after == 12


def test_given_replication_factor_3_on_one_broker_when_ensured_then_conflict_and_nothing_created(
    admin: TopicAdmin, cluster: Cluster
) -> None:
    wanted = cluster.wanted(replication_factor=3)

    with pytest.raises(TopicConflictError) as caught:
        ensure_topics(admin, wanted)

    message = str(caught.value)
    assert "replication factor 3" in message, message
    assert "1 broker" in message, message
    assert wanted[0].name in message, message
    assert cluster.partitions() == {}, "no topic may be created when any conflicts"


def test_given_a_plan_asking_more_replicas_than_brokers_when_applied_then_the_broker_refusal_is_a_conflict(
    admin: TopicAdmin, cluster: Cluster
) -> None:
    # Past the planner's own check: the broker's INVALID_REPLICATION_FACTOR must map to the same named error.
    ok, too_many = cluster.names("alerts.new", "rule.changed")
    plan = TopicPlan(
        bootstrap_servers=admin.bootstrap_servers,
        broker_count=1,
        topics=[
            PlannedTopic(spec=TopicSpec(name=ok, partitions=9, replication_factor=1), action=TopicAction.CREATE),
            PlannedTopic(spec=TopicSpec(name=too_many, partitions=9, replication_factor=3), action=TopicAction.CREATE),
        ],
    )

    with pytest.raises(TopicConflictError) as caught:
        apply_plan(admin, plan)

    message = str(caught.value)
    assert "INVALID_REPLICATION_FACTOR" in message, message
    assert too_many in message, message
    assert "nothing was changed" in message, message
    assert cluster.partitions() == {}, "validation must refuse the whole plan before creating the valid topic"


def test_given_an_existing_topic_with_replication_factor_1_when_3_wanted_then_conflict(
    admin: TopicAdmin, cluster: Cluster
) -> None:
    [name] = cluster.names("rule.changed")
    cluster.create(name, 3)

    with pytest.raises(TopicConflictError, match=r"replication factor is 1, wanted 3"):
        ensure_topics(admin, [TopicSpec(name=name, partitions=9, replication_factor=3)])

    assert cluster.partitions() == {name: 3}, "a conflicting topic must not be grown"


def test_given_retention_drift_when_ensured_then_config_altered_and_reported(
    admin: TopicAdmin, cluster: Cluster
) -> None:
    [name] = cluster.names("notifications.ready")
    cluster.create(name, 9)
    assert cluster.config(name, "retention.ms") == WEEK_MS

    report = ensure_topics(
        admin, [TopicSpec(name=name, partitions=9, replication_factor=1, configs={"retention.ms": HOUR_MS})]
    )

    assert cluster.config(name, "retention.ms") == HOUR_MS, "IncrementalAlterConfigs should have set retention.ms"
    [altered] = report.configs_altered
    assert altered.topic == name
    assert [(c.name, c.current, c.wanted) for c in altered.changes] == [("retention.ms", WEEK_MS, HOUR_MS)]
    [change] = report.to_result().topics
    assert change.action == "configs-altered"
    assert change.configs_altered == {"retention.ms": HOUR_MS}


def test_given_missing_small_and_drifted_topics_when_dry_run_then_plan_reported_and_nothing_changed(
    admin: TopicAdmin, cluster: Cluster
) -> None:
    missing, small, drifted = cluster.names("alerts.new", "rule.changed", "alerts.matched")
    cluster.create(small, 3)
    cluster.create(drifted, 9)
    wanted = [
        TopicSpec(name=n, partitions=9, replication_factor=1, configs={"retention.ms": HOUR_MS})
        for n in (missing, small, drifted)
    ]

    report = ensure_topics(admin, wanted, dry_run=True)

    assert report.dry_run is True
    assert report.created == [missing]
    assert [(g.topic, g.from_partitions, g.to_partitions) for g in report.grown] == [(small, 3, 9)]
    assert sorted(c.topic for c in report.configs_altered) == sorted([small, drifted])
    assert cluster.partitions() == {small: 3, drifted: 9}, "a dry run must not create or grow"
    assert cluster.config(drifted, "retention.ms") == WEEK_MS, "a dry run must not alter configs"
    assert report.to_result().dry_run is True


def test_given_a_plan_when_another_run_creates_the_topic_first_then_apply_accepts_it(
    admin: TopicAdmin, cluster: Cluster
) -> None:
    [name] = cluster.names("alerts.new")
    plan = plan_topics(admin, [TopicSpec(name=name, partitions=9, replication_factor=1)])
    assert [t.action for t in plan.topics] == [TopicAction.CREATE]
    cluster.create(name, 9)  # the race: TOPIC_ALREADY_EXISTS on apply

    report = apply_plan(admin, plan)

    assert report.already_applied == [name]
    assert report.created == []
    assert cluster.partitions() == {name: 9}


def test_given_an_unknown_config_when_ensured_then_conflict_names_it_and_nothing_is_created(
    admin: TopicAdmin, cluster: Cluster
) -> None:
    wanted = cluster.wanted(configs={"retention.mss": HOUR_MS})

    with pytest.raises(TopicConflictError) as caught:
        ensure_topics(admin, wanted)

    message = str(caught.value)
    assert "INVALID_CONFIG" in message, message
    assert "retention.mss" in message, message
    assert cluster.partitions() == {}


def test_given_an_existing_topic_and_an_unknown_config_when_planned_then_the_plan_has_a_conflict(
    admin: TopicAdmin, cluster: Cluster
) -> None:
    [name] = cluster.names("alerts.new")
    cluster.create(name, 9)

    plan = plan_topics(admin, [TopicSpec(name=name, partitions=9, replication_factor=1, configs={"no.such": "1"})])

    [planned] = plan.conflicts
    assert planned.conflicts == ["config no.such is not a topic config this cluster knows"]


@pytest.mark.timeout(30)  # the bound: a hang here fails the test instead of waiting for the suite's timeout
def test_given_a_closed_port_when_planning_then_unreachable_error_names_the_servers() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"127.0.0.1:{s.getsockname()[1]}"  # bound, never listening: connections are refused
        admin = open_admin(KafkaConnection(bootstrap_servers=closed, timeout_s=2))

        with pytest.raises(KafkaUnreachableError) as caught:
            plan_topics(admin, [TopicSpec(name="alerts.new", replication_factor=1)])

    message = str(caught.value)
    assert closed in message, message
    assert "within 2s" in message, message


@pytest.mark.timeout(30)
def test_given_a_wrong_scram_password_when_planning_then_auth_error(kafka_broker: KafkaBroker) -> None:
    wrong = KafkaConnection(
        bootstrap_servers=kafka_broker.bootstrap_sasl,
        auth_mode=KafkaAuthMode.SASL_SCRAM,
        username=kafka_broker.scram_username,
        password=SecretStr("not-" + kafka_broker.scram_password),
        sasl_over_tls=False,
        timeout_s=10,
    )

    with pytest.raises(KafkaAuthError) as caught:
        plan_topics(open_admin(wrong), [TopicSpec(name="alerts.new", replication_factor=1)])

    assert "_AUTHENTICATION" in str(caught.value)
    assert kafka_broker.bootstrap_sasl in str(caught.value)
