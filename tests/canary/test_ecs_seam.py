"""Canary: the ECS seam - RunTask really runs the container's command; service deployments roll out or fail."""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from deployflow.local.aws import LocalAws, LocalAwsConfig, Network, provision_network
from deployflow.local.ecs_seam import image_repository

TASK_SCRIPT = """
import os, pathlib, sys, time
print("migration starting", flush=True)
print("args=" + " ".join(sys.argv[1:]), flush=True)
for name in ("DB_URL", "FROM_TASKDEF", "FROM_OVERRIDE", "DB_PASSWORD", "AWS_LAMBDA_FUNCTION_NAME"):
    print(name + "=" + os.environ.get(name, "<unset>"), flush=True)
print("a line on stderr", file=sys.stderr, flush=True)
gate = os.environ.get("GATE_FILE")
if gate:
    deadline = time.monotonic() + 60
    while not pathlib.Path(gate).exists() and time.monotonic() < deadline:
        time.sleep(0.02)
sys.exit(int(os.environ.get("EXIT_CODE", "0")))
"""
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/canary-migrations@sha256:" + "b" * 64
CLUSTER = "canary"
LOG_GROUP = "/deployflow/migrations"


@pytest.fixture
def local_aws_config(local_aws_config: LocalAwsConfig) -> LocalAwsConfig:
    return dataclasses.replace(
        local_aws_config,
        images={"canary-migrations": [sys.executable, "-c", TASK_SCRIPT]},
        task_environment={"DB_URL": "postgresql://127.0.0.1:5999/alerting"},
    )


def register(aws: LocalAws, *, family: str = "canary-migrations", image: str = IMAGE, **container: Any) -> str:
    definition: dict[str, Any] = {
        "name": "migrate",
        "image": image,
        "essential": True,
        "command": ["upgrade", "--to", "head"],
        "environment": [{"name": "FROM_TASKDEF", "value": "taskdef"}, {"name": "DB_URL", "value": "rds-url"}],
        "logConfiguration": {
            "logDriver": "awslogs",
            "options": {
                "awslogs-group": LOG_GROUP,
                "awslogs-region": aws.region,
                "awslogs-stream-prefix": "migration",
                "awslogs-create-group": "true",
            },
        },
    }
    definition.update(container)
    response = aws.client("ecs").register_task_definition(
        family=family,
        requiresCompatibilities=["FARGATE"],
        networkMode="awsvpc",
        cpu="256",
        memory="512",
        containerDefinitions=[definition],
    )
    return str(response["taskDefinition"]["taskDefinitionArn"])


@pytest.fixture
def network(any_local_aws: LocalAws) -> Network:
    any_local_aws.client("ecs").create_cluster(clusterName=CLUSTER)
    return provision_network(any_local_aws)


def run_task(aws: LocalAws, network: Network, task_definition: str, **extra: Any) -> dict[str, Any]:
    response = aws.client("ecs").run_task(
        cluster=CLUSTER,
        taskDefinition=task_definition,
        launchType="FARGATE",
        networkConfiguration=network.awsvpc_configuration(),
        **extra,
    )
    assert not response["failures"], response["failures"]
    task: dict[str, Any] = response["tasks"][0]
    return task


def wait_stopped(aws: LocalAws, task_arn: str, timeout: float = 30) -> dict[str, Any]:
    ecs = aws.client("ecs")
    deadline = time.monotonic() + timeout
    while True:
        task: dict[str, Any] = ecs.describe_tasks(cluster=CLUSTER, tasks=[task_arn])["tasks"][0]
        if task["lastStatus"] == "STOPPED":
            return task
        assert time.monotonic() < deadline, f"task {task_arn} still {task['lastStatus']} after {timeout}s"
        time.sleep(0.05)


def log_lines(aws: LocalAws, stream: str) -> list[str]:
    events = aws.client("logs").get_log_events(logGroupName=LOG_GROUP, logStreamName=stream, startFromHead=True)
    return [e["message"] for e in events["events"]]


def test_given_an_image_mapped_to_a_command_when_run_task_then_it_runs_and_stops_with_its_exit_code(
    any_local_aws: LocalAws, network: Network
) -> None:
    task_definition = register(any_local_aws)
    overrides = {
        "containerOverrides": [
            {
                "name": "migrate",
                "environment": [{"name": "FROM_OVERRIDE", "value": "override"}, {"name": "EXIT_CODE", "value": "3"}],
            }
        ]
    }

    started = run_task(any_local_aws, network, task_definition, overrides=overrides, startedBy="deployflow")
    stopped = wait_stopped(any_local_aws, started["taskArn"])

    assert stopped["desiredStatus"] == "STOPPED"
    assert stopped["stopCode"] == "EssentialContainerExited"
    assert stopped["stoppedReason"] == "Essential container in task exited"
    assert stopped["containers"][0]["exitCode"] == 3, "the container's real exit code was not reported"
    assert stopped["containers"][0]["lastStatus"] == "STOPPED"
    assert stopped["stoppedAt"] >= stopped["startedAt"]
    task_id = started["taskArn"].rsplit("/", 1)[-1]
    lines = log_lines(any_local_aws, f"migration/migrate/{task_id}")
    assert lines[:2] == ["migration starting", "args=upgrade --to head"], lines
    assert "DB_URL=postgresql://127.0.0.1:5999/alerting" in lines, "the local stack's environment must win"
    assert "FROM_TASKDEF=taskdef" in lines
    assert "FROM_OVERRIDE=override" in lines
    assert "AWS_LAMBDA_FUNCTION_NAME=<unset>" in lines, "a Lambda invocation's environment leaked into the task"
    assert "a line on stderr" in lines
    run = any_local_aws.ecs.run_for(started["taskArn"])
    assert run is not None
    assert run.exit_code == 3
    assert run.command[-3:] == ("upgrade", "--to", "head")


def test_given_a_running_task_when_described_repeatedly_then_it_stays_running_until_the_process_exits(
    local_aws: LocalAws, tmp_path: Path
) -> None:
    local_aws.client("ecs").create_cluster(clusterName=CLUSTER)
    network = provision_network(local_aws)
    gate = tmp_path / "release"
    task_definition = register(local_aws)
    overrides = {
        "containerOverrides": [{"name": "migrate", "environment": [{"name": "GATE_FILE", "value": str(gate)}]}]
    }
    task_arn = run_task(local_aws, network, task_definition, overrides=overrides)["taskArn"]
    ecs = local_aws.client("ecs")

    while_running = [ecs.describe_tasks(cluster=CLUSTER, tasks=[task_arn])["tasks"][0] for _ in range(6)]
    gate.touch()
    stopped = wait_stopped(local_aws, task_arn)

    assert [t["lastStatus"] for t in while_running] == ["RUNNING"] * 6, "moto's own lifecycle advanced the task"
    assert all("exitCode" not in t["containers"][0] for t in while_running), "no exit code while running"
    assert stopped["containers"][0]["exitCode"] == 0


def test_given_a_client_token_when_run_task_is_repeated_then_the_same_task_returns_and_nothing_runs_twice(
    any_local_aws: LocalAws, network: Network
) -> None:
    task_definition = register(any_local_aws)

    first = run_task(any_local_aws, network, task_definition, clientToken="release-2026-11-23.4")
    second = run_task(any_local_aws, network, task_definition, clientToken="release-2026-11-23.4")
    wait_stopped(any_local_aws, first["taskArn"])
    with pytest.raises(ClientError) as conflict:
        run_task(any_local_aws, network, task_definition, clientToken="release-2026-11-23.4", startedBy="other")
    other = run_task(any_local_aws, network, task_definition, clientToken="another-token")

    assert second["taskArn"] == first["taskArn"]
    assert conflict.value.response["Error"]["Code"] == "ConflictException"
    assert other["taskArn"] != first["taskArn"]
    ran = [r.task_arn for r in any_local_aws.ecs.runs]
    assert sorted(ran) == sorted([first["taskArn"], other["taskArn"]]), f"a repeated token ran a process again: {ran}"
    listed = any_local_aws.client("ecs").list_tasks(cluster=CLUSTER)["taskArns"]
    assert sorted(listed) == sorted({first["taskArn"], other["taskArn"]})


def test_given_a_running_task_when_stopped_then_its_process_is_terminated_and_the_stop_is_user_initiated(
    local_aws: LocalAws, tmp_path: Path
) -> None:
    local_aws.client("ecs").create_cluster(clusterName=CLUSTER)
    network = provision_network(local_aws)
    never = tmp_path / "never-created"
    overrides = {
        "containerOverrides": [{"name": "migrate", "environment": [{"name": "GATE_FILE", "value": str(never)}]}]
    }
    task_arn = run_task(local_aws, network, register(local_aws), overrides=overrides)["taskArn"]

    local_aws.client("ecs").stop_task(cluster=CLUSTER, task=task_arn, reason="migration deadline passed")
    stopped = wait_stopped(local_aws, task_arn)

    assert stopped["stopCode"] == "UserInitiated"
    assert stopped["stoppedReason"] == "migration deadline passed"
    assert stopped["containers"][0]["exitCode"] == 143, "SIGTERM should give exit code 128 + 15"


def test_given_an_image_without_a_local_command_when_run_task_then_it_fails_to_start(
    local_aws: LocalAws,
) -> None:
    local_aws.client("ecs").create_cluster(clusterName=CLUSTER)
    network = provision_network(local_aws)
    task_definition = register(local_aws, family="unknown", image="registry.example.com/team/unknown:1.0")

    stopped = wait_stopped(local_aws, run_task(local_aws, network, task_definition)["taskArn"])

    assert stopped["stopCode"] == "TaskFailedToStart"
    assert stopped["stoppedReason"].startswith("CannotPullContainerError"), stopped["stoppedReason"]
    assert "team/unknown" in stopped["stoppedReason"]
    assert "exitCode" not in stopped["containers"][0]


def test_given_a_missing_log_group_without_create_group_when_run_task_then_it_fails_to_start(
    local_aws: LocalAws,
) -> None:
    local_aws.client("ecs").create_cluster(clusterName=CLUSTER)
    network = provision_network(local_aws)
    logs = {"logDriver": "awslogs", "options": {"awslogs-group": "/missing", "awslogs-stream-prefix": "m"}}
    task_definition = register(local_aws, family="nolog", logConfiguration=logs)

    stopped = wait_stopped(local_aws, run_task(local_aws, network, task_definition)["taskArn"])

    assert stopped["stopCode"] == "TaskFailedToStart"
    assert stopped["stoppedReason"].startswith("ResourceInitializationError"), stopped["stoppedReason"]


def test_given_container_secrets_when_run_task_then_they_are_resolved_from_secrets_manager_and_ssm(
    local_aws: LocalAws,
) -> None:
    local_aws.client("ecs").create_cluster(clusterName=CLUSTER)
    network = provision_network(local_aws)
    secret_arn = local_aws.client("secretsmanager").create_secret(
        Name="alerting/db", SecretString=json.dumps({"username": "app", "password": "s3cret"})
    )["ARN"]
    local_aws.client("ssm").put_parameter(Name="/alerting/flag", Value="on", Type="String")
    secrets = [
        {"name": "DB_PASSWORD", "valueFrom": f"{secret_arn}:password::"},
        {"name": "FROM_OVERRIDE", "valueFrom": "/alerting/flag"},
    ]
    task_definition = register(local_aws, family="secrets", secrets=secrets, memory=256)

    task_arn = run_task(local_aws, network, task_definition)["taskArn"]
    stopped = wait_stopped(local_aws, task_arn)

    lines = log_lines(local_aws, f"migration/migrate/{task_arn.rsplit('/', 1)[-1]}")
    assert stopped["containers"][0]["exitCode"] == 0, lines
    assert "DB_PASSWORD=s3cret" in lines
    assert "FROM_OVERRIDE=on" in lines


def test_image_repository_parses_ecr_and_plain_references() -> None:
    assert image_repository(IMAGE) == "canary-migrations"
    assert image_repository("123456789012.dkr.ecr.us-east-1.amazonaws.com/team/app:1.2") == "team/app"
    assert image_repository("localhost:5000/app") == "app"
    assert image_repository("app:1.2") == "app"
    assert image_repository("library/busybox") == "library/busybox"


# -- services -------------------------------------------------------------------------------------------------------


def create_service(aws: LocalAws, name: str, **extra: Any) -> dict[str, Any]:
    aws.client("ecs").register_task_definition(
        family=name, containerDefinitions=[{"name": "app", "image": f"{name}:1", "memory": 128, "essential": True}]
    )
    service: dict[str, Any] = aws.client("ecs").create_service(
        cluster=CLUSTER, serviceName=name, taskDefinition=name, desiredCount=2, **extra
    )["service"]
    return service


def settled(aws: LocalAws, name: str, deployment_id: str | None = None, timeout: float = 30) -> dict[str, Any]:
    """The service once its PRIMARY deployment (or the given one) left IN_PROGRESS."""
    ecs = aws.client("ecs")
    deadline = time.monotonic() + timeout
    while True:
        service: dict[str, Any] = ecs.describe_services(cluster=CLUSTER, services=[name])["services"][0]
        if deployment_id is None:
            watched = [d for d in service["deployments"] if d["status"] == "PRIMARY"]
        else:
            watched = [d for d in service["deployments"] if d["id"] == deployment_id]
        if not watched or watched[0]["rolloutState"] != "IN_PROGRESS":
            return service
        assert time.monotonic() < deadline, f"{name} still rolling out: {service['deployments']}"
        time.sleep(0.05)


def test_given_a_service_when_forcing_a_new_deployment_then_a_new_primary_rolls_out_and_completes(
    any_local_aws: LocalAws,
) -> None:
    any_local_aws.client("ecs").create_cluster(clusterName=CLUSTER)
    initial = create_service(any_local_aws, "alert-ingest")["deployments"][0]
    assert initial["rolloutState"] == "IN_PROGRESS"
    assert settled(any_local_aws, "alert-ingest")["deployments"][0]["rolloutState"] == "COMPLETED"

    updated = any_local_aws.client("ecs").update_service(
        cluster=CLUSTER, service="alert-ingest", forceNewDeployment=True
    )
    service = settled(any_local_aws, "alert-ingest")

    fresh = updated["service"]["deployments"]
    assert [d["status"] for d in fresh] == ["PRIMARY", "ACTIVE"], fresh
    assert fresh[0]["id"] != initial["id"]
    assert fresh[1]["id"] == initial["id"], "the previous deployment should stay, ACTIVE, under its own id"
    assert fresh[0]["rolloutState"] == "IN_PROGRESS"
    assert [(d["id"], d["rolloutState"]) for d in service["deployments"]] == [(fresh[0]["id"], "COMPLETED")]
    assert service["deployments"][0]["runningCount"] == 2
    assert service["runningCount"] == 2
    messages = [e["message"] for e in service["events"]]
    assert f"(service alert-ingest) (deployment {fresh[0]['id']}) deployment completed." in messages
    assert "(service alert-ingest) has reached a steady state." in messages


def test_given_a_service_marked_failing_when_a_new_deployment_rolls_out_then_it_fails_with_a_stopped_task(
    any_local_aws: LocalAws,
) -> None:
    ecs = any_local_aws.client("ecs")
    ecs.create_cluster(clusterName=CLUSTER)
    create_service(any_local_aws, "alert-notify")
    settled(any_local_aws, "alert-notify")
    any_local_aws.ecs.fail_rollouts("alert-notify", reason="tasks failed to start", exit_code=2)

    deployment_id = ecs.update_service(cluster=CLUSTER, service="alert-notify", forceNewDeployment=True)["service"][
        "deployments"
    ][0]["id"]
    service = settled(any_local_aws, "alert-notify", deployment_id)

    failed = service["deployments"][0]
    assert (failed["id"], failed["status"], failed["rolloutState"]) == (deployment_id, "PRIMARY", "FAILED")
    assert failed["failedTasks"] == 2
    assert "circuit breaker" in failed["rolloutStateReason"]
    assert f"(service alert-notify) (deployment {deployment_id}) deployment failed: tasks failed to start." in [
        e["message"] for e in service["events"]
    ]
    stopped_arns = ecs.list_tasks(cluster=CLUSTER, startedBy=deployment_id, desiredStatus="STOPPED")["taskArns"]
    assert len(stopped_arns) == 1
    task = ecs.describe_tasks(cluster=CLUSTER, tasks=stopped_arns)["tasks"][0]
    assert (task["lastStatus"], task["stopCode"], task["group"]) == (
        "STOPPED",
        "EssentialContainerExited",
        "service:alert-notify",
    )
    assert task["containers"][0]["exitCode"] == 2


def test_given_a_failing_service_with_circuit_breaker_rollback_when_deployed_then_it_rolls_back(
    any_local_aws: LocalAws,
) -> None:
    ecs = any_local_aws.client("ecs")
    ecs.create_cluster(clusterName=CLUSTER)
    breaker = {"deploymentCircuitBreaker": {"enable": True, "rollback": True}}
    create_service(any_local_aws, "alert-match", deploymentConfiguration=breaker)
    first = settled(any_local_aws, "alert-match")["deployments"][0]
    any_local_aws.ecs.fail_rollouts("alert-match")

    deployment_id = ecs.update_service(cluster=CLUSTER, service="alert-match", forceNewDeployment=True)["service"][
        "deployments"
    ][0]["id"]
    after_failure = settled(any_local_aws, "alert-match", deployment_id)
    after_rollback = settled(any_local_aws, "alert-match")

    assert [(d["status"], d["rolloutState"]) for d in after_failure["deployments"]][1] == ("ACTIVE", "FAILED")
    assert after_failure["deployments"][1]["id"] == deployment_id
    rolling_back = after_failure["deployments"][0]
    # minimumHealthyPercent 100 (the default): the previous revision's tasks never stopped, they serve on.
    assert (rolling_back["rolloutState"], rolling_back["runningCount"]) == ("IN_PROGRESS", 2), rolling_back
    assert after_failure["runningCount"] == 2
    rollback = after_rollback["deployments"]
    assert len(rollback) == 1, rollback
    assert rollback[0]["id"] not in (deployment_id, first["id"]), rollback
    assert rollback[0]["rolloutState"] == "COMPLETED"
    assert rollback[0]["taskDefinition"] == first["taskDefinition"]
    assert after_rollback["deploymentConfiguration"]["deploymentCircuitBreaker"]["rollback"] is True


def test_given_a_task_still_running_when_the_local_aws_stops_then_its_process_is_killed(
    aws_credentials: None, local_aws_config: LocalAwsConfig, tmp_path: Path
) -> None:
    import os

    never = tmp_path / "never-created"
    with LocalAws(local_aws_config) as aws:
        aws.client("ecs").create_cluster(clusterName=CLUSTER)
        network = provision_network(aws)
        overrides = {
            "containerOverrides": [{"name": "migrate", "environment": [{"name": "GATE_FILE", "value": str(never)}]}]
        }
        task_arn = run_task(aws, network, register(aws), overrides=overrides)["taskArn"]
        container = aws.client("ecs").describe_tasks(cluster=CLUSTER, tasks=[task_arn])["tasks"][0]["containers"][0]
        pid = int(container["runtimeId"].removeprefix("local-"))
        os.kill(pid, 0)  # running now
        run = aws.ecs.run_for(task_arn)

    assert run is not None
    assert run.stopped, "the runner thread did not see the process end"
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


@pytest.mark.parametrize("severity_counts", [{}, {"CRITICAL": 2, "LOW": 1}])
def test_given_pushed_images_when_described_then_digests_differ_and_the_scan_reports_what_was_set(
    any_local_aws: LocalAws, severity_counts: dict[str, int]
) -> None:
    from deployflow.local.aws import push_image

    digest, uri = push_image(any_local_aws, "canary-migrations", "2026-11-23.4", severity_counts=severity_counts)
    other, _ = push_image(any_local_aws, "canary-migrations", "2026-11-23.5")
    ecr = any_local_aws.client("ecr")

    by_tag = ecr.describe_images(repositoryName="canary-migrations", imageIds=[{"imageTag": "2026-11-23.4"}])
    findings = ecr.describe_image_scan_findings(
        repositoryName="canary-migrations", imageId={"imageTag": "2026-11-23.4"}
    )

    assert digest != other, "moto gives every layerless image the same digest; push_image must not"
    assert by_tag["imageDetails"][0]["imageDigest"] == digest
    assert uri == f"123456789012.dkr.ecr.us-east-1.amazonaws.com/canary-migrations@{digest}"
    assert image_repository(uri) == "canary-migrations"
    assert findings["imageScanStatus"]["status"] == "COMPLETE"
    assert findings["imageScanFindings"]["findingSeverityCounts"] == severity_counts
    with pytest.raises(ClientError) as unscanned:
        ecr.describe_image_scan_findings(repositoryName="canary-migrations", imageId={"imageTag": "2026-11-23.5"})
    assert unscanned.value.response["Error"]["Code"] == "ScanNotFoundException"
