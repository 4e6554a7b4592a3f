"""``deployflow status`` and ``deployflow abandon`` as real subprocesses against the local stack (the template
deployed through CloudFormation, the real ASL, the lock's DynamoDB table found through the stack's outputs)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from release_steps import lock

from deployflow.local.aws import REGION
from deployflow.local.stack import DEFAULT_TAG, STACK_NAME, LocalStack
from tests.cli.conftest import CliResult, run_cli, settle
from tests.cli.test_cli_local_stack import held_rollouts, wait_for_state
from tests.fixtures.executions import wait_for_execution


@pytest.fixture
def where(cli_stack: LocalStack) -> list[str]:
    assert cli_stack.aws is not None
    assert cli_stack.aws.endpoint_url is not None
    return ["--stack-name", STACK_NAME, "--endpoint-url", cli_stack.aws.endpoint_url, "--region", REGION]


@pytest.fixture(autouse=True)
def free_lock_between_tests(cli_stack: LocalStack) -> Any:
    """Each test starts and ends with no execution running and the lock free."""
    assert settle(cli_stack) == []
    assert cli_stack.lock_holder() is None, "an earlier test left the lock held"
    yield
    assert settle(cli_stack) == [], "the test left executions running"


def history(stack: LocalStack) -> list[dict[str, Any]]:
    items = stack.client("dynamodb").scan(TableName=stack.lock_table, ConsistentRead=True)["Items"]
    return sorted(
        (i for i in items if i["lockId"]["S"].startswith(lock.HISTORY_PREFIX)), key=lambda i: i["lockId"]["S"]
    )


def test_given_no_release_when_status_then_it_says_the_lock_is_free_in_text_and_json(
    cli_stack: LocalStack, cli_env: dict[str, str], where: list[str]
) -> None:
    text = run_cli(["status", *where], cli_env)
    document = run_cli(["status", *where, "--output", "json"], cli_env)

    assert text.returncode == 0, text.explain()
    assert text.stdout == f"release lock ({cli_stack.lock_table}): free, no release holds it\n", text.explain()
    assert document.returncode == 0, document.explain()
    assert json.loads(document.stdout) == {"lockTable": cli_stack.lock_table, "held": False, "holder": None}


def test_given_a_running_release_when_abandoned_then_it_is_stopped_its_lock_released_why_recorded_and_a_new_one_runs(
    cli_stack: LocalStack, cli_env: dict[str, str], where: list[str]
) -> None:
    sfn = cli_stack.client("stepfunctions")
    with held_rollouts(cli_stack):
        arn = cli_stack.start_execution({"imageTag": DEFAULT_TAG}, name="release-to-abandon")
        wait_for_state(cli_stack, arn, "Check services")

        status = run_cli(["status", *where], cli_env)
        status_json = run_cli(["status", *where, "--output", "json"], cli_env)

        assert status.returncode == 0, status.explain()
        print(status.stdout)  # the operator's view, in the test log
        lines = status.stdout.splitlines()
        assert lines[0] == f"release lock ({cli_stack.lock_table}): held by release-to-abandon", status.explain()
        assert f"execution  {arn}" in lines
        assert "status     RUNNING" in lines
        assert f"image tag  {DEFAULT_TAG}" in lines
        started = sfn.describe_execution(executionArn=arn)["startDate"]
        assert any(line.startswith(f"started    {started:%Y-%m-%dT%H:%M:%S}") for line in lines), status.explain()
        assert any(line.startswith(f"abandon    deployflow abandon {arn} --reason") for line in lines)
        holder = json.loads(status_json.stdout)["holder"]
        assert (holder["executionArn"], holder["executionStatus"], holder["imageTag"]) == (arn, "RUNNING", DEFAULT_TAG)

        abandoned = run_cli(["abandon", arn, "--reason", "image withdrawn, by the test", *where], cli_env)

    assert abandoned.returncode == 0, abandoned.explain()
    print(abandoned.stdout)
    assert abandoned.stdout.startswith(f"abandoned release-to-abandon ({arn}), image tag {DEFAULT_TAG}\n")
    assert "execution  was RUNNING: stopped" in abandoned.stdout, abandoned.explain()
    assert "lock       released" in abandoned.stdout or "lock       already given back" in abandoned.stdout
    assert wait_for_execution(sfn, arn)["status"] == "ABORTED"
    assert cli_stack.lock_holder() is None
    [record] = [h for h in history(cli_stack) if h["event"]["S"] == "abandoned"]
    assert record["executionArn"] == {"S": arn}
    assert record["reason"] == {"S": "image withdrawn, by the test"}
    assert record["by"]["S"].startswith("arn:aws:"), "who: the caller's identity (sts:GetCallerIdentity)"
    assert record["executionStatus"] == {"S": "RUNNING"}

    again = run_cli(["start", "--image-tag", DEFAULT_TAG, "--follow", *where, "--poll", "0.2"], cli_env)
    assert again.returncode == 0, again.explain()
    assert cli_stack.lock_holder() is None


def test_given_an_execution_that_does_not_hold_the_lock_when_abandoned_then_exit_1_and_nothing_changes(
    cli_stack: LocalStack, cli_env: dict[str, str], where: list[str]
) -> None:
    finished = cli_stack.start_execution({"imageTag": DEFAULT_TAG}, name="release-finished")
    assert wait_for_execution(cli_stack.client("stepfunctions"), finished)["status"] == "SUCCEEDED"
    before = history(cli_stack)

    result = run_cli(["abandon", finished, "--reason", "mistake", *where], cli_env)

    assert result.returncode == 1, result.explain()
    assert f"{finished} does not hold the release lock: nothing changed" in result.stderr, result.explain()
    assert "free, no release holds it" in result.stdout
    assert history(cli_stack) == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["abandon", "release-x", "--reason", "why"], "is not an execution ARN"),
        (["abandon", "arn:aws:states:us-east-1:123456789012:execution:m:x", "--reason", "  "], "--reason must say why"),
        (["abandon", "arn:aws:states:us-east-1:123456789012:execution:m:x", "--reason", "x" * 501], "at most 500"),
    ],
)
def test_given_bad_abandon_usage_then_exit_2_naming_it_and_nothing_changes(
    cli_stack: LocalStack, cli_env: dict[str, str], where: list[str], args: list[str], message: str
) -> None:
    result: CliResult = run_cli([*args, *where], cli_env)

    assert result.returncode == 2, result.explain()
    assert message in result.stderr, result.explain()
    assert "nothing changed" in result.stderr
    assert "Traceback" not in result.stderr


def test_given_no_stack_when_status_then_exit_2_naming_the_option(cli_env: dict[str, str]) -> None:
    env = {k: v for k, v in cli_env.items() if k != "DEPLOYFLOW_STACK_NAME"}

    result = run_cli(["status", "--region", REGION], env)

    assert result.returncode == 2, result.explain()
    assert "give --stack-name (or set DEPLOYFLOW_STACK_NAME)" in result.stderr, result.explain()
