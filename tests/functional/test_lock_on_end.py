"""Release lock on end (ReleaseLockOnEndRule's function): an aborted or timed-out execution gives the lock back, and
only its own."""

from __future__ import annotations

from typing import Any

import pytest
from release_steps import lock, lock_on_end
from release_steps.errors import InvalidInputError

from tests.functional.release_world import LOCK_TABLE, STATE_MACHINE_ARN, ReleaseWorld, load_event

MINE = STATE_MACHINE_ARN.replace(":stateMachine:", ":execution:") + ":release-stopped"
OTHER = STATE_MACHINE_ARN.replace(":stateMachine:", ":execution:") + ":release-holder"


def take(world: ReleaseWorld, arn: str) -> None:
    holder = lock.LockHolder(arn, arn.rsplit(":", 1)[1], "2026-11-23.4", False, "2026-11-23T10:00:00.000Z", "now")
    assert lock.acquire(world.dynamodb, LOCK_TABLE, holder) is None


def status_change(arn: str, status: str) -> dict[str, Any]:
    event = load_event("lock_on_end")
    event["detail"].update(executionArn=arn, name=arn.rsplit(":", 1)[1], status=status)
    return event


@pytest.mark.parametrize("status", ["ABORTED", "TIMED_OUT"])
def test_given_the_ended_execution_holds_the_lock_when_its_status_change_arrives_then_the_lock_is_given_back(
    release_world: ReleaseWorld, release_context: Any, status: str
) -> None:
    take(release_world, MINE)

    result = lock_on_end.lambda_handler(status_change(MINE, status), release_context)

    assert result == {"executionArn": MINE, "status": status, "released": True}
    items = release_world.lock_items()
    assert "release" not in items, "the lock is free"
    [history] = [item for key, item in items.items() if key.startswith(lock.HISTORY_PREFIX)]
    assert history["executionArn"] == {"S": MINE}
    assert history["event"] == {"S": f"released: the execution ended {status}"}
    assert history["by"] == {"S": "ReleaseLockOnEndRule"}


def test_given_another_execution_holds_the_lock_when_an_abort_arrives_then_that_lock_stays(
    release_world: ReleaseWorld, release_context: Any
) -> None:
    take(release_world, OTHER)
    before = release_world.lock_items()

    result = lock_on_end.lambda_handler(status_change(MINE, "ABORTED"), release_context)

    assert result["released"] is False
    assert release_world.lock_items() == before, "neither the holder's lock nor a history item was written"


def test_given_a_status_the_rule_never_sends_when_invoked_then_invalid_input_and_nothing_changes(
    release_world: ReleaseWorld, release_context: Any
) -> None:
    take(release_world, MINE)
    before = release_world.lock_items()

    with pytest.raises(InvalidInputError, match="status"):
        lock_on_end.lambda_handler(status_change(MINE, "FAILED"), release_context)

    assert release_world.lock_items() == before, "a FAILED execution keeps its lock (its redrive is its recovery)"
