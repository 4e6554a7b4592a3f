"""Fixtures and helpers for the CLI tests: the local stack for a module, and the CLI run as a real subprocess."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pytest
from release_steps.execution_history import TERMINAL_STATUSES

from deployflow.local.aws import FAKE_CREDENTIALS, REGION
from deployflow.local.stack import LocalStack

REPO_ROOT = Path(__file__).resolve().parents[2]
CLI_TIMEOUT_SECONDS = 180.0

# Variables that would send boto3 (ours or the CLI's) somewhere else than the local stack's moto server.
_AWS_REDIRECTS = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_ENDPOINT_URL",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
)


@dataclass(frozen=True)
class CliResult:
    """One finished CLI run."""

    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    def explain(self) -> str:
        """Everything a failing assertion should show."""
        return (
            f"deployflow {' '.join(self.args)} -> exit {self.returncode}\n"
            f"--- stdout ---\n{self.stdout[-6000:]}\n--- stderr ---\n{self.stderr[-6000:]}"
        )


def base_environment() -> dict[str, str]:
    """This process's environment without anything that points AWS clients elsewhere; UTF-8 output."""
    env = {k: v for k, v in os.environ.items() if k not in _AWS_REDIRECTS and not k.startswith("AWS_ENDPOINT_URL_")}
    env["PYTHONIOENCODING"] = "utf-8"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def cli_command(args: Sequence[str]) -> list[str]:
    return [sys.executable, "-m", "deployflow.cli", *args]


def run_cli(args: Sequence[str], env: dict[str, str], timeout: float = CLI_TIMEOUT_SECONDS) -> CliResult:
    """Run ``deployflow ARGS`` in another process; a run that outlives ``timeout`` is killed and fails the test."""
    try:
        done = subprocess.run(
            cli_command(args),
            env=env,
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            encoding="utf-8",
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"deployflow {' '.join(args)} still running after {timeout}s (killed): {e.stderr!r}")
    return CliResult(tuple(args), done.returncode, done.stdout, done.stderr)


class BackgroundCli:
    """The CLI started in the background, its stderr read line by line (to act once it reached a point)."""

    def __init__(self, args: Sequence[str], env: dict[str, str]) -> None:
        self.args = tuple(args)
        self.process = subprocess.Popen(
            cli_command(args),
            env=env,
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
        )
        self._stderr_lines: queue.Queue[str | None] = queue.Queue()
        self._stderr_seen: list[str] = []
        self._stdout_chunks: list[str] = []
        assert self.process.stderr is not None
        assert self.process.stdout is not None
        self._readers = [
            threading.Thread(target=self._pump_lines, args=(self.process.stderr,), daemon=True),
            threading.Thread(target=self._pump_all, args=(self.process.stdout,), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _pump_lines(self, stream: IO[str]) -> None:
        for line in stream:
            self._stderr_lines.put(line)
        self._stderr_lines.put(None)

    def _pump_all(self, stream: IO[str]) -> None:
        self._stdout_chunks.append(stream.read())

    def wait_for_stderr(self, needle: str, timeout: float = 60.0) -> str:
        """Block until a stderr line contains ``needle``; fails the test if the CLI ends or goes quiet first."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                pytest.fail(f"no stderr line with {needle!r} within {timeout}s; seen: {self._stderr_seen!r}")
            try:
                line = self._stderr_lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                pytest.fail(f"deployflow ended before printing {needle!r}; stderr: {''.join(self._stderr_seen)}")
            self._stderr_seen.append(line)
            if needle in line:
                return line

    def send(self, sig: signal.Signals) -> None:
        self.process.send_signal(sig)

    def finish(self, timeout: float = CLI_TIMEOUT_SECONDS) -> CliResult:
        """Wait for the CLI to end (killed after ``timeout``, which fails the test)."""
        try:
            returncode = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            stderr = self._drain()
            pytest.fail(f"deployflow {' '.join(self.args)} still running after {timeout}s (killed); stderr: {stderr!r}")
        return CliResult(self.args, returncode, "".join(self._stdout_chunks), self._drain())

    def _drain(self) -> str:
        """All of stderr read so far (the readers end once the process did)."""
        for reader in self._readers:
            reader.join(timeout=10)
        while True:
            try:
                line = self._stderr_lines.get_nowait()
            except queue.Empty:
                break
            if line is not None:
                self._stderr_seen.append(line)
        return "".join(self._stderr_seen)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


@contextmanager
def background_cli(args: Sequence[str], env: dict[str, str]) -> Iterator[BackgroundCli]:
    """A background CLI that is killed when the block ends, whatever happened in it."""
    cli = BackgroundCli(args, env)
    try:
        yield cli
    finally:
        cli.kill()


# --- the local stack ------------------------------------------------------------------------------------------------


def list_executions(stack: LocalStack) -> list[dict[str, Any]]:
    """Every execution of the stack's state machine (all pages)."""
    sfn = stack.client("stepfunctions")
    executions: list[dict[str, Any]] = []
    for page in sfn.get_paginator("list_executions").paginate(stateMachineArn=stack.state_machine_arn):
        executions.extend(page["executions"])
    return executions


def settle(stack: LocalStack, timeout: float = 120.0) -> list[str]:
    """Wait until no execution runs (a RUNNING one makes the next start fail with DeploymentInProgressError);
    stop what still runs after ``timeout``. The ARNs that had to be stopped."""
    sfn = stack.client("stepfunctions")
    deadline = time.monotonic() + timeout
    while True:
        running = [e["executionArn"] for e in list_executions(stack) if e["status"] not in TERMINAL_STATUSES]
        if not running:
            return []
        if time.monotonic() >= deadline:
            for arn in running:
                sfn.stop_execution(executionArn=arn, error="TestTeardown", cause="left running by a CLI test")
            return running
        time.sleep(0.1)


@pytest.fixture(scope="module")
def cli_stack() -> Iterator[LocalStack]:
    """The local stack (real PostgreSQL, Kafka, moto server) for one test module; stopped at the module's end.

    moto's state is process-global: only one local stack or LocalAws per process, so this must not outlive the
    module (the other modules' function-scoped moto fixtures start after it stopped).
    """
    with pytest.MonkeyPatch.context() as patch:
        for name in _AWS_REDIRECTS:
            patch.delenv(name, raising=False)
        for name, value in FAKE_CREDENTIALS.items():
            patch.setenv(name, value)
        patch.setenv("AWS_DEFAULT_REGION", REGION)
        patch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
        with LocalStack() as stack:
            yield stack


@pytest.fixture
def cli_env(cli_stack: LocalStack) -> dict[str, str]:
    """The CLI process's environment: the local stack's endpoint and fake credentials."""
    return {**base_environment(), **cli_stack.client_environment()}


@pytest.fixture
def target(cli_stack: LocalStack) -> list[str]:
    """The target options every start/watch run gets."""
    assert cli_stack.aws is not None
    assert cli_stack.aws.endpoint_url is not None
    return [
        "--state-machine-arn",
        cli_stack.state_machine_arn,
        "--endpoint-url",
        cli_stack.aws.endpoint_url,
        "--region",
        REGION,
        "--poll",
        "0.2",
    ]
