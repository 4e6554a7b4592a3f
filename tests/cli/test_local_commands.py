"""``deployflow local up`` and ``deployflow local invoke`` as an operator runs them (real subprocesses)."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from deployflow.local.commands import config_env_overrides, parse_overrides
from deployflow.local.template import REPO_ROOT
from tests.cli.conftest import base_environment, cli_command, run_cli
from tests.workflow.support import alive, descendants

EXPORT = re.compile(r"^export (AWS_[A-Z_]+)=(\S+)$", re.MULTILINE)


def test_given_sam_style_overrides_when_parsed_then_both_spellings_give_the_values() -> None:
    assert parse_overrides("A=1 B=x,y ParameterKey=C,ParameterValue=3") == {"A": "1", "B": "x,y", "C": "3"}
    assert config_env_overrides("prod")["ClusterName"], "samconfig.toml's prod overrides were not read"


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["local", "invoke", "NoSuchFunction"], "", "no function NoSuchFunction in template.yaml"),
        (["local", "invoke", "PrepareFunction", "-e", "-"], "{not json", "the event in stdin is not JSON"),
        (["local", "invoke", "PrepareFunction", "-e", "/nonexistent.json"], "", "cannot read the event file"),
        (["local", "up", "--config-env", "staging"], "", "--config-env staging: no [staging] in samconfig.toml"),
        (["local", "up", "--parameter-overrides", "NoEquals"], "", "is not Key=Value"),
    ],
)
def test_given_bad_input_when_a_local_command_runs_then_one_line_names_it_and_it_exits_2(
    args: list[str], stdin: str, message: str
) -> None:
    done = subprocess.run(
        cli_command(args),
        input=stdin,
        capture_output=True,
        text=True,
        env=base_environment(),
        cwd=REPO_ROOT,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2, done
    assert message in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_given_local_up_when_the_cli_the_aws_cli_and_local_invoke_use_it_then_they_work_and_ctrl_c_stops_all(
    tmp_path: Path,
) -> None:
    up = subprocess.Popen(
        [*cli_command(["local", "up", "--log-dir", str(tmp_path / "logs")])],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=base_environment(),
        cwd=REPO_ROOT,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(up.stdout.readline, "")), daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not any(line.startswith("aws stepfunctions") for line in lines):
            assert up.poll() is None, "".join(lines)
            time.sleep(0.2)
        banner = "".join(lines)
        exports = dict(EXPORT.findall(banner))
        assert set(exports) == {
            "AWS_ENDPOINT_URL",
            "AWS_DEFAULT_REGION",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
        }, banner
        assert "state machine:  arn:aws:states:" in banner, banner
        assert "SNS topic:      arn:aws:sns:" in banner, banner
        env = {**base_environment(), **exports}

        release = run_cli(["start", "--stack-name", "deployflow-local", "--image-tag", "local", "--follow"], env)
        assert release.returncode == 0, release.explain()
        assert "succeeded" in release.stdout, release.explain()
        _an_execution_stopped_under_local_up_gives_its_lock_back_and_is_notified(env, exports, lines)

        invoked = subprocess.run(
            cli_command(["local", "invoke", "PrepareFunction", "-e", "-"]),
            input='{"not": "a release"}',
            capture_output=True,
            text=True,
            env=env,
            cwd=REPO_ROOT,
            timeout=120,
            check=False,
        )
        assert invoked.returncode == 1, invoked
        assert json.loads(invoked.stdout)["errorType"] == "InvalidInputError", invoked.stdout
        assert "REPORT RequestId:" in invoked.stderr, "the function's log was not printed on stderr"

        if shutil.which("aws"):
            listed = subprocess.run(
                [
                    "aws",
                    "cloudformation",
                    "describe-stacks",
                    "--stack-name",
                    "deployflow-local",
                    "--endpoint-url",
                    exports["AWS_ENDPOINT_URL"],
                    "--output",
                    "json",
                ],
                capture_output=True,
                text=True,
                env=env,
                timeout=60,
                check=False,
            )
            assert listed.returncode == 0, listed
            outputs = {o["OutputKey"] for o in json.loads(listed.stdout)["Stacks"][0]["Outputs"]}
            assert {"StateMachineArn", "NotificationTopicArn"} <= outputs, outputs
        children = descendants(up.pid)
        assert any("aws-lambda-rie" in cmd for cmd in children.values()), children
    finally:
        up.send_signal(signal.SIGINT)
        try:
            up.wait(timeout=60)
        except subprocess.TimeoutExpired:
            up.kill()
            up.wait(timeout=10)
            pytest.fail(f"deployflow local up still running 60s after Ctrl-C (killed); it printed:\n{''.join(lines)}")
    assert up.returncode == 130, "".join(lines)
    assert "interrupted: everything started here was stopped" in "".join(lines)
    left = {pid: cmd for pid, cmd in children.items() if alive(pid)}
    assert not left, f"left running after Ctrl-C: {left}"
    assert not (REPO_ROOT / ".cache" / "local-up.json").exists(), "the running-stack note outlived the stack"


def _an_execution_stopped_under_local_up_gives_its_lock_back_and_is_notified(
    env: dict[str, str], exports: dict[str, str], lines: list[str]
) -> None:
    """An operator's ``stop-execution`` while the release holds the lock: ``local up`` delivers the ABORTED
    status-change event to the rules, as EventBridge would, so the lock comes back and the stop is notified."""
    import boto3

    status = run_cli(["status", "--stack-name", "deployflow-local", "--output", "json"], env)
    assert status.returncode == 0, status.explain()
    assert not json.loads(status.stdout)["held"], status.stdout
    table = json.loads(status.stdout)["lockTable"]
    aws: dict[str, Any] = {
        "endpoint_url": exports["AWS_ENDPOINT_URL"],
        "region_name": exports["AWS_DEFAULT_REGION"],
        "aws_access_key_id": exports["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": exports["AWS_SECRET_ACCESS_KEY"],
    }
    sfn, dynamodb = boto3.client("stepfunctions", **aws), boto3.client("dynamodb", **aws)
    started = run_cli(["start", "--stack-name", "deployflow-local", "--image-tag", "local", "--output", "json"], env)
    assert started.returncode == 0, started.explain()
    arn = json.loads(started.stdout)["executionArn"]
    name = arn.rsplit(":", 1)[-1]
    deadline = time.monotonic() + 60
    while not dynamodb.scan(TableName=table)["Items"]:  # the release has taken the lock
        assert time.monotonic() < deadline, "the release never took the lock"
        assert sfn.describe_execution(executionArn=arn)["status"] == "RUNNING", "it ended before it could be stopped"
        time.sleep(0.05)
    sfn.stop_execution(executionArn=arn, error="Operator.Stopped", cause="test: stopped while holding the lock")

    ended = f"execution {name} ABORTED: status-change event to "
    while not any(ended in line for line in lines):
        assert time.monotonic() < deadline, "local up never reported the end: " + "".join(lines[-20:])
        time.sleep(0.2)
    (line,) = [line for line in lines if ended in line]
    assert "ReleaseLockOnEndRule -> ReleaseLockOnEndFunction" in line, line
    assert "ReleaseStoppedAtStepRule -> NotifyStoppedFunction" in line, line
    notified = "".join(lines[lines.index(line) :])
    assert f"deployflow release {name} ABORTED" in notified, notified
    after = run_cli(["status", "--stack-name", "deployflow-local", "--output", "json"], env)
    assert not json.loads(after.stdout)["held"], f"the stopped release kept the lock: {after.stdout}"
