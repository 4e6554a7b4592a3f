"""Canary: moto's DynamoDB evaluates the one-release lock's conditions as DynamoDB documents them, its Step Functions
interpreter runs the ASL's conditional deleteItem and names its failure as Step Functions does, and the local
stack's seam makes concurrent conditional writes atomic (deployflow/local/dynamodb_seam.py).
"""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from botocore.exceptions import ClientError
from release_steps import lock

from deployflow.local.aws import LocalAws
from deployflow.local.template import ASL_PATH
from tests.canary.conftest import Execute
from tests.fixtures.executions import execution_history, wait_for_execution

TABLE = "canary-lock"
MINE = "arn:aws:states:us-east-1:123456789012:execution:m:mine"
OTHER = "arn:aws:states:us-east-1:123456789012:execution:m:other"


def _table(aws: LocalAws) -> Any:
    dynamodb = aws.client("dynamodb")
    dynamodb.create_table(
        TableName=TABLE,
        KeySchema=[{"AttributeName": "lockId", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "lockId", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    return dynamodb


def _holder(arn: str, acquired: str = "2026-12-02T01:00:00.000Z") -> lock.LockHolder:
    return lock.LockHolder(arn, arn.rsplit(":", 1)[1], "t1", False, "2026-12-02T00:59:59.000Z", acquired)


def test_given_the_lock_condition_when_moto_evaluates_it_then_free_or_same_holder_pass_and_another_fails_with_old_item(
    any_local_aws: LocalAws,
) -> None:
    dynamodb = _table(any_local_aws)

    assert lock.acquire(dynamodb, TABLE, _holder(MINE)) is None, "attribute_not_exists: a free lock is taken"
    assert lock.acquire(dynamodb, TABLE, _holder(MINE, acquired="2026-12-02T02:00:00.000Z")) is None, "same holder"
    item = dynamodb.get_item(TableName=TABLE, Key=lock.KEY, ConsistentRead=True)["Item"]
    assert item["acquiredAt"] == {"S": "2026-12-02T01:00:00.000Z"}, "if_not_exists keeps the first time"
    assert item["acquisitions"] == {"N": "2"}, "ADD counts"

    with pytest.raises(ClientError) as refused:
        dynamodb.update_item(
            TableName=TABLE,
            Key=lock.KEY,
            UpdateExpression="SET executionArn = :arn",
            ConditionExpression=lock.ACQUIRE_CONDITION,
            ExpressionAttributeValues={":arn": {"S": OTHER}},
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
        )
    assert refused.value.response["Error"]["Code"] == "ConditionalCheckFailedException"
    old: Any = dict(refused.value.response)["Item"]
    assert old["executionArn"] == {"S": MINE}, "ALL_OLD returns the holder's item"
    assert lock.acquire(dynamodb, TABLE, _holder(OTHER)) == lock.LockHolder.from_item(item)


def test_given_a_held_lock_when_deleted_conditionally_then_only_its_holder_releases_it_and_a_transaction_says_why(
    any_local_aws: LocalAws,
) -> None:
    dynamodb = _table(any_local_aws)
    lock.acquire(dynamodb, TABLE, _holder(MINE))

    assert lock.release(dynamodb, TABLE, OTHER) is False
    assert lock.release(dynamodb, TABLE, OTHER, {"at": "2026-12-02T03:00:00.000Z", "event": "abandoned"}) is False
    assert lock.read(dynamodb, TABLE) is not None, "another execution's release left the lock in place"
    assert [i["lockId"]["S"] for i in dynamodb.scan(TableName=TABLE)["Items"]] == ["release"], "no history written"

    history = {"at": "2026-12-02T03:00:00.000Z", "event": "abandoned", "by": "arn:aws:iam::123456789012:user/op"}
    assert lock.release(dynamodb, TABLE, MINE, history) is True
    assert lock.read(dynamodb, TABLE) is None
    [record] = dynamodb.scan(TableName=TABLE)["Items"]
    assert record["lockId"]["S"] == f"history#2026-12-02T03:00:00.000Z#{MINE}"
    assert record["by"] == {"S": "arn:aws:iam::123456789012:user/op"}


def test_given_many_writers_at_once_when_the_seam_serializes_moto_then_exactly_one_takes_the_lock(
    any_local_aws: LocalAws,
) -> None:
    dynamodb = _table(any_local_aws)
    writers = 12
    start = threading.Barrier(writers, timeout=30)
    refused: list[lock.LockHolder] = []
    taken: list[str] = []

    def take(i: int) -> None:
        arn = f"{OTHER}-{i}"
        start.wait()
        other = lock.acquire(dynamodb, TABLE, _holder(arn))
        (taken.append(arn) if other is None else refused.append(other))

    threads = [threading.Thread(target=take, args=(i,)) for i in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert len(taken) == 1, taken
    assert len(refused) == writers - 1
    assert {r.execution_arn for r in refused} == set(taken), "every refused writer was told the one holder"


def test_given_the_asl_s_release_state_when_moto_runs_it_then_a_failed_condition_is_named_and_caught(
    any_local_aws: LocalAws, execute: Execute
) -> None:
    dynamodb = _table(any_local_aws)
    release = json.loads(ASL_PATH.read_text(encoding="utf-8"))["States"]["Release lock"]
    release["Parameters"]["TableName"] = TABLE
    release["Catch"][0]["Next"] = "Not held"
    release["Next"] = "Released"
    definition = {
        "StartAt": "Release lock",
        "States": {
            "Release lock": release,
            "Not held": {"Type": "Pass", "End": True},
            "Released": {"Type": "Pass", "End": True},
        },
    }
    lock.acquire(dynamodb, TABLE, _holder(MINE))

    refused = execute(definition, {}, name="other")

    assert refused.status == "SUCCEEDED", refused.explain()
    [failed] = refused.of_type("TaskFailed")
    assert failed["taskFailedEventDetails"]["error"] == "DynamoDB.ConditionalCheckFailedException", refused.explain()
    assert "Not held" in [e["stateEnteredEventDetails"]["name"] for e in refused.of_type("PassStateEntered")]
    assert lock.read(dynamodb, TABLE) is not None, "the other execution's lock stays"

    machine_arn = refused.description["stateMachineArn"]
    dynamodb.update_item(
        TableName=TABLE,
        Key=lock.KEY,
        UpdateExpression="SET executionArn = :arn",
        ExpressionAttributeValues={":arn": {"S": machine_arn.replace(":stateMachine:", ":execution:") + ":holder"}},
    )
    sfn = any_local_aws.client("stepfunctions")
    arn = sfn.start_execution(stateMachineArn=machine_arn, name="holder", input="{}")["executionArn"]
    ended = wait_for_execution(sfn, arn, timeout=60)
    assert ended["status"] == "SUCCEEDED", execution_history(sfn, arn)
    names = [e["stateEnteredEventDetails"]["name"] for e in execution_history(sfn, arn) if "StateEntered" in e["type"]]
    assert names == ["Release lock", "Released"], names
    assert lock.read(dynamodb, TABLE) is None, "the holder's execution released its own lock"
