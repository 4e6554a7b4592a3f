"""Benchmark: a step's cold-start imports from the deployment package against a bare ``import boto3``.

    .venv/bin/python benchmarks/cold_start.py [--rounds 11] [--python313 PATH]

Builds the package as `sam build` does (functions/Makefile's recipe: wheels for the Lambda platform and CPython
3.13, bytecode compiled for 3.13) twice: for this machine's architecture, to run it, and for the template's arm64,
to weigh it. The runtime's own boto3 (which the package leaves out) is laid out beside it, compiled the same way.
Then, in a fresh python3.13 per sample under the Lambda environment variables (LAMBDA_TASK_ROOT makes Powertools
trace, as on Lambda), times ``import release_steps.<step>`` and, interleaved, ``import boto3``; nothing writes
bytecode. Prints per step the median of the paired ratios, the same for the floor (what the libraries every step
is built on cost before any step code: boto3, msgspec, Powertools with its Tracer), and the arm64 package's
unzipped size; the headline figures go to .cache/bench/cold_start.json. Asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.results import RESULTS_DIR, save

REPO_ROOT = Path(__file__).resolve().parents[1]


def _steps() -> tuple[str, ...]:
    """Every function's module, as template.yaml names it in its Handler (release_steps.<module>.lambda_handler)."""
    from cfnlint.decode.cfn_yaml import load  # keeps the CloudFormation tags

    resources = load(str(REPO_ROOT / "template.yaml"))["Resources"].values()
    handlers = [r["Properties"]["Handler"] for r in resources if r["Type"] == "AWS::Serverless::Function"]
    return tuple(h.split(".")[1] for h in handlers)


STEPS = _steps()
FLOOR_NAME = "(floor)"
PYTHON313_CANDIDATES = ("python3.13", "/root/.pyenv/versions/3.13.0/bin/python3.13")
PROBE = "import time\nt = time.perf_counter()\n{code}\nprint(time.perf_counter() - t)"
# What any step built on these libraries loads before its own code: boto3, one msgspec model (as models.py declares
# them), Powertools' Logger, metrics and Tracer patching botocore, as observability.py builds them. Timed like a step,
# for reference.
FLOOR = (
    "import boto3, msgspec\n"
    "class Floor(msgspec.Struct, rename='camel', kw_only=True):\n"
    "    name: str\n"
    "from aws_lambda_powertools import Logger, Tracer, single_metric\n"
    "Logger(service='deployflow')\n"
    "Tracer(service='deployflow', auto_patch=False).patch(modules=('botocore',))"
)


def find_python313(given: str | None) -> str:
    """The first candidate that runs and is 3.13 (a pyenv shim may exist and not run)."""
    check = "import sys; sys.exit(sys.version_info[:2] != (3, 13))"
    for candidate in (given, *PYTHON313_CANDIDATES):
        found = shutil.which(candidate) if candidate else None
        if found and subprocess.run([found, "-c", check], capture_output=True, check=False).returncode == 0:
            return found
    raise SystemExit("benchmarks/cold_start.py: python3.13 not found (pass --python313): the runtime's Python")


def build_package(target: Path, arch: str, python313: str) -> Path:
    """functions/Makefile's package for ``arch`` in ``target`` (rebuilt each run: the figures describe this tree)."""
    shutil.rmtree(target, ignore_errors=True)
    subprocess.run(
        [
            "make",
            "-s",
            "-C",
            str(REPO_ROOT / "functions"),
            "package",
            f"ARTIFACTS_DIR={target}",
            f"LAMBDA_ARCH={arch}",
            f"PYTHON={sys.executable}",
            f"PYTHON313={python313}",
        ],
        check=True,
    )
    return target


def build_runtime_boto3(target: Path, python313: str) -> Path:
    """The boto3 the python3.13 runtime provides, with its bytecode (the version the dev environment pins)."""
    import boto3

    if not (target / "boto3").exists():
        subprocess.run(
            [
                *(sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile"),
                *("--target", str(target), f"boto3=={boto3.__version__}"),
            ],
            check=True,
        )
        subprocess.run([python313, "-m", "compileall", "-q", "-j", "0", str(target)], check=True)
    return target


def lambda_env(package: Path, runtime: Path, step: str) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": os.pathsep.join([str(package), str(runtime)]),
        "PYTHONDONTWRITEBYTECODE": "1",  # /var/task is read-only
        "LAMBDA_TASK_ROOT": str(package),
        "AWS_LAMBDA_FUNCTION_NAME": f"deployflow-{step}",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "_HANDLER": f"release_steps.{step}.lambda_handler",
        "POWERTOOLS_SERVICE_NAME": "deployflow",
        "POWERTOOLS_METRICS_NAMESPACE": "Deployflow",
    }


def import_seconds(python313: str, code: str, env: dict[str, str]) -> float:
    """Seconds ``code`` takes in a fresh python3.13 (bytecode read, never written)."""
    done = subprocess.run(
        [python313, "-s", "-c", PROBE.format(code=code)], env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"{code!r} failed in the package layout:\n{done.stderr}")
    return float(done.stdout.strip().splitlines()[-1])


def size_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1_000_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=11, help="paired samples per step")
    parser.add_argument("--python313", help="the runtime's Python (default: python3.13 on PATH)")
    args = parser.parse_args()
    python313 = find_python313(args.python313)
    work = RESULTS_DIR / "cold-start"
    host_arch = {"amd64": "x86_64", "arm64": "aarch64"}.get(platform.machine().lower(), platform.machine())
    package = build_package(work / f"package-{host_arch}", host_arch, python313)
    deployed = package if host_arch == "aarch64" else build_package(work / "package-aarch64", "aarch64", python313)
    runtime = build_runtime_boto3(work / "runtime-boto3", python313)
    print(f"package (arm64, as deployed): {size_mb(deployed):.1f} MB unzipped; timing the {host_arch} build")

    probes = {step: f"import release_steps.{step}" for step in STEPS} | {FLOOR_NAME: FLOOR}
    ratios: dict[str, list[float]] = {name: [] for name in probes}
    steps_s: dict[str, list[float]] = {name: [] for name in probes}
    boto3_s: list[float] = []
    for _ in range(args.rounds):
        for name, code in probes.items():  # interleaved: each sample sits next to its own boto3 sample
            env = lambda_env(package, runtime, STEPS[0] if name == FLOOR_NAME else name)
            seconds = import_seconds(python313, code, env)
            bare = import_seconds(python313, "import boto3", env)
            steps_s[name].append(seconds)
            boto3_s.append(bare)
            ratios[name].append(seconds / bare)

    print(f"bare `import boto3`: median {statistics.median(boto3_s) * 1000:.0f} ms ({len(boto3_s)} samples)")
    print(f"{'step':<18} {'import ms':>9} {'x boto3':>8}   (medians of {args.rounds} interleaved pairs)")
    medians = {name: float(statistics.median(ratios[name])) for name in probes}
    for name in probes:
        print(f"{name:<18} {statistics.median(steps_s[name]) * 1000:>9.0f} {medians[name]:>8.2f}")
    worst = max(STEPS, key=lambda step: medians[step])
    print(f"worst step: {worst} ({medians[worst]:.2f}x)")
    print(
        f"{FLOOR_NAME}: boto3 + a msgspec model + Powertools (Logger, metrics, Tracer on botocore), no step code: "
        f"{medians[FLOOR_NAME]:.2f}x"
    )
    figures = {
        "cold_start_ratio_worst_step": round(medians[worst], 2),
        "worst_step": worst,
        "ratios": {step: round(medians[step], 2) for step in STEPS},
        "floor_ratio": round(medians[FLOOR_NAME], 2),
        "package_size_mb": round(size_mb(deployed), 1),
        "rounds": args.rounds,
    }
    print(f"results: {save('cold_start', figures)}")


if __name__ == "__main__":
    main()
