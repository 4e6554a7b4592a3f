"""The local stack stops what it started - processes, ports, files - also when the code inside its ``with`` fails."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from deployflow.local.scenarios import SLOW_MIGRATION, apply_migrations, migrations_with, overrides
from deployflow.local.stack import DEFAULT_TAG, LocalStack, StackOptions
from tests.workflow.support import alive, descendants, refuses_connections

pytestmark = pytest.mark.workflow


class _BodyFailedError(Exception):
    """Stands for a failing test body inside the stack's ``with``."""


@dataclass
class _Seen:
    """What the stack ran while it was up, recorded from the outside."""

    pids: dict[str, int] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    paths: dict[str, Path] = field(default_factory=dict)
    children: dict[int, str] = field(default_factory=dict)


def _port(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


def _wait_for_migration_process(parent: int, timeout: float = 60.0) -> int:
    """The pid of the migration task's runner (``python -m dbmigrate``), once the ECS seam has started it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [pid for pid, cmd in descendants(parent).items() if "-m dbmigrate" in cmd and "[Z]" not in cmd]
        if found:
            return found[0]
        time.sleep(0.05)
    raise AssertionError(f"no migration task process appeared within {timeout}s: {descendants(parent)}")


def _run_release_until_mid_migration(options: StackOptions, seen: _Seen, *, fail_inside: bool) -> None:
    with LocalStack(options) as stack:
        assert stack.postgres is not None
        assert stack.database is not None
        assert stack.kafka is not None
        assert stack.kafka.pid is not None
        assert stack.aws is not None
        assert stack.aws.endpoint_url is not None
        postmaster_pid = (stack.postgres.data_dir / "postmaster.pid").read_text().splitlines()[0]
        seen.pids.update(postgres=int(postmaster_pid), kafka=stack.kafka.pid)
        seen.ports.update(
            postgres=stack.database.port,
            kafka_plaintext=_port(stack.kafka.bootstrap_plaintext),
            kafka_sasl=_port(stack.kafka.bootstrap_sasl),
            moto=_port(stack.aws.endpoint_url),
        )
        assert stack.kafka.workdir is not None
        seen.paths.update(stack=stack.workdir, postgres=stack.postgres.base_dir, kafka=stack.kafka.workdir)

        # A release is mid-migration (a statement that sleeps 600 s) when the stack goes down.
        apply_migrations(stack)
        slow = migrations_with(stack, "V0002__rewrite_notifications.sql", SLOW_MIGRATION)
        with overrides(stack, task_env={"MIGRATIONS_DIR": str(slow)}):
            execution = stack.start_execution({"imageTag": DEFAULT_TAG})
            seen.pids["migration task"] = _wait_for_migration_process(os.getpid())
        # The steps that ran so far left their Lambda runtime processes warm: the emulator and its Python runtime.
        assert stack.aws.lambdas.pool is not None
        for name, pid in stack.aws.lambdas.pool.pids().items():
            seen.pids[f"emulator {name}"] = pid
        for pid, cmd in descendants(os.getpid()).items():
            if "-m awslambdaric" in cmd and "aws-lambda-rie" not in cmd:
                seen.pids[f"runtime {pid}"] = pid
        status = stack.client("stepfunctions").describe_execution(executionArn=execution)["status"]
        assert status == "RUNNING", f"the release should still be running at teardown, it is {status}"
        for name, pid in seen.pids.items():
            assert alive(pid), f"{name} (pid {pid}) is not running while the stack is up"
        for name, port in seen.ports.items():
            assert not refuses_connections("127.0.0.1", port), f"{name} port {port} refuses while the stack is up"
        seen.children = descendants(os.getpid())
        if fail_inside:
            raise _BodyFailedError


@pytest.mark.parametrize("fail_inside", [False, True], ids=["body-returns", "body-raises"])
def test_given_a_release_mid_migration_when_the_stack_exits_then_no_process_port_or_file_remains(
    stack_options: StackOptions, fail_inside: bool
) -> None:
    children_before = descendants(os.getpid())
    seen = _Seen()

    if fail_inside:
        with pytest.raises(_BodyFailedError):
            _run_release_until_mid_migration(stack_options, seen, fail_inside=True)
    else:
        _run_release_until_mid_migration(stack_options, seen, fail_inside=False)

    assert {"postgres", "kafka", "migration task"} <= seen.pids.keys(), seen.pids
    emulators = {n for n in seen.pids if n.startswith("emulator ")}
    runtimes = {n for n in seen.pids if n.startswith("runtime ")}
    for step in ("PrepareFunction", "RunMigrationFunction"):
        assert any(step in name for name in emulators), f"no runtime process for {step}: {seen.pids}"
    # An emulator starts its runtime on its first invocation: the step running at teardown may not have one yet.
    assert len(runtimes) >= len(emulators) - 1, f"the emulators' runtime processes are not running: {seen.pids}"
    still_running = {name: pid for name, pid in seen.pids.items() if alive(pid)}
    assert not still_running, f"processes left running after the stack stopped: {still_running}"
    left = {pid: cmd for pid, cmd in descendants(os.getpid()).items() if pid not in children_before}
    assert not left, f"child processes left (or unreaped) after the stack stopped: {left}; while up: {seen.children}"
    listening = {name: port for name, port in seen.ports.items() if not refuses_connections("127.0.0.1", port)}
    assert not listening, f"ports still accepting connections after the stack stopped: {listening}"
    remaining = {name: path for name, path in seen.paths.items() if path.exists()}
    assert not remaining, f"working directories left behind: {remaining}"
