"""The CLI behaves like the AWS tools operators know: profile, region and endpoint as the AWS CLI v2 resolves them
(and the region an ARN names), one line and exit 3 for a target it cannot use, exit 2 for bad usage, --output json,
help for every argument, the exit codes in --help, a Ctrl-C hint that repeats the flags, shell completion.

Against a plain moto server (no interpreter: an execution stays RUNNING until stopped), in a HOME without ~/.aws.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from deployflow.cli import parser
from deployflow.target import resolve_region
from tests.cli.conftest import background_cli, cli_command, run_cli
from tests.fixtures.executions import plain_moto_server

REGION = "eu-west-1"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    with plain_moto_server() as url:
        yield url


@pytest.fixture(scope="module")
def sfn(moto_url: str) -> Any:
    return boto3.client(
        "stepfunctions",
        endpoint_url=moto_url,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@pytest.fixture(scope="module")
def machine(sfn: Any) -> str:
    definition = {"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}
    return str(
        sfn.create_state_machine(
            name="conventions-release",
            definition=json.dumps(definition),
            roleArn="arn:aws:iam::123456789012:role/release",
        )["stateMachineArn"]
    )


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """No AWS configuration at all (as on a fresh machine), no instance metadata to wait for; plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k != "DEPLOYFLOW_STACK_NAME"}
    env.update(HOME=str(home), AWS_EC2_METADATA_DISABLED="true", PYTHONIOENCODING="utf-8", **extra)
    return env


def one_line_error(stderr: str) -> str:
    # The error is one line; the "following <arn>" line before it says what was being watched.
    lines = [line for line in stderr.splitlines() if line.strip() and not line.startswith("following ")]
    assert len(lines) == 1, f"not one line:\n{stderr}"
    assert "Traceback" not in stderr
    return lines[0]


# --- region, profile, endpoint ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("explicit", "arn", "configured", "env", "region"),
    [
        (
            "us-west-2",
            "arn:aws:states:eu-west-1:1:stateMachine:m",
            "ap-south-1",
            {"AWS_REGION": "sa-east-1"},
            "us-west-2",
        ),
        (None, "arn:aws:states:eu-west-1:1:stateMachine:m", None, {"AWS_REGION": "sa-east-1"}, "sa-east-1"),
        (None, None, None, {"AWS_REGION": "sa-east-1", "AWS_DEFAULT_REGION": "ca-central-1"}, "sa-east-1"),
        (None, None, None, {"AWS_DEFAULT_REGION": "ca-central-1"}, "ca-central-1"),
        (None, "arn:aws:states:eu-west-1:1:execution:m:e", "ap-south-1", {}, "eu-west-1"),
        (None, None, "ap-south-1", {}, "ap-south-1"),
        (None, "not-an-arn", None, {}, None),
    ],
)
def test_given_region_sources_then_the_first_of_flag_env_arn_profile_wins(
    explicit: str | None, arn: str | None, configured: str | None, env: dict[str, str], region: str | None
) -> None:
    assert resolve_region(explicit, arn, configured, env) == region


def test_given_an_execution_arn_and_no_region_anywhere_when_watched_then_the_arn_names_the_region(
    sfn: Any, machine: str, moto_url: str, tmp_path: Path
) -> None:
    arn = sfn.start_execution(stateMachineArn=machine, name="arn-region", input="{}")["executionArn"]
    sfn.stop_execution(executionArn=arn, error="Test", cause="stopped by the test")

    result = run_cli(["watch", arn, "--endpoint-url", moto_url, "--poll", "0.1"], clean_env(tmp_path, **CREDENTIALS))

    assert result.returncode == 1, result.explain()  # it reached the execution: ABORTED is a failed release
    assert "■ execution ABORTED" in result.stderr or "ABORTED" in result.stderr, result.explain()


def test_given_aws_endpoint_url_and_aws_region_in_the_environment_when_started_then_they_are_used(
    sfn: Any, machine: str, moto_url: str, tmp_path: Path
) -> None:
    env = clean_env(tmp_path, AWS_ENDPOINT_URL=moto_url, AWS_REGION=REGION, **CREDENTIALS)
    # The state machine's name only, through its ARN's prefix: no region in what is given on the command line.
    result = run_cli(["start", "--image-tag", "2026-12-01.2", "--state-machine-arn", machine, "--output", "json"], env)

    assert result.returncode == 0, result.explain()
    arn = json.loads(result.stdout)["executionArn"]
    assert json.loads(sfn.describe_execution(executionArn=arn)["input"])["imageTag"] == "2026-12-01.2"


def test_given_a_profile_that_does_not_exist_when_help_then_it_works_and_when_watching_then_one_line_exit_3(
    tmp_path: Path,
) -> None:
    env = clean_env(tmp_path, AWS_PROFILE="nope")
    shown = run_cli(["--help"], env)
    assert shown.returncode == 0, shown.explain()

    watched = run_cli(["watch", "arn:aws:states:eu-west-1:123456789012:execution:m:e"], env)

    assert watched.returncode == 3, watched.explain()
    assert "nope" in one_line_error(watched.stderr)


def test_given_no_credentials_when_started_then_one_line_exit_3(machine: str, moto_url: str, tmp_path: Path) -> None:
    result = run_cli(
        ["start", "--image-tag", "2026-12-01.3", "--state-machine-arn", machine, "--endpoint-url", moto_url],
        clean_env(tmp_path),
    )

    assert result.returncode == 3, result.explain()
    assert "Unable to locate credentials" in one_line_error(result.stderr)


def test_given_an_endpoint_that_does_not_answer_when_watched_then_one_line_exit_3_within_seconds(
    tmp_path: Path,
) -> None:
    started = time.monotonic()
    result = run_cli(
        ["watch", "arn:aws:states:eu-west-1:123456789012:execution:m:e", "--endpoint-url", "http://127.0.0.1:9"],
        clean_env(tmp_path, **CREDENTIALS),
        timeout=60,
    )

    assert result.returncode == 3, result.explain()
    assert "Could not connect to the endpoint URL" in one_line_error(result.stderr)
    assert time.monotonic() - started < 30


# --- usage --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("args", [["start", "--image-tag", "2026-12-01.4"], ["watch", "release-x"]])
def test_given_no_target_when_run_then_usage_exit_2_naming_the_options(args: list[str], tmp_path: Path) -> None:
    result = run_cli(args, clean_env(tmp_path, **CREDENTIALS))

    assert result.returncode == 2, result.explain()
    assert "give --stack-name (or set DEPLOYFLOW_STACK_NAME), --state-machine-arn" in one_line_error(result.stderr)


def test_given_deployflow_stack_name_when_no_stack_flag_then_it_is_the_stack_used(
    moto_url: str, tmp_path: Path
) -> None:
    env = clean_env(tmp_path, DEPLOYFLOW_STACK_NAME="deployflow-nowhere", AWS_REGION=REGION, **CREDENTIALS)

    result = run_cli(["watch", "release-x", "--endpoint-url", moto_url], env)

    assert result.returncode == 3, result.explain()
    assert "cannot read stack deployflow-nowhere" in one_line_error(result.stderr)


def test_given_a_finished_execution_when_watched_with_output_json_then_stdout_is_one_document(
    sfn: Any, machine: str, moto_url: str, tmp_path: Path
) -> None:
    arn = sfn.start_execution(stateMachineArn=machine, name="json-output", input="{}")["executionArn"]
    sfn.stop_execution(executionArn=arn, error="Test", cause="stopped by the test")

    result = run_cli(
        ["watch", arn, "--endpoint-url", moto_url, "--output", "json", "--poll", "0.1"],
        clean_env(tmp_path, **CREDENTIALS),
    )

    document = json.loads(result.stdout)
    assert (document["executionArn"], document["status"]) == (arn, "ABORTED"), result.explain()
    assert {"error", "cause", "failedStep", "path", "record"} <= set(document)


def test_given_a_running_execution_when_the_watcher_is_interrupted_then_the_hint_repeats_the_target_flags(
    sfn: Any, machine: str, moto_url: str, tmp_path: Path
) -> None:
    arn = sfn.start_execution(stateMachineArn=machine, name="ctrl-c", input="{}")["executionArn"]
    args = ["watch", arn, "--region", REGION, "--endpoint-url", moto_url, "--poll", "0.2"]
    try:
        with background_cli(args, clean_env(tmp_path, **CREDENTIALS)) as watcher:
            watcher.wait_for_stderr(f"following {arn}")
            watcher.send(signal.SIGINT)
            result = watcher.finish(timeout=30)
    finally:
        sfn.stop_execution(executionArn=arn)

    assert result.returncode == 130, result.explain()
    assert (
        f"the execution goes on running: deployflow watch {arn} --region {REGION} --endpoint-url {moto_url}"
        in result.stderr
    )


# --- help and completion ------------------------------------------------------------------------------------------


def _parsers(root: argparse.ArgumentParser) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield root.prog, root
    for action in root._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                yield from _parsers(sub)


def test_given_every_command_then_every_argument_has_help_text() -> None:
    missing = [
        f"{prog}: {action.dest}"
        for prog, command in _parsers(parser())
        for action in command._actions
        if not isinstance(action, argparse._SubParsersAction) and not (action.help or "").strip()
    ]
    assert not missing, missing


def test_given_help_then_the_exit_codes_are_shown_and_local_run_describes_each_scenario(tmp_path: Path) -> None:
    from deployflow.local.scenarios import SCENARIOS

    for args in (["--help"], ["start", "--help"], ["watch", "--help"]):
        shown = run_cli(args, clean_env(tmp_path))
        assert "exit status:" in shown.stdout, args
        assert "3    the target could not be found or reached" in shown.stdout, args
    scenarios = run_cli(["local", "run", "--help"], clean_env(tmp_path)).stdout
    for name, scenario in SCENARIOS.items():
        assert f"  {name:<20} {scenario.summary}" in scenarios, name


@pytest.mark.parametrize(
    ("line", "offered"),
    [
        ("deployflow st", {"start", "status"}),
        ("deployflow watch --reg", {"--region"}),
        ("deployflow completion z", {"zsh"}),
    ],
)
def test_given_a_partial_command_line_when_the_shell_asks_then_argcomplete_offers_the_completions(
    line: str, offered: set[str], tmp_path: Path
) -> None:
    answer = tmp_path / "completions"
    env = clean_env(
        tmp_path,
        _ARGCOMPLETE="1",
        _ARGCOMPLETE_IFS="\n",
        _ARGCOMPLETE_STDOUT_FILENAME=str(answer),
        COMP_LINE=line,
        COMP_POINT=str(len(line)),
    )
    result = subprocess.run(cli_command([]), env=env, capture_output=True, text=True, timeout=60, check=False)

    assert result.returncode == 0, result.stderr
    assert set(answer.read_text(encoding="utf-8").split()) == offered


def test_given_the_completion_command_then_it_prints_the_script_for_the_shell(tmp_path: Path) -> None:
    bash = run_cli(["completion", "bash"], clean_env(tmp_path))
    zsh = run_cli(["completion", "zsh"], clean_env(tmp_path))

    assert bash.returncode == zsh.returncode == 0
    assert "complete " in bash.stdout
    assert "deployflow" in bash.stdout
    assert zsh.stdout.startswith("#compdef deployflow")
