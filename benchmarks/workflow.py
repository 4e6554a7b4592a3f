"""Benchmark: deployflow against the bash loop it replaces, on the same local stack. Prints figures; asserts nothing.

    .venv/bin/python benchmarks/workflow.py [--runs 5] [--time-scale 1.0]

One local stack (real PostgreSQL, Kafka, moto with the ECS seam: the migration task really runs ``python -m
dbmigrate``, a service rollout takes ``rollout_seconds``), the template's default poll settings. Interleaved, for
``--runs`` rounds: a happy release by deployflow, the same by benchmarks/bash_anchor.sh (AWS CLI), then a release
whose service deployment fails and is rolled back by the circuit breaker, by both. One happy release by each side
comes first, printed and not counted: it starts the functions' runtimes (their cold starts are
benchmarks/cold_start.py's and benchmarks/lambda_runtime.py's figures) and fills the page cache for the CLI.

Figures per release: wall time; overhead = wall - the migration task's own run (ECS startedAt..stoppedAt) - the
simulated rollout; stopped->noticed = from the task's stoppedAt to the end of the check that saw it (deployflow:
the Check migration task state; bash: ``aws ecs wait tasks-stopped`` returning); state transitions (deployflow);
the verdict each one gave. Medians over the rounds (five by default: the bash loop's overhead is bimodal, see
README); the headline figures go to .cache/bench/workflow.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.results import save
from deployflow.local.scenarios import overrides
from deployflow.local.stack import (
    CLUSTER,
    CONTAINER,
    DEFAULT_TAG,
    SERVICES,
    TASK_FAMILY,
    LocalStack,
    StackOptions,
)
from deployflow.progress import ExecutionOutcome, follow

ANCHOR = Path(__file__).resolve().parent / "bash_anchor.sh"
FAILING_SERVICE = "alert-matcher"


@dataclass
class Release:
    """One release by one side: what it took and what it said."""

    side: str
    kind: str
    wall: float
    migration_seconds: float
    noticed_seconds: float
    verdict: str
    transitions: int | None = None

    def overhead(self, rollout_seconds: float) -> float:
        return self.wall - self.migration_seconds - rollout_seconds


def _task_times(stack: LocalStack, task_arn: str) -> tuple[datetime, datetime]:
    task = stack.client("ecs").describe_tasks(cluster=CLUSTER, tasks=[task_arn])["tasks"][0]
    return task["startedAt"], task["stoppedAt"]


def run_deployflow(stack: LocalStack, kind: str) -> Release:
    sfn = stack.client("stepfunctions")
    arn = stack.start_execution({"imageTag": DEFAULT_TAG})
    outcome: ExecutionOutcome = follow(sfn, arn, None, poll_seconds=0.05, timeout_seconds=900)
    description = sfn.describe_execution(executionArn=arn)
    wall = (description["stopDate"] - description["startDate"]).total_seconds()
    task_arn = json.loads(outcome.state_outputs["Run migration task"])["migration"]["taskArn"]
    started, stopped = _task_times(stack, task_arn)
    checks = [v for v in outcome.visits if v.name == "Check migration task" and v.exited_at is not None]
    noticed = checks[-1].exited_at
    assert noticed is not None
    verdict = outcome.status if outcome.error is None else f"{outcome.status} ({outcome.error})"
    return Release(
        side="deployflow",
        kind=kind,
        wall=wall,
        migration_seconds=(stopped - started).total_seconds(),
        noticed_seconds=(noticed - stopped).total_seconds(),
        verdict=verdict,
        transitions=outcome.transitions,
    )


def run_anchor(stack: LocalStack, kind: str) -> Release:
    network = stack.network
    assert network is not None
    env = {
        **os.environ,
        **stack.client_environment(),
        "CLUSTER": CLUSTER,
        "TASK_DEFINITION": TASK_FAMILY,
        "CONTAINER": CONTAINER,
        "SUBNETS": ",".join(network.subnet_ids),
        "SECURITY_GROUPS": ",".join(network.security_group_ids),
        "SERVICES": " ".join(SERVICES),
    }
    started_at = time.time()
    done = subprocess.run(["bash", str(ANCHOR)], env=env, capture_output=True, text=True, timeout=900, check=False)
    wall = time.time() - started_at
    marks = {
        line.split()[1]: float(line.split()[2]) for line in done.stdout.splitlines() if line.startswith("anchor: ")
    }
    task_arn = next(line.split()[1] for line in done.stdout.splitlines() if line.startswith("anchor-task: "))
    if "task-stopped-noticed" not in marks:
        raise RuntimeError(f"bash anchor did not get past its task wait:\n{done.stdout}\n{done.stderr}")
    started, stopped = _task_times(stack, task_arn)
    verdict = "SUCCEEDED (exit 0)" if done.returncode == 0 else f"FAILED (exit {done.returncode})"
    return Release(
        side="bash",
        kind=kind,
        wall=wall,
        migration_seconds=(stopped - started).total_seconds(),
        noticed_seconds=marks["task-stopped-noticed"] - stopped.timestamp(),
        verdict=verdict,
    )


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="interleaved rounds (each: 2 happy + 2 rollback releases)")
    parser.add_argument("--time-scale", type=float, default=1.0, help="factor on Wait/Retry delays (1.0 = as deployed)")
    args = parser.parse_args()
    aws_cli = os.environ.get("AWS_CLI", "aws")
    if shutil.which(aws_cli) is None:
        raise SystemExit(f"benchmarks/workflow.py: the AWS CLI ({aws_cli}) is not found: make .venv-bench/.installed")

    started = time.perf_counter()
    with LocalStack(StackOptions(time_scale=args.time_scale)) as stack:
        assert stack.aws is not None
        rollout = stack.aws.ecs.rollout_seconds
        print(f"local stack start-up: {time.perf_counter() - started:.2f} s (PostgreSQL, Kafka, moto, provisioning)")
        print(
            f"time scale {args.time_scale}, default poll settings, simulated rollout {rollout:.1f} s, "
            f"{args.runs} rounds"
        )
        for side, runner in (("deployflow", run_deployflow), ("bash", run_anchor)):
            warm_up = runner(stack, "happy")
            print(f"warm-up  happy    {side:<10} wall {warm_up.wall:6.2f} s (not counted): {warm_up.verdict}")
        releases: list[Release] = []
        for round_no in range(1, args.runs + 1):
            for kind in ("happy", "rollback"):
                for side in ("deployflow", "bash"):
                    runner = run_deployflow if side == "deployflow" else run_anchor
                    if kind == "rollback":
                        with overrides(stack, failing_service=FAILING_SERVICE):
                            release = runner(stack, kind)
                    else:
                        release = runner(stack, kind)
                    releases.append(release)
                    transitions = f", {release.transitions} transitions" if release.transitions is not None else ""
                    print(
                        f"round {round_no} {kind:<8} {side:<10} wall {release.wall:6.2f} s, "
                        f"overhead {release.overhead(rollout):6.2f} s, migration {release.migration_seconds:5.2f} s, "
                        f"stopped->noticed {release.noticed_seconds:5.2f} s{transitions}: {release.verdict}"
                    )

    def pick(side: str, kind: str) -> list[Release]:
        return [r for r in releases if r.side == side and r.kind == kind]

    print(f"\n{'median of ' + str(args.runs) + ' rounds':<26} {'overhead s':>10} {'stopped->noticed s':>19}  verdict")
    for kind in ("happy", "rollback"):
        for side in ("deployflow", "bash"):
            chosen = pick(side, kind)
            verdicts = sorted({r.verdict for r in chosen})
            print(
                f"{kind + ' ' + side:<26} {median([r.overhead(rollout) for r in chosen]):>10.2f} "
                f"{median([r.noticed_seconds for r in chosen]):>19.2f}  {', '.join(verdicts)}"
            )
    ratios = {
        kind: median([r.overhead(rollout) for r in pick("deployflow", kind)])
        / median([r.overhead(rollout) for r in pick("bash", kind)])
        for kind in ("happy", "rollback")
    }
    print(f"overhead ratio deployflow/bash: happy {ratios['happy']:.2f}, rollback {ratios['rollback']:.2f}")
    happy = pick("deployflow", "happy")
    figures = {
        "overhead_ratio_vs_bash": round(ratios["happy"], 2),
        "overhead_ratio_vs_bash_rollback": round(ratios["rollback"], 2),
        "stopped_to_noticed_seconds": round(median([r.noticed_seconds for r in happy]), 1),
        "bash_stopped_to_noticed_seconds": round(median([r.noticed_seconds for r in pick("bash", "happy")]), 1),
        "transitions_per_happy_release": max(r.transitions or 0 for r in happy),
        "runs": args.runs,
        "time_scale": args.time_scale,
    }
    print(f"results: {save('workflow', figures)}")


if __name__ == "__main__":
    main()
