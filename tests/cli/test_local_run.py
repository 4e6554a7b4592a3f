"""``deployflow local run`` as a subprocess: it starts its own local stack (PostgreSQL, Kafka, moto) and stops it."""

from __future__ import annotations

import json
import signal
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.cli.conftest import REPO_ROOT, base_environment, cli_command

RUN_TIMEOUT_SECONDS = 240.0


def run_local(args: list[str]) -> tuple[int, str, str]:
    """Run ``deployflow local run ARGS``; past the timeout it gets SIGTERM (so it stops its PostgreSQL and Kafka)."""
    process = subprocess.Popen(
        cli_command(["local", "run", *args]),
        env=base_environment(),
        cwd=REPO_ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
    )
    try:
        stdout, stderr = process.communicate(timeout=RUN_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGTERM)
        try:
            stdout, stderr = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            stdout, stderr = process.communicate()
        pytest.fail(f"deployflow local run {args} still running after {RUN_TIMEOUT_SECONDS}s:\n{stderr[-4000:]}")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return process.returncode, stdout, stderr


def test_given_the_dry_run_scenario_when_run_with_json_then_exit_0_and_the_document_says_as_expected(
    tmp_path: Path,
) -> None:
    picture = tmp_path / "path.svg"
    returncode, stdout, stderr = run_local(["--scenario", "dry-run", "--json", "--render-path", str(picture)])

    explain = f"exit {returncode}\n--- stdout ---\n{stdout[-4000:]}\n--- stderr ---\n{stderr[-4000:]}"
    assert returncode == 0, explain
    try:
        document = json.loads(stdout)
    except ValueError:
        pytest.fail(f"stdout is not one JSON document:\n{explain}")
    assert document["scenario"] == "dry-run", explain
    assert document["asExpected"] is True, explain
    failed_checks = [c for c in document["checks"] if not c["ok"]]
    assert not failed_checks, f"checks that did not hold: {failed_checks}"
    [execution] = document["executions"]
    assert execution["status"] == "SUCCEEDED", explain
    assert execution["record"]["outcome"] == "dry-run", explain
    assert execution["path"][:2] == ["Receive release request", "Validate release request"], explain
    assert "▶ Validate release request" in stderr, "progress belongs on stderr with --json"
    assert "scenario dry-run: as expected" in stderr, explain
    # --render-path: the executed path drawn on the workflow, every state entered marked as visited.
    root = ET.fromstring(picture.read_text(encoding="utf-8"))  # noqa: S314 - dot's output for our own graph
    visited = {
        g.get("id") for g in root.iter("{http://www.w3.org/2000/svg}g") if "visited" in g.get("class", "").split()
    }
    assert visited == set(execution["path"]), explain
