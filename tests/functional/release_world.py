"""The AWS account the AWS-facing step tests run against: moto resources shaped like the alerting platform's.

``ReleaseWorld`` creates resources through the real APIs (boto3 against ``moto.mock_aws``) and, where moto
cannot express a state (a deployment IN_PROGRESS / FAILED / rolled back, a stopped container's exit code and stop
code), it edits moto's backend objects directly: ``moto.ecs.models.ecs_backends[account][region]``. Each such edit
is a method here whose docstring says what real ECS does that moto 5.2.5 does not.
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
from release_steps.timeutil import to_iso

if TYPE_CHECKING:
    from mypy_boto3_ec2.type_defs import FilterTypeDef

ACCOUNT = "123456789012"  # moto's default account; the events/*.json files use it too
REGION = "us-east-1"
CLUSTER = "alerting"
FAMILY = "deployflow-migrate"
CONTAINER = "migrate"
SIDECAR = "log-router"
REPOSITORY = "deployflow-migrations"
REGISTRY = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"
SERVICES = ["alert-ingest", "alert-matcher", "alert-notifier"]
STATE_MACHINE = "deployflow-release"
STATE_MACHINE_ARN = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{STATE_MACHINE}"
LOCK_TABLE = "deployflow-release-lock"
LOG_GROUP = "/ecs/deployflow-migrate"
LOG_PREFIX = "migrate"
OLD_IMAGE = f"{REGISTRY}/{REPOSITORY}:2026-11-20.1"
EVENTS_DIR = Path(__file__).resolve().parents[2] / "events"


def load_event(name: str) -> dict[str, Any]:
    """A fresh copy of ``events/<name>.json`` (the file ``sam local invoke -e`` would use)."""
    with (EVENTS_DIR / f"{name}.json").open(encoding="utf-8") as f:
        event: dict[str, Any] = json.load(f)
    return copy.deepcopy(event)


def image_manifest(seed: str) -> str:
    """A schema-2 image manifest whose layer digests (and so moto's image digest) depend on ``seed``."""
    layer = f"sha256:{seed.encode().hex().ljust(64, '0')[:64]}"
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {
                "mediaType": "application/vnd.docker.container.image.v1+json",
                "size": 7023,
                "digest": "sha256:" + "c" * 64,
            },
            "layers": [
                {"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 32654, "digest": layer}
            ],
        }
    )


class ReleaseWorld:
    """Boto3 clients on moto plus builders for the resources the steps read and change."""

    def __init__(self) -> None:
        self.ecs = boto3.client("ecs", region_name=REGION)
        self.ecr = boto3.client("ecr", region_name=REGION)
        self.logs = boto3.client("logs", region_name=REGION)
        self.sfn = boto3.client("stepfunctions", region_name=REGION)
        self.dynamodb = boto3.client("dynamodb", region_name=REGION)
        ec2 = boto3.client("ec2", region_name=REGION)
        default_vpc = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
        vpc_filter: list[FilterTypeDef] = [{"Name": "vpc-id", "Values": [default_vpc]}]
        self.subnet_id = ec2.describe_subnets(Filters=vpc_filter)["Subnets"][0]["SubnetId"]
        self.security_group_id = ec2.describe_security_groups(Filters=vpc_filter)["SecurityGroups"][0]["GroupId"]

    # --- moto backends ----------------------------------------------------------------------------------------

    @staticmethod
    def ecs_backend() -> Any:
        from moto.ecs.models import ecs_backends

        return ecs_backends[ACCOUNT][REGION]

    @staticmethod
    def ecr_backend() -> Any:
        from moto.ecr.models import ecr_backends

        return ecr_backends[ACCOUNT][REGION]

    @staticmethod
    def sfn_backend() -> Any:
        from moto.stepfunctions.models import stepfunctions_backends

        return stepfunctions_backends[ACCOUNT][REGION]

    # --- ECR --------------------------------------------------------------------------------------------------

    def create_repository(self) -> str:
        return str(self.ecr.create_repository(repositoryName=REPOSITORY)["repository"]["repositoryUri"])

    def push_image(self, tag: str) -> str:
        """Push an image with ``tag``; returns its digest."""
        response = self.ecr.put_image(repositoryName=REPOSITORY, imageManifest=image_manifest(tag), imageTag=tag)
        return str(response["image"]["imageId"]["imageDigest"])

    def set_scan_result(self, digest: str, status: str, counts: dict[str, int] | None = None) -> None:
        """Make DescribeImageScanFindings answer ``status`` / ``counts`` for the image (moto's documented seam).

        moto answers ScanNotFoundException until StartImageScan ran, then a static HIGH=1 result unless a custom
        result was queued in ``ecr_backend.scan_finding_results`` (what moto's /moto-api/static/ecr endpoint does).
        """
        self.ecr.start_image_scan(repositoryName=REPOSITORY, imageId={"imageDigest": digest})
        result: dict[str, Any] = {
            "registryId": ACCOUNT,
            "repositoryName": REPOSITORY,
            "imageId": {"imageDigest": digest},
            "imageScanStatus": {"status": status, "description": f"moto: scan {status}"},
        }
        if counts is not None:
            result["imageScanFindings"] = {"findingSeverityCounts": counts, "findings": []}
        self.ecr_backend().scan_finding_results.append(result)

    # --- ECS: cluster, task definitions, tasks ---------------------------------------------------------------

    def create_cluster(self) -> None:
        self.ecs.create_cluster(clusterName=CLUSTER)

    def migration_containers(self, image: str, sidecar: bool = True) -> list[dict[str, Any]]:
        containers: list[dict[str, Any]] = [
            {
                "name": CONTAINER,
                "image": image,
                "memory": 512,
                "essential": True,
                "command": ["python", "-m", "dbmigrate", "migrate"],
                "environment": [{"name": "DB_SECRET_ARN", "value": "arn:aws:secretsmanager:us-east-1:1:secret:db"}],
                "logConfiguration": {
                    "logDriver": "awslogs",
                    "options": {
                        "awslogs-group": LOG_GROUP,
                        "awslogs-region": REGION,
                        "awslogs-stream-prefix": LOG_PREFIX,
                    },
                },
            }
        ]
        if sidecar:
            containers.append(
                {"name": SIDECAR, "image": "public.ecr.aws/aws-observability/aws-for-fluent-bit:2.34.0", "memory": 64}
            )
        return containers

    def register_migration_task(self, image: str = OLD_IMAGE, network_mode: str = "awsvpc", **extra: Any) -> str:
        """Register a revision of the migration family (Fargate/awsvpc unless told otherwise); returns its ARN."""
        params: dict[str, Any] = {
            "family": FAMILY,
            "containerDefinitions": self.migration_containers(image),
            "networkMode": network_mode,
            "cpu": "256",
            "memory": "1024",
            "taskRoleArn": f"arn:aws:iam::{ACCOUNT}:role/deployflow-migrate-task",
            "executionRoleArn": f"arn:aws:iam::{ACCOUNT}:role/deployflow-migrate-execution",
            "tags": [{"key": "team", "value": "alerting"}],
        }
        if network_mode == "awsvpc":
            params["requiresCompatibilities"] = ["FARGATE"]
        params.update(extra)
        return str(self.ecs.register_task_definition(**params)["taskDefinition"]["taskDefinitionArn"])

    def revisions(self) -> dict[int, Any]:
        """Every revision of the migration family in moto (ACTIVE and INACTIVE), by revision number."""
        return dict(self.ecs_backend().task_definitions.get(FAMILY, {}))

    def tasks(self) -> list[Any]:
        """moto's task objects in the cluster."""
        return list(self.ecs_backend().tasks.get(CLUSTER, {}).values())

    def backend_task(self, task_arn: str) -> Any:
        return self.ecs_backend().tasks[CLUSTER][task_arn]

    def run_migration_task(self, task_definition_arn: str, started_by: str = "deployflow") -> str:
        response = self.ecs.run_task(
            cluster=CLUSTER,
            taskDefinition=task_definition_arn,
            launchType="FARGATE",
            startedBy=started_by,
            networkConfiguration={
                "awsvpcConfiguration": {"subnets": [self.subnet_id], "securityGroups": [self.security_group_id]}
            },
        )
        return str(response["tasks"][0]["taskArn"])

    def stop_container(
        self,
        task_arn: str,
        exit_code: int | None,
        *,
        stop_code: str = "EssentialContainerExited",
        stopped_reason: str = "Essential container in task exited",
        container_reason: str | None = None,
        started_at: datetime | None = None,
        stopped_at: datetime | None = None,
    ) -> None:
        """Stop a task the way ECS reports a finished one.

        moto 5.2.5 walks a task RUNNING -> DEACTIVATING -> STOPPING -> DEPROVISIONING -> STOPPED, one state per
        DescribeTasks, with its container forever ``lastStatus`` PENDING and ``exitCode`` 0, and never sets
        ``stopCode``, ``startedAt`` or ``stoppedAt``: those are set here on the backend object (moto's response
        serializer reads snake_case attributes such as ``stop_code`` for ``stopCode``).
        """
        task = self.backend_task(task_arn)
        task.status = "STOPPED"
        task.desired_status = "STOPPED"
        task.stop_code = stop_code
        task.stopped_reason = stopped_reason
        if started_at is not None:
            task.started_at = started_at
        if stopped_at is not None:
            task.stopped_at = stopped_at
        for container in task.containers:
            if container.name == CONTAINER:
                container.exitCode = exit_code
                container.last_status = "STOPPED"
                container.reason = container_reason

    def add_container(self, task_arn: str, name: str, exit_code: int | None, first: bool = False) -> None:
        """moto puts only the first container definition in a task; add another (e.g. a sidecar) to the backend."""
        task = self.backend_task(task_arn)
        container = copy.copy(task.containers[0])
        container.name = name
        container.exitCode = exit_code
        container.last_status = "STOPPED"
        if first:
            task.containers.insert(0, container)
        else:
            task.containers.append(container)

    def write_log(self, stream: str, lines: list[str]) -> None:
        existing = self.logs.describe_log_groups(logGroupNamePrefix=LOG_GROUP)["logGroups"]
        if not any(group["logGroupName"] == LOG_GROUP for group in existing):
            self.logs.create_log_group(logGroupName=LOG_GROUP)
        self.logs.create_log_stream(logGroupName=LOG_GROUP, logStreamName=stream)
        # Stamped now: CloudWatch (and moto) drop events more than 14 days old without an error.
        now_ms = int(datetime.now(UTC).timestamp() * 1000)
        response = self.logs.put_log_events(
            logGroupName=LOG_GROUP,
            logStreamName=stream,
            logEvents=[{"timestamp": now_ms + i, "message": line} for i, line in enumerate(lines)],
        )
        assert "rejectedLogEventsInfo" not in response, f"{stream}: CloudWatch Logs rejected {response}"

    # --- ECS: services ----------------------------------------------------------------------------------------

    def register_service_task(self, name: str) -> str:
        response = self.ecs.register_task_definition(
            family=name, containerDefinitions=[{"name": name, "image": f"{REGISTRY}/{name}:1.0.0", "memory": 256}]
        )
        return str(response["taskDefinition"]["taskDefinitionArn"])

    def create_service(self, name: str, desired_count: int = 2, **extra: Any) -> None:
        """A service; moto's first deployment is COMPLETED for desiredCount 0 and IN_PROGRESS otherwise."""
        self.ecs.create_service(
            cluster=CLUSTER,
            serviceName=name,
            taskDefinition=self.register_service_task(name),
            desiredCount=desired_count,
            launchType="EC2",
            **extra,
        )

    def backend_service(self, name: str) -> Any:
        return self.ecs_backend().services[f"{CLUSTER}:{name}"]

    def deployments(self, name: str) -> list[dict[str, Any]]:
        """moto's deployment dicts of a service (mutable: the tests edit them to play ECS's part)."""
        deployments: list[dict[str, Any]] = self.backend_service(name).deployments
        return deployments

    def primary_deployment_id(self, name: str) -> str:
        primary = self.ecs.describe_services(cluster=CLUSTER, services=[name])["services"][0]["deployments"][0]
        return str(primary["id"])

    def set_rollout(self, name: str, deployment_id: str, state: str | None, reason: str | None = None) -> None:
        """Set a deployment's rolloutState: moto keeps the one it set at CreateService, ForceNewDeployment or not."""
        for deployment in self.deployments(name):
            if deployment["id"] == deployment_id:
                if state is None:
                    deployment.pop("rolloutState", None)
                else:
                    deployment["rolloutState"] = state
                deployment["rolloutStateReason"] = reason
                return
        raise AssertionError(f"no deployment {deployment_id} in service {name}")

    def roll_back(self, name: str, failed_deployment_id: str) -> str:
        """What the deployment circuit breaker does: the failed deployment turns ACTIVE, a rollback becomes PRIMARY."""
        deployments = self.deployments(name)
        failed = next(d for d in deployments if d["id"] == failed_deployment_id)
        failed["status"] = "ACTIVE"
        failed["rolloutState"] = "FAILED"
        failed["rolloutStateReason"] = "ECS deployment circuit breaker: tasks failed to start."
        rollback = dict(failed, id="ecs-svc/9999999999999999999", status="PRIMARY", rolloutState="IN_PROGRESS")
        rollback["rolloutStateReason"] = "ECS deployment circuit breaker: rolling back to the previous deployment."
        deployments.insert(0, rollback)
        return str(rollback["id"])

    def add_service_event(self, name: str, message: str, created_at: datetime) -> None:
        """moto records no service events; ECS writes them newest first."""
        self.backend_service(name).events.insert(
            0, {"id": f"event-{len(self.backend_service(name).events)}", "createdAt": created_at, "message": message}
        )

    def stop_service_task(self, name: str, deployment_id: str, reason: str, exit_code: int) -> str:
        """A stopped task of a service deployment: ECS sets ``startedBy`` to the deployment id."""
        task_definition = self.backend_service(name).task_definition
        arn = str(
            self.ecs.run_task(
                cluster=CLUSTER,
                taskDefinition=task_definition,
                launchType="FARGATE",
                startedBy=deployment_id,
                group=f"service:{name}",
            )["tasks"][0]["taskArn"]
        )
        self.ecs.stop_task(cluster=CLUSTER, task=arn, reason=reason)
        self.stop_container_named(arn, name, exit_code)
        return arn

    def stop_container_named(self, task_arn: str, container_name: str, exit_code: int) -> None:
        task = self.backend_task(task_arn)
        task.stop_code = "TaskFailedToStart" if exit_code == 0 else "EssentialContainerExited"
        for container in task.containers:
            if container.name == container_name:
                container.exitCode = exit_code
                container.reason = None

    # --- the one-release lock ---------------------------------------------------------------------------------

    def create_lock_table(self) -> None:
        """The lock table with the key schema and billing mode template.yaml gives ReleaseLockTable."""
        from tests.static import documents

        properties = documents.resources("AWS::DynamoDB::Table")["ReleaseLockTable"]["Properties"]
        self.dynamodb.create_table(
            TableName=LOCK_TABLE,
            KeySchema=properties["KeySchema"],
            AttributeDefinitions=properties["AttributeDefinitions"],
            BillingMode=properties["BillingMode"],
        )

    def lock_items(self) -> dict[str, dict[str, Any]]:
        """Every item of the lock table by lockId (the lock and its history), read past the code under test."""
        items = self.dynamodb.scan(TableName=LOCK_TABLE, ConsistentRead=True)["Items"]
        return {str(item["lockId"]["S"]): item for item in items}

    # --- Step Functions ---------------------------------------------------------------------------------------

    def create_state_machine(self) -> str:
        definition = {
            "StartAt": "Validate release request",
            "States": {"Validate release request": {"Type": "Pass", "End": True}},
        }
        return str(
            self.sfn.create_state_machine(
                name=STATE_MACHINE,
                definition=json.dumps(definition),
                roleArn=f"arn:aws:iam::{ACCOUNT}:role/deployflow-states",
            )["stateMachineArn"]
        )

    def start_execution(self, name: str, started: datetime | None = None) -> dict[str, str]:
        """Start an execution (moto keeps it RUNNING); returns the ExecutionContext the first state receives."""
        arn = str(self.sfn.start_execution(stateMachineArn=STATE_MACHINE_ARN, name=name, input="{}")["executionArn"])
        execution = self.backend_execution(arn)
        if started is not None:
            # moto keeps naive UTC datetimes and sorts executions by them: stay naive.
            execution.start_date = started.astimezone(UTC).replace(tzinfo=None) if started.tzinfo else started
        return {
            "id": arn,
            "name": name,
            "startTime": to_iso(execution.start_date),
            "stateMachineArn": STATE_MACHINE_ARN,
        }

    def backend_execution(self, arn: str) -> Any:
        machine = self.sfn_backend().describe_state_machine(STATE_MACHINE_ARN)
        return next(e for e in machine.executions if e.execution_arn == arn)
