"""Benchmark: the local stack's Lambda runtime (aws-lambda-rie + awslambdaric). Prints figures; asserts nothing.

    .venv/bin/python benchmarks/lambda_runtime.py [--warm 3]

Figures: the local stack's start-up (PostgreSQL, Kafka, moto, the CloudFormation deploy; runtime processes start
lazily), each function's cold invocation (its runtime process started and initialised) and warm invocations
(median), driven by its events/ file through the Lambda Invoke API as Step Functions calls it; a happy release end
to end (Wait/Retry delays scaled by 0.02); the stack's stop.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from cfnlint.decode import cfn_yaml
from release_steps import lock

from deployflow.local.stack import DEFAULT_TAG, LocalStack, StackOptions
from deployflow.local.template import REPO_ROOT, TEMPLATE_PATH
from deployflow.progress import ExecutionOutcome, follow


def _event(logical_id: str) -> bytes:
    """The function's events/ file, named after its Handler's module (release_steps.<module>.lambda_handler)."""
    handler = str(cfn_yaml.load(str(TEMPLATE_PATH))["Resources"][logical_id]["Properties"]["Handler"])
    path = Path(REPO_ROOT / "events" / f"{handler.split('.')[1]}.json")
    return path.read_bytes() if path.exists() else b"{}"


def _ended(outcome: ExecutionOutcome) -> str:
    return outcome.status if outcome.status == "SUCCEEDED" else f"{outcome.status} ({outcome.error})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--warm", type=int, default=3, help="warm invocations per function (median printed)")
    args = parser.parse_args()

    started = time.perf_counter()
    stack = LocalStack(StackOptions(time_scale=0.02))
    stack.start()
    try:
        print(f"local stack start-up: {time.perf_counter() - started:.2f} s (incl. the CloudFormation deploy)")
        print(stack.runtime_banner())
        lambda_client = stack.client("lambda")
        print(f"\n{'function':<26} {'cold s':>8} {'warm s (median)':>16}  reply")
        for logical_id, arn in stack.function_arns.items():
            event = _event(logical_id)
            t0 = time.perf_counter()
            response = lambda_client.invoke(FunctionName=arn, Payload=event)
            cold = time.perf_counter() - t0
            reply = "ok"
            if response.get("FunctionError"):  # the events/ files name example resources: an error still times init
                error = json.loads(response["Payload"].read() or b"{}")
                reply = f"error {error.get('errorType', response['FunctionError'])}"
            warm: list[float] = []
            for _ in range(args.warm):
                t0 = time.perf_counter()
                lambda_client.invoke(FunctionName=arn, Payload=event)
                warm.append(time.perf_counter() - t0)
            print(f"{logical_id:<26} {cold:>8.2f} {statistics.median(warm):>16.3f}  {reply}")

        holder = stack.lock_holder()
        if holder is not None:  # events/prepare.json took the one-release lock for its example execution
            lock.release(stack.client("dynamodb"), stack.lock_table, holder.execution_arn)
        if stack.aws is not None and stack.aws.lambdas.pool is not None:
            stack.aws.lambdas.pool.reset()  # the release starts with cold runtimes
        t0 = time.perf_counter()
        arn = stack.start_execution({"imageTag": DEFAULT_TAG})
        outcome = follow(stack.client("stepfunctions"), arn, None, poll_seconds=0.05, timeout_seconds=900)
        print(
            f"\nhappy release (cold runtimes, time scale 0.02): {_ended(outcome)} in {time.perf_counter() - t0:.2f} s"
        )
        t0 = time.perf_counter()
        arn = stack.start_execution({"imageTag": DEFAULT_TAG})
        outcome = follow(stack.client("stepfunctions"), arn, None, poll_seconds=0.05, timeout_seconds=900)
        print(f"happy release again (warm runtimes): {_ended(outcome)} in {time.perf_counter() - t0:.2f} s")
    finally:
        t0 = time.perf_counter()
        stack.stop()
        print(f"local stack stop: {time.perf_counter() - t0:.2f} s")


if __name__ == "__main__":
    main()
