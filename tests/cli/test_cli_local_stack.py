"""The deployflow CLI as an operator runs it: a real subprocess talking HTTP to the local stack's moto server.

The local stack runs the real state machine; its Lambda handlers run inside this process (in the moto server's
request thread), its migration task runs the real runner against a real PostgreSQL, topics go to a real Kafka.
The CLI process only sees the AWS APIs, as it would against AWS.
"""

from __future__ import annotations

import json
import re
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from botocore.exceptions import ClientError

from deployflow.local.aws import REGION
from deployflow.local.stack import DEFAULT_TAG, LocalStack
from tests.cli.conftest import CliResult, background_cli, list_executions, run_cli, settle
from tests.fixtures.executions import wait_for_execution

MAIN_STATES = (
    "Validate release request",
    "Check migration image",
    "Run migration task",
    "Check migration task",
    "Verify schema",
    "Create Kafka topics",
    "Restart services",
    "Check services",
    "Build deployment record",
    "Release lock",
    "Notify success",
)
MISSING_TAG = "2026-11-25.404"
STARTED_LINE = re.compile(r"^started (arn:aws:states:\S+)$", re.MULTILINE)
DEADLINE_BAR = re.compile(r"✓ Check services .*\[[#.]{20}\]\s+\d+% of the deadline, check \d+")


@pytest.fixture(autouse=True)
def idle_between_tests(cli_stack: LocalStack) -> Iterator[None]:
    """Each test starts with no execution running, and leaves none running (the workflow refuses overlaps)."""
    stopped = settle(cli_stack)
    assert not stopped, f"an earlier test left executions running (stopped now): {stopped}"
    yield
    release_rollouts(cli_stack)
    stopped = settle(cli_stack)
    assert not stopped, f"the test left executions running (stopped now): {stopped}"


@contextmanager
def held_rollouts(stack: LocalStack) -> Iterator[None]:
    """Service deployments stay IN_PROGRESS while the block runs: an execution waits in the Check services loop."""
    assert stack.aws is not None
    stack.aws.ecs.rollout_seconds = 3600.0
    try:
        yield
    finally:
        release_rollouts(stack)


def release_rollouts(stack: LocalStack) -> None:
    """Deployments complete again (on the next check) after the stack's usual rollout time."""
    assert stack.aws is not None
    stack.aws.ecs.rollout_seconds = stack.options.rollout_seconds


def wait_for_state(stack: LocalStack, arn: str, state: str, timeout: float = 60.0) -> None:
    """Block until the execution entered ``state``; fails the test if it ended or did not get there in time."""
    sfn = stack.client("stepfunctions")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        events = sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]
        if any(e.get("stateEnteredEventDetails", {}).get("name") == state for e in events):
            return
        status = sfn.describe_execution(executionArn=arn)["status"]
        if status != "RUNNING":
            pytest.fail(f"execution {arn} ended {status} before entering {state!r}")
        time.sleep(0.05)
    pytest.fail(f"execution {arn} did not enter {state!r} within {timeout}s")


def execution_names(stack: LocalStack) -> list[str]:
    return sorted(e["name"] for e in list_executions(stack))


def record_of(result: CliResult) -> dict[str, Any]:
    try:
        document = json.loads(result.stdout)
    except ValueError:
        pytest.fail(f"stdout is not the deployment record JSON:\n{result.explain()}")
    assert isinstance(document, dict), result.explain()
    return document


def started_arn(result: CliResult) -> str:
    match = STARTED_LINE.search(result.stderr)
    assert match, f"no 'started <arn>' line on stderr:\n{result.explain()}"
    return match.group(1)


# --- start --follow -------------------------------------------------------------------------------------------------


def test_given_a_pushed_image_tag_when_started_with_follow_then_exit_0_the_record_on_stdout_and_progress_on_stderr(
    cli_stack: LocalStack, cli_env: dict[str, str], target: list[str]
) -> None:
    tag = "2026-11-26.1"
    digest = cli_stack.push_image(tag)

    result = run_cli(["start", "--image-tag", tag, "--follow", *target], cli_env)

    assert result.returncode == 0, result.explain()
    record = record_of(result)
    assert record.get("outcome") == "succeeded", result.explain()
    assert record.get("imageTag") == tag, result.explain()
    assert record.get("imageDigest") == digest, result.explain()
    assert record.get("executionArn") == started_arn(result), result.explain()
    assert [s.get("rolloutState") for s in record.get("services", [])] == ["COMPLETED"] * 3, result.explain()
    for state in MAIN_STATES:
        assert f"▶ {state}" in result.stderr, f"no 'entered' line for {state}:\n{result.explain()}"
        assert f"✓ {state}" in result.stderr, f"no 'done' line for {state}:\n{result.explain()}"
    assert "✗" not in result.stderr, result.explain()
    assert DEADLINE_BAR.search(result.stderr), f"no deadline bar on a Check services line:\n{result.explain()}"
    assert "■ execution SUCCEEDED" in result.stderr, result.explain()
    assert f"deployflow release of {tag} succeeded" in result.stderr, f"no summary:\n{result.explain()}"
    assert "{" not in result.stderr.split("■ execution SUCCEEDED")[-1], "the record JSON leaked onto stderr"


def test_given_a_valid_tag_that_was_never_pushed_when_started_with_follow_then_exit_1_naming_step_error_and_tag(
    cli_env: dict[str, str], target: list[str]
) -> None:
    result = run_cli(["start", "--image-tag", MISSING_TAG, "--follow", *target], cli_env)

    assert result.returncode == 1, result.explain()
    assert result.stdout == "", f"a failed execution has no record output:\n{result.explain()}"
    assert "FAILED at Check migration image" in result.stderr, result.explain()
    assert "error: ImageNotFoundError" in result.stderr, result.explain()
    causes = [line for line in result.stderr.splitlines() if line.lower().startswith("cause:")]
    assert len(causes) == 1, f"the cause once, in the summary (Release failed ended it):\n{result.explain()}"
    assert causes[0].startswith("Cause:"), result.explain()
    assert MISSING_TAG in causes[0], f"the cause line does not name the tag:\n{result.explain()}"
    assert re.search(r"✗ Check migration image: ImageNotFoundError: .*" + re.escape(MISSING_TAG), result.stderr)
    assert "✓ Check migration image" not in result.stderr, f"a caught failure drawn as success:\n{result.explain()}"
    assert "▶ Run migration task" not in result.stderr, result.explain()
    assert "■ execution FAILED" in result.stderr, result.explain()


# --- input rejected before anything starts --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "field"),
    [
        (["--image-tag", "bad tag!"], "imageTag"),
        (["--image-tag", ".starts-with-a-dot"], "imageTag"),
        (["--image-tag", DEFAULT_TAG, "--services", ""], "services"),
        (["--image-tag", DEFAULT_TAG, "--services", " , "], "services"),
        (["--image-tag", DEFAULT_TAG, "--idempotency-key", ""], "idempotencyKey"),
        (["--image-tag", DEFAULT_TAG, "--idempotency-key", "k" * 81], "idempotencyKey"),
    ],
    ids=["tag-with-space", "tag-leading-dot", "services-empty", "services-only-commas", "key-empty", "key-81-chars"],
)
def test_given_invalid_input_when_started_then_exit_2_naming_the_field_and_no_execution_is_started(
    cli_stack: LocalStack, cli_env: dict[str, str], target: list[str], options: list[str], field: str
) -> None:
    before = execution_names(cli_stack)

    result = run_cli(["start", *options, "--follow", *target], cli_env)

    assert result.returncode == 2, result.explain()
    assert f"{field}:" in result.stderr, f"the message does not name {field}:\n{result.explain()}"
    assert "nothing was started" in result.stderr, result.explain()
    assert "Traceback" not in result.stderr, result.explain()
    assert execution_names(cli_stack) == before, "an execution was started for invalid input"


# --- idempotency key ----------------------------------------------------------------------------------------------


def test_given_an_idempotency_key_when_the_same_start_is_repeated_after_the_end_then_it_attaches_to_the_first(
    cli_stack: LocalStack, cli_env: dict[str, str], target: list[str]
) -> None:
    command = ["start", "--image-tag", DEFAULT_TAG, "--dry-run", "--idempotency-key", "pipeline-exec-123", *target]
    first = run_cli(command, cli_env)
    assert first.returncode == 0, first.explain()
    arn = first.stdout.strip()
    assert arn == started_arn(first), first.explain()
    assert arn.endswith(":release-pipeline-exec-123"), f"execution name not derived from the key: {arn}"
    assert wait_for_execution(cli_stack.client("stepfunctions"), arn)["status"] == "SUCCEEDED"
    names = execution_names(cli_stack)

    second = run_cli(command, cli_env)

    assert second.returncode == 0, second.explain()
    assert second.stdout.strip() == arn, f"the retry printed another ARN:\n{second.explain()}"
    assert not STARTED_LINE.search(second.stderr), f"the retry says it started one:\n{second.explain()}"
    assert "already exists (SUCCEEDED)" in second.stderr, second.explain()
    assert f"attached to {arn}" in second.stderr, second.explain()
    assert execution_names(cli_stack) == names, "the retried start started a second execution"

    followed = run_cli([*command, "--follow"], cli_env)

    assert followed.returncode == 0, followed.explain()
    assert record_of(followed).get("executionArn") == arn, followed.explain()
    assert record_of(followed).get("outcome") == "dry-run", followed.explain()
    assert execution_names(cli_stack) == names, "the retried start --follow started a second execution"


def test_given_an_idempotency_key_when_reused_with_another_input_then_exit_2_and_nothing_is_started(
    cli_stack: LocalStack, cli_env: dict[str, str], target: list[str]
) -> None:
    key = ["--idempotency-key", "pipeline-exec-456"]
    first = run_cli(["start", "--image-tag", DEFAULT_TAG, "--dry-run", *key, "--follow", *target], cli_env)
    assert first.returncode == 0, first.explain()
    names = execution_names(cli_stack)

    other = run_cli(["start", "--image-tag", "2026-11-26.2", "--dry-run", *key, *target], cli_env)

    assert other.returncode == 2, other.explain()
    assert "idempotency key 'pipeline-exec-456' was already used for another release input" in other.stderr, (
        other.explain()
    )
    assert "nothing was started" in other.stderr, other.explain()
    assert other.stdout == "", other.explain()
    assert execution_names(cli_stack) == names


def test_given_an_idempotency_key_when_the_same_start_is_repeated_while_running_then_it_attaches_and_follows(
    cli_stack: LocalStack, cli_env: dict[str, str], target: list[str]
) -> None:
    command = ["start", "--image-tag", DEFAULT_TAG, "--idempotency-key", "pipeline-exec-789", *target]
    with held_rollouts(cli_stack):
        first = run_cli(command, cli_env)
        assert first.returncode == 0, first.explain()
        arn = first.stdout.strip()
        wait_for_state(cli_stack, arn, "Check services")
        names = execution_names(cli_stack)

        second = run_cli(command, cli_env)

        assert second.returncode == 0, second.explain()
        assert second.stdout.strip() == arn, second.explain()
        assert "already exists (RUNNING)" in second.stderr, second.explain()
        assert f"attached to {arn}" in second.stderr, second.explain()
        assert execution_names(cli_stack) == names, "the retried start started a second execution"

        with background_cli([*command, "--follow"], cli_env) as following:
            following.wait_for_stderr(f"attached to {arn}")
            following.wait_for_stderr("▶ Check services")
            release_rollouts(cli_stack)
            third = following.finish()

    assert third.returncode == 0, third.explain()
    assert record_of(third).get("executionArn") == arn, third.explain()
    assert record_of(third).get("outcome") == "succeeded", third.explain()
    assert execution_names(cli_stack) == names


def test_moto_fact_start_execution_with_a_reused_name_returns_the_running_one_else_execution_already_exists(
    cli_stack: LocalStack,
) -> None:
    """What the CLI's attach path is built on (AWS documents the same): same name + same input + RUNNING returns
    the running execution; another input, or a finished execution, raises ExecutionAlreadyExists."""
    sfn = cli_stack.client("stepfunctions")
    document = json.dumps({"imageTag": DEFAULT_TAG})
    with held_rollouts(cli_stack):
        arn = cli_stack.start_execution(json.loads(document), name="moto-fact-same-name")
        wait_for_state(cli_stack, arn, "Check services")

        again = sfn.start_execution(
            stateMachineArn=cli_stack.state_machine_arn, name="moto-fact-same-name", input=document
        )
        with pytest.raises(ClientError) as other_input:
            sfn.start_execution(
                stateMachineArn=cli_stack.state_machine_arn,
                name="moto-fact-same-name",
                input=json.dumps({"imageTag": "2026-11-26.3"}),
            )

        assert again["executionArn"] == arn
        assert other_input.value.response["Error"]["Code"] == "ExecutionAlreadyExists"
        assert execution_names(cli_stack).count("moto-fact-same-name") == 1
    assert wait_for_execution(sfn, arn)["status"] == "SUCCEEDED"

    with pytest.raises(ClientError) as finished:
        sfn.start_execution(stateMachineArn=cli_stack.state_machine_arn, name="moto-fact-same-name", input=document)

    assert finished.value.response["Error"]["Code"] == "ExecutionAlreadyExists"


# --- watch --------------------------------------------------------------------------------------------------------


def test_given_a_succeeded_execution_when_watched_by_arn_then_exit_0_with_its_record_and_path(
    cli_stack: LocalStack, cli_env: dict[str, str], target: list[str]
) -> None:
    arn = cli_stack.start_execution({"imageTag": DEFAULT_TAG, "dryRun": True})
    assert wait_for_execution(cli_stack.client("stepfunctions"), arn)["status"] == "SUCCEEDED"

    result = run_cli(["watch", arn, *target[2:]], cli_env)  # by ARN: no state machine needed

    assert result.returncode == 0, result.explain()
    assert record_of(result).get("executionArn") == arn, result.explain()
    assert record_of(result).get("outcome") == "dry-run", result.explain()
    assert "▶ Validate release request" in result.stderr, result.explain()
    assert "■ execution SUCCEEDED" in result.stderr, result.explain()
    assert not STARTED_LINE.search(result.stderr), f"watch says it started one:\n{result.explain()}"


def test_given_a_failed_execution_when_watched_by_name_then_exit_1_naming_the_failed_step(
    cli_stack: LocalStack, cli_env: dict[str, str], target: list[str]
) -> None:
    arn = cli_stack.start_execution({"imageTag": MISSING_TAG}, name="watch-by-name-failed")
    assert wait_for_execution(cli_stack.client("stepfunctions"), arn)["status"] == "FAILED"

    result = run_cli(["watch", "watch-by-name-failed", *target], cli_env)

    assert result.returncode == 1, result.explain()
    assert f"execution: {arn}" in result.stderr, result.explain()
    assert "FAILED at Check migration image" in result.stderr, result.explain()
    assert "error: ImageNotFoundError" in result.stderr, result.explain()


@pytest.mark.parametrize(
    ("execution", "with_machine", "code", "message"),
    [
        ("no-such-execution", True, 3, "cannot read execution"),
        # Naming no target is bad usage (2), like a missing option, not an unreachable target (3).
        ("no-such-execution", False, 2, "give --stack-name (or set DEPLOYFLOW_STACK_NAME), --state-machine-arn"),
    ],
    ids=["unknown-name", "name-without-target"],
)
def test_given_an_execution_that_cannot_be_found_when_watched_then_exit_3_with_a_message(
    cli_env: dict[str, str], target: list[str], execution: str, with_machine: bool, code: int, message: str
) -> None:
    options = target if with_machine else target[2:]

    result = run_cli(["watch", execution, *options], cli_env)

    assert result.returncode == code, result.explain()
    assert message in result.stderr, result.explain()
    assert "Traceback" not in result.stderr, result.explain()


def test_given_a_running_execution_when_the_watcher_gets_sigterm_then_it_stops_following_and_the_execution_goes_on(
    cli_stack: LocalStack, cli_env: dict[str, str], target: list[str]
) -> None:
    sfn = cli_stack.client("stepfunctions")
    with held_rollouts(cli_stack):
        arn = cli_stack.start_execution({"imageTag": DEFAULT_TAG})
        wait_for_state(cli_stack, arn, "Check services")
        with background_cli(["watch", arn, *target], cli_env) as watcher:
            watcher.wait_for_stderr("▶ Check services")

            watcher.send(signal.SIGTERM)
            result = watcher.finish()

        assert result.returncode == 130, result.explain()
        assert f"the execution goes on running: deployflow watch {arn}" in result.stderr, result.explain()
        assert sfn.describe_execution(executionArn=arn)["status"] == "RUNNING", "the watcher stopped the release"
    assert wait_for_execution(sfn, arn)["status"] == "SUCCEEDED"


# --- target resolution --------------------------------------------------------------------------------------------


def _create_stack(stack: LocalStack, name: str, outputs: dict[str, str]) -> None:
    template = {
        "Resources": {"Notifications": {"Type": "AWS::SNS::Topic", "Properties": {"TopicName": f"{name}-topic"}}},
        "Outputs": {key: {"Value": value} for key, value in outputs.items()},
    }
    cloudformation = stack.client("cloudformation")
    cloudformation.create_stack(StackName=name, TemplateBody=json.dumps(template))
    status = cloudformation.describe_stacks(StackName=name)["Stacks"][0]["StackStatus"]
    assert status == "CREATE_COMPLETE", f"moto did not create the test stack {name}: {status}"


def test_given_a_stack_with_a_state_machine_output_when_started_by_stack_name_then_it_runs_that_state_machine(
    cli_stack: LocalStack, cli_env: dict[str, str], target: list[str]
) -> None:
    _create_stack(cli_stack, "deployflow-cli-test", {"StateMachineArn": cli_stack.state_machine_arn})
    options = ["--stack-name", "deployflow-cli-test", *target[2:]]

    result = run_cli(["start", "--image-tag", DEFAULT_TAG, "--dry-run", "--follow", *options], cli_env)

    assert result.returncode == 0, result.explain()
    arn = started_arn(result)
    assert arn.startswith(cli_stack.state_machine_arn.replace(":stateMachine:", ":execution:") + ":"), arn
    assert record_of(result).get("outcome") == "dry-run", result.explain()


@pytest.mark.parametrize(
    ("stack_name", "outputs", "message"),
    [
        (
            "no-such-stack",
            None,
            "cannot read stack no-such-stack (ValidationError: Stack with id no-such-stack does not exist)",
        ),
        ("not-a-deployflow-stack", {"Other": "x"}, "stack not-a-deployflow-stack has no StateMachineArn output"),
    ],
    ids=["missing-stack", "stack-without-output"],
)
def test_given_a_stack_that_names_no_state_machine_when_started_then_exit_3_and_nothing_is_started(
    cli_stack: LocalStack,
    cli_env: dict[str, str],
    target: list[str],
    stack_name: str,
    outputs: dict[str, str] | None,
    message: str,
) -> None:
    if outputs is not None:
        _create_stack(cli_stack, stack_name, outputs)
    before = execution_names(cli_stack)

    result = run_cli(["start", "--image-tag", DEFAULT_TAG, "--stack-name", stack_name, *target[2:]], cli_env)

    assert result.returncode == 3, result.explain()
    assert message in result.stderr, result.explain()
    assert "Traceback" not in result.stderr, result.explain()
    assert execution_names(cli_stack) == before


def test_given_a_state_machine_arn_that_does_not_exist_when_started_then_exit_3_without_a_traceback(
    cli_env: dict[str, str], target: list[str]
) -> None:
    missing = f"arn:aws:states:{REGION}:123456789012:stateMachine:no-such-machine"
    options = ["--state-machine-arn", missing, *target[2:]]

    result = run_cli(["start", "--image-tag", DEFAULT_TAG, *options], cli_env)

    assert result.returncode == 3, result.explain()
    assert f"cannot start an execution of {missing}" in result.stderr, result.explain()
    assert "StateMachineDoesNotExist" in result.stderr, result.explain()
    assert "Traceback" not in result.stderr, result.explain()
