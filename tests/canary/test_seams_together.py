"""Canary: the seams composed as the release uses them - a Lambda starts the migration task, a Wait + Choice loop
polls it through another Lambda, whose own clients read ECS and CloudWatch Logs - in both modes."""

from __future__ import annotations

import dataclasses
import sys
from typing import Any

import pytest

from deployflow.local.aws import LocalAws, LocalAwsConfig, create_function, provision_network
from tests.canary.conftest import run_definition
from tests.canary.test_ecs_seam import CLUSTER, LOG_GROUP, register

MIGRATION = """
import os, sys
for n in range(1, 6):
    print(f"applied V{n}", flush=True)
sys.exit(int(os.environ["EXIT_CODE"]))
"""


@pytest.fixture
def local_aws_config(local_aws_config: LocalAwsConfig) -> LocalAwsConfig:
    return dataclasses.replace(local_aws_config, images={"canary-migrations": [sys.executable, "-c", MIGRATION]})


def migration_machine(start_arn: str, check_arn: str) -> dict[str, Any]:
    def invoke(arn: str, nxt: str) -> dict[str, Any]:
        return {
            "Type": "Task",
            "Resource": "arn:aws:states:::lambda:invoke",
            "Parameters": {"FunctionName": arn, "Payload.$": "$"},
            "OutputPath": "$.Payload",
            "Next": nxt,
        }

    return {
        "StartAt": "Run migration task",
        "States": {
            "Run migration task": invoke(start_arn, "Wait"),
            "Wait": {"Type": "Wait", "Seconds": 10, "Next": "Check migration task"},
            "Check migration task": invoke(check_arn, "Stopped?"),
            "Stopped?": {
                "Type": "Choice",
                "Choices": [
                    {
                        "And": [
                            {"Variable": "$.stopped", "BooleanEquals": True},
                            {"Variable": "$.exitCode", "NumericEquals": 0},
                        ],
                        "Next": "Migrated",
                    },
                    {"Variable": "$.stopped", "BooleanEquals": True, "Next": "Migration failed"},
                ],
                "Default": "Wait",
            },
            "Migrated": {"Type": "Succeed"},
            "Migration failed": {"Type": "Fail", "Error": "MigrationFailedError", "Cause": "non-zero exit"},
        },
    }


@pytest.mark.parametrize("exit_code", [0, 4])
def test_given_the_release_shape_when_the_migration_runs_then_its_exit_code_and_log_tail_reach_the_state_machine(
    any_local_aws: LocalAws, exit_code: int
) -> None:
    any_local_aws.client("ecs").create_cluster(clusterName=CLUSTER)
    network = provision_network(any_local_aws)
    task_definition = register(any_local_aws, environment=[{"name": "EXIT_CODE", "value": str(exit_code)}], command=[])
    start = create_function(any_local_aws, "start-task", "tests.canary.handlers.start_task")
    check = create_function(any_local_aws, "check-task", "tests.canary.handlers.check_task")
    execution_input = {
        "cluster": CLUSTER,
        "taskDefinition": task_definition,
        "network": network.awsvpc_configuration(),
        "token": "release-1",
        "logGroup": LOG_GROUP,
        "logPrefix": "migration",
        "container": "migrate",
    }

    run = run_definition(any_local_aws, migration_machine(start, check), execution_input)

    checks = [i.result for i in any_local_aws.lambdas.invocations if i.function_name == "check-task"]
    final = checks[-1]
    assert final["exitCode"] == exit_code, run.explain()
    assert final["stopCode"] == "EssentialContainerExited"
    assert final["logTail"] == ["applied V3", "applied V4", "applied V5"]
    assert run.status == ("SUCCEEDED" if exit_code == 0 else "FAILED"), run.explain()
    assert len(any_local_aws.ecs.runs) == 1
