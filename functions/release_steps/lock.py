"""The one-release lock: one DynamoDB item (the stack's ReleaseLockTable) that names the release holding it.

The first step takes it with a conditional write: free, or already held by this same execution (a Lambda retry, a
crash between the write and the step's end, a redrive of that step take it again). The state machine gives it back
on success and at the end of the failure path (a conditional delete in the ASL); an EventBridge rule gives it back
when an execution is aborted or times out (lock_on_end.py); ``deployflow abandon`` gives it back by hand. An
execution that failed at a step keeps it: a redrive is its recovery, and it runs as the same execution.

Pure (boto3 clients passed in, no Powertools): the handlers and the ``deployflow`` CLI share it, and the CLI's wheel
ships it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

LOCK_ID = "release"
KEY = {"lockId": {"S": LOCK_ID}}
HISTORY_PREFIX = "history#"
# Released by the ASL (deleteItem) and here: whoever releases must name the holder.
HELD_BY = "executionArn = :arn"
ACQUIRE_CONDITION = "attribute_not_exists(lockId) OR executionArn = :arn"
ACQUIRE_ATTEMPTS = 3


@dataclass(frozen=True)
class LockHolder:
    """The release that holds the lock, as its record names it."""

    execution_arn: str
    execution_name: str
    image_tag: str
    dry_run: bool
    execution_start_time: str
    acquired_at: str
    acquisitions: int = 1

    @property
    def region(self) -> str:
        """The region of the holder's execution (its ARN's fourth field)."""
        parts = self.execution_arn.split(":")
        return parts[3] if len(parts) > 3 else ""

    def to_json(self) -> dict[str, Any]:
        """The record as ``deployflow status --output json`` prints it."""
        return {
            "executionArn": self.execution_arn,
            "executionName": self.execution_name,
            "imageTag": self.image_tag,
            "dryRun": self.dry_run,
            "executionStartTime": self.execution_start_time,
            "acquiredAt": self.acquired_at,
            "acquisitions": self.acquisitions,
        }

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> LockHolder:
        """Read a DynamoDB item (attribute-value form) of the lock."""

        def text(name: str) -> str:
            return str(item.get(name, {}).get("S", ""))

        return cls(
            execution_arn=text("executionArn"),
            execution_name=text("executionName"),
            image_tag=text("imageTag"),
            dry_run=bool(item.get("dryRun", {}).get("BOOL", False)),
            execution_start_time=text("executionStartTime"),
            acquired_at=text("acquiredAt"),
            acquisitions=int(item.get("acquisitions", {}).get("N", "1")),
        )


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def acquire(dynamodb: Any, table: str, holder: LockHolder) -> LockHolder | None:
    """Take the lock for ``holder``'s execution (again, if it holds it already: the first acquisition time stays).

    None when taken; the other release's record when it holds the lock. A lock released between the refused write
    and the read of its holder is tried again, a bounded number of times.
    """
    for _ in range(ACQUIRE_ATTEMPTS):
        try:
            dynamodb.update_item(
                TableName=table,
                Key=KEY,
                UpdateExpression=(
                    "SET executionArn = :arn, executionName = :name, imageTag = :tag, dryRun = :dry, "
                    "executionStartTime = :start, acquiredAt = if_not_exists(acquiredAt, :now) ADD acquisitions :one"
                ),
                ConditionExpression=ACQUIRE_CONDITION,
                ExpressionAttributeValues={
                    ":arn": {"S": holder.execution_arn},
                    ":name": {"S": holder.execution_name},
                    ":tag": {"S": holder.image_tag},
                    ":dry": {"BOOL": holder.dry_run},
                    ":start": {"S": holder.execution_start_time},
                    ":now": {"S": holder.acquired_at},
                    ":one": {"N": "1"},
                },
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
            return None
        except ClientError as e:
            if _code(e) != "ConditionalCheckFailedException":
                raise
            # ALL_OLD: DynamoDB returns the item that failed the condition with the error (its ``Item``).
            old: Any = dict(e.response).get("Item")
            item = dict(old) if isinstance(old, dict) else read_item(dynamodb, table)
            if item is not None:
                return LockHolder.from_item(item)
    other = read(dynamodb, table)
    if other is None:  # released and taken back ACQUIRE_ATTEMPTS times in a row: report what is there now
        raise RuntimeError(f"the release lock in {table} changed hands {ACQUIRE_ATTEMPTS} times while being taken")
    return other


def read_item(dynamodb: Any, table: str) -> dict[str, Any] | None:
    """The lock's item (strongly consistent read), None when no release holds it."""
    item = dynamodb.get_item(TableName=table, Key=KEY, ConsistentRead=True).get("Item")
    return dict(item) if item else None


def read(dynamodb: Any, table: str) -> LockHolder | None:
    """The release holding the lock, None when none does."""
    item = read_item(dynamodb, table)
    return LockHolder.from_item(item) if item is not None else None


def release(dynamodb: Any, table: str, execution_arn: str, history: dict[str, str] | None = None) -> bool:
    """Give the lock back if ``execution_arn`` holds it; True if this call released it, False if that execution did
    not hold it (another release's lock is never touched). With ``history``, a history item (who, why, when) is
    written in the same transaction."""
    delete: dict[str, Any] = {
        "TableName": table,
        "Key": KEY,
        "ConditionExpression": HELD_BY,
        "ExpressionAttributeValues": {":arn": {"S": execution_arn}},
    }
    if history is None:
        try:
            dynamodb.delete_item(**delete)
        except ClientError as e:
            if _code(e) == "ConditionalCheckFailedException":
                return False
            raise
        return True
    try:
        dynamodb.transact_write_items(
            TransactItems=[
                {"Delete": delete},
                {"Put": {"TableName": table, "Item": _history_item(execution_arn, history)}},
            ]
        )
    except ClientError as e:
        reasons = [str(r.get("Code", "")) for r in e.response.get("CancellationReasons", [])]
        if _code(e) == "TransactionCanceledException" and "ConditionalCheckFailed" in reasons:
            return False
        raise
    return True


def record_history(dynamodb: Any, table: str, execution_arn: str, history: dict[str, str]) -> None:
    """Write a history item alone (e.g. an abandon whose lock the stop handler had already released)."""
    dynamodb.put_item(TableName=table, Item=_history_item(execution_arn, history))


def _history_item(execution_arn: str, history: dict[str, str]) -> dict[str, Any]:
    # Keyed by time and holder: what happened to which release's lock, in order.
    item: dict[str, Any] = {key: {"S": value} for key, value in history.items()}
    item["lockId"] = {"S": f"{HISTORY_PREFIX}{history['at']}#{execution_arn}"}
    item["executionArn"] = {"S": execution_arn}
    return item


def refusal(holder: LockHolder, status: str) -> str:
    """The one-line refusal of a release while ``holder`` holds the lock: who, and the two ways out."""
    arn = holder.execution_arn
    region = f" --region {holder.region}" if holder.region else ""
    return (
        f"another release holds the release lock: execution {holder.execution_name} ({arn}), image tag "
        f"{holder.image_tag}{' (dry run)' if holder.dry_run else ''}, started {holder.execution_start_time}, "
        f"now {status}. Releases never overlap. Either let it finish (if it failed at a step: fix the cause, then "
        f"redrive it: aws stepfunctions redrive-execution --execution-arn {arn}{region}), or give it up: "
        f'deployflow abandon {arn} --reason "<why>" (stops it if it still runs and releases the lock)'
    )
