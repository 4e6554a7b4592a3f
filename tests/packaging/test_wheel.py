"""The operator's install: the wheel, built from this tree and installed without extras into a fresh virtualenv,
gives a working ``deployflow`` without moto, pytest, Powertools or the Lambda handlers.

The dependencies come from pip's cache (or PyPI), pinned by constraints.txt as the dev venv is.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from tests.fixtures.executions import plain_moto_server

REPO_ROOT = Path(__file__).resolve().parents[2]
STEP_TIMEOUT = 240
# What a clean install must not bring: the local stack, the tests, the Lambda runtime's libraries.
NOT_INSTALLED = ("moto", "pytest", "aws-lambda-powertools", "psycopg2-binary", "confluent-kafka", "graphviz")


def _run(command: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, check=False, timeout=STEP_TIMEOUT, env=env)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bin/ of a fresh venv holding only the wheel and its declared dependencies."""
    root = tmp_path_factory.mktemp("wheel")
    # Build from a copy: an in-tree build would leave build/ and *.egg-info in the checkout.
    source = root / "src"
    shutil.copytree(
        REPO_ROOT,
        source,
        ignore=shutil.ignore_patterns(
            ".git", ".venv*", ".cache", "build", "*.egg-info", "__pycache__", ".*_cache", ".aws-sam", "tests"
        ),
    )
    dist = root / "dist"
    built = _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(dist), str(source)])
    assert built.returncode == 0, built.stderr
    [wheel] = dist.glob("deployflow-*.whl")

    env_dir = root / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    bin_dir = env_dir / "bin"
    pip = [str(bin_dir / "pip"), "install", "--quiet", "--disable-pip-version-check"]
    install = _run([*pip, "-c", str(REPO_ROOT / "constraints.txt"), "--find-links", str(dist), str(wheel)])
    assert install.returncode == 0, install.stderr
    return bin_dir


def _clean_env(tmp_path: Path) -> dict[str, str]:
    """No AWS configuration at all, as on a fresh machine: a HOME without ~/.aws."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["HOME"] = str(tmp_path)
    return env


def test_given_the_wheel_without_extras_then_version_and_help_work_and_nothing_else_came_along(
    installed: Path, tmp_path: Path
) -> None:
    env = _clean_env(tmp_path)
    version = _run([str(installed / "deployflow"), "--version"], env=env)
    assert (version.returncode, version.stdout.strip()) == (0, "deployflow 0.1.0"), version.stderr
    for command in ("start", "watch"):
        shown = _run([str(installed / "deployflow"), command, "--help"], env=env)
        assert shown.returncode == 0, shown.stderr
        assert "--state-machine-arn" in shown.stdout
    for command, flag in (("status", "--stack-name"), ("abandon", "--reason")):
        shown = _run([str(installed / "deployflow"), command, "--help"], env=env)
        assert shown.returncode == 0, f"deployflow {command} --help: {shown.stderr}"
        assert flag in shown.stdout, f"deployflow {command} --help shows no {flag}"
    listed = _run([str(installed / "pip"), "list", "--format", "json", "--disable-pip-version-check"], env=env)
    names = {p["name"].lower() for p in json.loads(listed.stdout)}
    assert "deployflow" in names
    assert not names & set(NOT_INSTALLED), f"a clean install brought {sorted(names & set(NOT_INSTALLED))}"
    handler = _run([str(installed / "python"), "-c", "import release_steps.record"], env=env)
    assert handler.returncode == 1, "a Lambda handler module is in the CLI's wheel"
    assert "No module named 'release_steps.record'" in handler.stderr


def test_given_the_wheel_without_extras_when_local_is_asked_for_then_one_line_says_what_to_install(
    installed: Path, tmp_path: Path
) -> None:
    result = _run([str(installed / "deployflow"), "local", "run"], env=_clean_env(tmp_path))
    assert result.returncode == 2
    assert result.stderr.startswith("deployflow local: the local stack is not installed here"), result.stderr
    assert "Traceback" not in result.stderr


@pytest.fixture
def moto_endpoint() -> Iterator[str]:
    with plain_moto_server() as url:
        yield url


def test_given_the_wheel_without_extras_when_started_against_an_endpoint_then_the_execution_has_the_release_input(
    installed: Path, tmp_path: Path, moto_endpoint: str
) -> None:
    sfn = boto3.client(
        "stepfunctions",
        endpoint_url=moto_endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="eu-west-1",
    )
    machine = sfn.create_state_machine(
        name="deployflow-release",
        definition=json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}),
        roleArn="arn:aws:iam::123456789012:role/release",
    )["stateMachineArn"]
    env = _clean_env(tmp_path) | {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}

    started = _run(
        [
            str(installed / "deployflow"),
            "start",
            "--image-tag",
            "2026-12-01.1",
            "--state-machine-arn",
            machine,
            "--region",
            "eu-west-1",
            "--endpoint-url",
            moto_endpoint,
        ],
        env=env,
    )

    assert started.returncode == 0, started.stderr
    arn = started.stdout.strip()
    described = sfn.describe_execution(executionArn=arn)
    assert json.loads(described["input"]) == {"imageTag": "2026-12-01.1", "dryRun": False}
