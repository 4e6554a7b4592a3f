"""Benchmark: the happy path on the local stack, end to end. Prints figures; asserts nothing.

    .venv/bin/python benchmarks/workflow.py [--time-scale 1.0] [--runs 1]

Figures: wall time of the local stack's start-up, of the whole execution and of each state (visits, total);
state transitions; Lambda invocations; and the time from the migration task stopping (ECS stoppedAt) to the
workflow noticing it (the end of the Check migration task that saw it stopped) — bounded by the poll interval
(MigrationPollSeconds x time scale).
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import datetime

from deployflow.local.stack import DEFAULT_TAG, LocalStack, StackOptions
from deployflow.progress import ExecutionOutcome, follow
from deployflow.render import timings_table


def _notice_delay(stack: LocalStack, outcome: ExecutionOutcome) -> float | None:
    record = outcome.output or {}
    task_arn = (record.get("migration") or {}).get("taskArn")
    if not task_arn:
        return None
    task = stack.client("ecs").describe_tasks(cluster="alerting-local", tasks=[task_arn])["tasks"][0]
    stopped_at: datetime | None = task.get("stoppedAt")
    noticed = [v for v in outcome.visits if v.name == "Check migration task" and v.exited_at is not None]
    if stopped_at is None or not noticed:
        return None
    last = noticed[-1].exited_at
    assert last is not None
    return (last - stopped_at).total_seconds()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--time-scale", type=float, default=1.0, help="factor on Wait/Retry delays (1.0 = as deployed)")
    parser.add_argument("--runs", type=int, default=1, help="executions on the same stack (the first applies V0001)")
    args = parser.parse_args()

    started = time.perf_counter()
    with LocalStack(StackOptions(time_scale=args.time_scale)) as stack:
        startup = time.perf_counter() - started
        print(f"local stack start-up: {startup:.2f} s (PostgreSQL, Kafka, moto, provisioning)")
        print(f"time scale: {args.time_scale} (MigrationPollSeconds 10 -> {10 * args.time_scale:.2f} s)")
        walls: list[float] = []
        for run in range(1, args.runs + 1):
            t0 = time.perf_counter()
            arn = stack.start_execution({"imageTag": DEFAULT_TAG})
            outcome = follow(stack.client("stepfunctions"), arn, None, poll_seconds=0.05, timeout_seconds=900)
            wall = time.perf_counter() - t0
            walls.append(wall)
            delay = _notice_delay(stack, outcome)
            print(f"\nrun {run}: {outcome.status} in {wall:.2f} s wall")
            print(f"  state transitions: {outcome.transitions}")
            print(f"  Lambda invocations: {outcome.lambda_invocations}")
            print(
                f"  migration task stopped -> workflow noticed: {delay:.2f} s"
                if delay is not None
                else "  migration task stopped -> workflow noticed: n/a"
            )
            print(f"  {'state':<28} {'visits':>6} {'seconds':>9}")
            for name, visits, seconds in timings_table(outcome):
                print(f"  {name:<28} {visits:>6} {seconds:>9.3f}")
        if len(walls) > 1:
            print(
                f"\nwall time over {len(walls)} runs: median {statistics.median(walls):.2f} s, "
                f"min {min(walls):.2f} s, max {max(walls):.2f} s"
            )


if __name__ == "__main__":
    main()
