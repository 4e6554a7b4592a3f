"""The one-release lock through the real ASL on the local stack: taken by the first step, given back on every path
that ends a release, kept by an execution that failed at a step (its redrive is its recovery)."""

from __future__ import annotations

from release_steps import lock

from deployflow.local.scenarios import execute, overrides, wait_until_running
from deployflow.local.stack import DEFAULT_TAG, STACK_NAME, LocalStack
from tests.cli.conftest import base_environment, run_cli
from tests.fixtures.executions import wait_for_execution
from tests.workflow.support import REFUSED_PATH, describe
from tests.workflow.test_scenarios import assert_failed_with, run_scenario


def test_given_a_release_failed_at_a_step_when_another_starts_then_it_is_refused_naming_it_and_the_lock_stays(
    stack: LocalStack,
) -> None:
    # GIVEN kafka-down: the topic step's retries ran out, the execution FAILED at that step, not through the Catch
    with overrides(stack, function_env={"KAFKA_TIMEOUT_SECONDS": "1"}):
        failed = run_scenario(stack, "kafka-down").outcome
    name = failed.execution_arn.rsplit(":", 1)[-1]
    holder = stack.lock_holder()
    assert holder is not None, "an execution that failed at a step keeps the lock"
    assert holder.execution_arn == failed.execution_arn
    assert holder.image_tag == DEFAULT_TAG

    # WHEN a new release starts THEN it is refused with the holder's name and both ways out
    refused = execute(stack, {"imageTag": DEFAULT_TAG}, None)

    message = assert_failed_with(refused, "DeploymentInProgressError", name, failed.execution_arn)
    assert "now FAILED" in message, message
    assert f"aws stepfunctions redrive-execution --execution-arn {failed.execution_arn}" in message, message
    assert f"deployflow abandon {failed.execution_arn}" in message, message
    assert refused.path == REFUSED_PATH, describe(refused)
    # ... and its own failure path (Release lock after failure) left the holder's lock in place
    after = stack.lock_holder()
    assert after is not None, "the refused release released the holder's lock"
    assert after.execution_arn == failed.execution_arn

    # WHEN the operator gives the failed release up (the real CLI, through the stack's outputs)
    assert stack.aws is not None
    assert stack.aws.endpoint_url is not None
    where = ["--stack-name", STACK_NAME, "--endpoint-url", stack.aws.endpoint_url, "--region", stack.aws.region]
    env = {**base_environment(), **stack.client_environment()}
    abandoned = run_cli(["abandon", failed.execution_arn, "--reason", "broker replaced, by the test", *where], env)

    assert abandoned.returncode == 0, abandoned.explain()
    assert "execution  FAILED: left as it is" in abandoned.stdout, abandoned.explain()
    assert "lock       released" in abandoned.stdout, abandoned.explain()
    assert stack.lock_holder() is None
    # THEN a new release takes the lock and proceeds (the broker is still down: it stops at the topic step again)
    with overrides(stack, function_env={"KAFKA_TIMEOUT_SECONDS": "1"}):
        proceeds = execute(stack, {"imageTag": DEFAULT_TAG}, None)
    assert "Check migration image" in proceeds.path, describe(proceeds)
    assert proceeds.failed_state == "Create Kafka topics", describe(proceeds)
    now_held = stack.lock_holder()
    assert now_held is not None
    assert now_held.execution_arn == proceeds.execution_arn, "the new release holds the lock now"


def test_given_a_running_release_when_it_is_stopped_then_the_rule_s_handler_gives_the_lock_back_and_a_new_one_runs(
    stack: LocalStack,
) -> None:
    sfn = stack.client("stepfunctions")
    with overrides(stack, rollout_seconds=600.0):
        arn = stack.start_execution({"imageTag": DEFAULT_TAG}, name="release-to-stop")
        wait_until_running(sfn, arn, "Check services")
        holder = stack.lock_holder()
        assert holder is not None
        assert holder.execution_arn == arn, "the running release holds the lock"

        # WHEN an operator stops it (the execution becomes ABORTED: none of the workflow's release states runs)
        sfn.stop_execution(executionArn=arn, error="OperatorStopped", cause="test")

        assert wait_for_execution(sfn, arn)["status"] == "ABORTED"
        # THEN Step Functions' status change, handed to the rules as EventBridge would, reaches ReleaseLockOnEndRule,
        # whose function gives the lock back
        deliveries = stack.deliver_status_change(arn)
    assert ("ReleaseLockOnEndRule", "ReleaseLockOnEndFunction", None) in [
        (d.rule, d.function, d.error) for d in deliveries
    ], deliveries
    [mine] = [d for d in deliveries if d.rule == "ReleaseLockOnEndRule"]
    assert mine.response == {"executionArn": arn, "status": "ABORTED", "released": True}
    assert stack.lock_holder() is None
    items = stack.client("dynamodb").scan(TableName=stack.lock_table, ConsistentRead=True)["Items"]
    [history] = [i for i in items if i["lockId"]["S"].startswith(lock.HISTORY_PREFIX)]
    assert history["executionArn"] == {"S": arn}
    assert history["event"] == {"S": "released: the execution ended ABORTED"}

    # ... and the next release takes the lock and gives it back when it succeeds
    after = execute(stack, {"imageTag": DEFAULT_TAG}, None, name="release-after-stop")
    assert after.status == "SUCCEEDED", describe(after)
    assert stack.lock_holder() is None, "a successful release gives the lock back"
