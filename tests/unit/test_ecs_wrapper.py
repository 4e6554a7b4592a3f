"""The ECS wrapper's judgements on response shapes as ECS documents them (no AWS calls)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest
from release_steps.ecs import (
    EcsFailure,
    EcsService,
    EcsTask,
    EcsTaskDefinition,
    LogLocation,
    task_definition_revision,
)

if TYPE_CHECKING:
    from mypy_boto3_ecs.literals import LogDriverType
    from mypy_boto3_ecs.type_defs import ContainerDefinitionOutputTypeDef, ContainerTypeDef, FailureTypeDef

TASK_ARN = "arn:aws:ecs:us-east-1:123456789012:task/alerting/0f3c5e9a8b7d4c2e9f1a6b5c4d3e2f10"
TD_ARN = "arn:aws:ecs:us-east-1:123456789012:task-definition/deployflow-migrate:42"


def task(last_status: str, containers: list[ContainerTypeDef] | None = None) -> EcsTask:
    return EcsTask({"taskArn": TASK_ARN, "lastStatus": last_status, "containers": containers or []})


@pytest.mark.parametrize(
    ("reason", "detail", "capacity"),
    [
        ("RESOURCE:MEMORY", None, True),
        ("RESOURCE:ENI", None, True),
        ("AGENT", None, True),
        ("Capacity is unavailable at this time. Please try again later", None, True),
        ("ATTRIBUTE", "ecs.capability.efs", False),
        ("MISSING", None, False),
        ("INACTIVE", None, False),
    ],
)
def test_given_a_run_task_failure_when_classified_then_only_placement_shortages_are_capacity(
    reason: str, detail: str | None, capacity: bool
) -> None:
    failure: FailureTypeDef = {"arn": "arn", "reason": reason}
    if detail is not None:
        failure["detail"] = detail
    assert EcsFailure.from_response(failure).is_capacity is capacity


@pytest.mark.parametrize(
    ("last_status", "phase"),
    [
        ("PROVISIONING", "PENDING"),
        ("PENDING", "PENDING"),
        ("ACTIVATING", "PENDING"),
        ("RUNNING", "RUNNING"),
        ("DEACTIVATING", "RUNNING"),
        ("STOPPING", "RUNNING"),
        ("DEPROVISIONING", "RUNNING"),
        ("STOPPED", "STOPPED"),
        ("DELETED", "STOPPED"),
    ],
)
def test_given_an_ecs_lifecycle_state_when_folded_then_pending_running_or_stopped(last_status: str, phase: str) -> None:
    assert task(last_status).phase == phase


def test_given_a_stopped_task_when_judged_then_only_the_named_container_counts() -> None:
    stopped = task("STOPPED", [{"name": "log-router", "exitCode": 1}, {"name": "migrate", "exitCode": 0}])

    assert stopped.has_completed("migrate")
    assert not stopped.has_completed("log-router")
    assert stopped.id == "0f3c5e9a8b7d4c2e9f1a6b5c4d3e2f10"


@pytest.mark.parametrize("containers", [[{"name": "migrate"}], [{"name": "migrate", "exitCode": 3}], []])
def test_given_a_stopped_task_without_a_zero_exit_when_judged_then_not_completed(
    containers: list[ContainerTypeDef],
) -> None:
    assert task("STOPPED", containers).is_stopped
    assert not task("STOPPED", containers).has_completed("migrate")


def test_given_a_running_task_when_judged_then_not_completed() -> None:
    running = task("RUNNING", [{"name": "migrate", "exitCode": 0}])

    assert not running.has_completed("migrate")


def definition(log_options: dict[str, str] | None, driver: LogDriverType = "awslogs") -> EcsTaskDefinition:
    container: ContainerDefinitionOutputTypeDef = {"name": "migrate", "image": "repo:old"}
    if log_options is not None:
        container["logConfiguration"] = {"logDriver": driver, "options": log_options}
    return EcsTaskDefinition(
        {
            "taskDefinitionArn": TD_ARN,
            "family": "deployflow-migrate",
            "revision": 42,
            "status": "ACTIVE",
            "compatibilities": ["EC2", "FARGATE"],
            "requiresAttributes": [{"name": "com.amazonaws.ecs.capability.logging-driver.awslogs"}],
            "registeredAt": datetime(2026, 11, 20, tzinfo=UTC),
            "networkMode": "awsvpc",
            "cpu": "256",
            "memory": "1024",
            "containerDefinitions": [container, {"name": "log-router", "image": "fluent-bit"}],
        },
        tags=[{"key": "team", "value": "alerting"}],
    )


def test_given_awslogs_with_a_prefix_when_located_then_stream_is_prefix_container_task_id() -> None:
    location = definition({"awslogs-group": "/ecs/m", "awslogs-stream-prefix": "mig", "awslogs-region": "eu-west-1"})

    assert location.log_location("migrate", "abc") == LogLocation("/ecs/m", "mig/migrate/abc", "eu-west-1")


def test_given_awslogs_without_a_prefix_when_located_then_the_stream_is_unknown() -> None:
    assert definition({"awslogs-group": "/ecs/m"}).log_location("migrate", "abc") == LogLocation("/ecs/m", None, None)


@pytest.mark.parametrize(("options", "driver"), [(None, "awslogs"), ({"tag": "x"}, "fluentd"), ({}, "awslogs")])
def test_given_no_awslogs_group_when_located_then_none(options: dict[str, str] | None, driver: LogDriverType) -> None:
    assert definition(options, driver).log_location("migrate", "abc") is None


def test_given_a_described_revision_when_copied_then_only_registrable_fields_and_the_new_image() -> None:
    registrable = {"family", "containerDefinitions", "networkMode", "cpu", "memory", "tags"}

    registration = definition(None).registration_with_image("migrate", "repo@sha256:abc", registrable)

    assert set(registration) == registrable
    assert registration["containerDefinitions"][0]["image"] == "repo@sha256:abc"
    assert registration["containerDefinitions"][1]["image"] == "fluent-bit"
    assert registration["tags"] == [{"key": "team", "value": "alerting"}]
    assert definition(None).data["containerDefinitions"][0]["image"] == "repo:old", "the original is not changed"


@pytest.mark.parametrize(
    ("arn", "parsed"),
    [
        (TD_ARN, ("deployflow-migrate", 42)),
        ("arn:aws:ecs:us-east-1:1:task-definition/a-b_c:7", ("a-b_c", 7)),
        ("arn:aws:ecs:us-east-1:1:task/alerting/abc", None),
    ],
)
def test_given_an_arn_when_parsed_then_family_and_revision(arn: str, parsed: tuple[str, int] | None) -> None:
    assert task_definition_revision(arn) == parsed


def test_given_a_service_when_read_then_primary_deployment_and_newest_events_first() -> None:
    t0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
    service = EcsService(
        {
            "serviceName": "alert-ingest",
            "status": "ACTIVE",
            "deployments": [
                {"id": "ecs-svc/2", "status": "PRIMARY", "rolloutState": "IN_PROGRESS"},
                {"id": "ecs-svc/1", "status": "ACTIVE", "rolloutState": "COMPLETED"},
            ],
            "events": [
                {"createdAt": t0, "message": "old"},
                {"createdAt": t0 + timedelta(minutes=2), "message": "newest"},
                {"createdAt": t0 + timedelta(minutes=1), "message": "middle\n  line"},
            ],
        }
    )

    assert service.primary_deployment is not None
    assert service.primary_deployment.id == "ecs-svc/2"
    assert service.deployment("ecs-svc/1") is not None
    assert service.deployment("ecs-svc/9") is None
    assert service.recent_events(2) == ["newest", "middle line"]
    assert service.deployment_controller == "ECS"
