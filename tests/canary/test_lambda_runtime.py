"""Canary: the emulator-backed Lambda seam (aws-lambda-rie + awslambdaric) behaves as the Lambda service does.

A timeout, an exception, a crashed runtime and an out-of-memory kill each come back as the Invoke API reports them,
and a Step Functions Task sees the same error names (README, "Lambda errors").
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest

from deployflow.local.aws import LocalAws, LocalAwsConfig, create_function
from deployflow.local.lambda_runtime import MemoryLimits, find_interpreter
from tests.canary.conftest import run_definition


@pytest.fixture
def emulator_aws(moto_server: LocalAws) -> LocalAws:
    assert moto_server.lambdas.runtime == "emulator", "the server mode's default runtime is the emulator"
    return moto_server


def _deploy(aws: LocalAws, name: str, handler: str, *, timeout: int = 30, memory: int = 256) -> str:
    return create_function(aws, name, f"tests.canary.handlers.{handler}", timeout=timeout, memory=memory)


def _invoke(aws: LocalAws, name: str, event: Any) -> tuple[dict[str, Any], Any]:
    response = aws.client("lambda").invoke(FunctionName=name, Payload=json.dumps(event))
    return response, json.loads(response["Payload"].read())


def test_given_a_handler_sleeping_past_its_timeout_when_a_task_runs_it_then_the_task_fails_with_sandbox_timedout(
    emulator_aws: LocalAws,
) -> None:
    arn = _deploy(emulator_aws, "sleeper", "sleeper", timeout=1)
    # Warm the runtime first: on a fresh machine the first call also builds the functions' virtualenv, and Lambda
    # does not count the init phase against the function's Timeout either.
    _, warm = _invoke(emulator_aws, "sleeper", {"seconds": 0})
    assert warm == {"slept": 0}, warm
    # The terminal error a workflow catches must not catch a timeout: it is not one of its own errors.
    catch = [{"ErrorEquals": ["ImageMissingError"], "Next": "Caught"}]
    definition = {
        "StartAt": "Sleep",
        "States": {
            "Sleep": {"Type": "Task", "Resource": arn, "Catch": catch, "End": True},
            "Caught": {"Type": "Succeed"},
        },
    }

    started = time.monotonic()
    run = run_definition(emulator_aws, definition, {"seconds": 5})
    elapsed = time.monotonic() - started

    assert run.status == "FAILED", run.explain()
    assert run.description["error"] == "Sandbox.Timedout", run.explain()
    assert "Task timed out after 1.00 seconds" in run.description["cause"]
    assert not [e for e in run.events if e["type"] == "SucceedStateEntered"], "the timeout was caught as terminal"
    assert elapsed < 4.5, f"the Timeout (1 s) was not enforced: the task took {elapsed:.1f}s"

    # The runtime was killed and comes back for the next call, as Lambda re-initialises an environment.
    response, payload = _invoke(emulator_aws, "sleeper", {"seconds": 0})
    assert "FunctionError" not in response, payload
    assert payload == {"slept": 0}


def test_given_a_handler_that_raises_when_invoked_then_its_class_name_is_the_error_type(
    emulator_aws: LocalAws,
) -> None:
    _deploy(emulator_aws, "fail", "fail")

    response, payload = _invoke(emulator_aws, "fail", {"error": "DatabaseNotReadyError", "message": "not yet"})

    assert response["FunctionError"] == "Unhandled"
    assert payload["errorType"] == "DatabaseNotReadyError"
    assert payload["errorMessage"] == "not yet"
    assert any("in fail" in frame for frame in payload["stackTrace"]), payload


def test_given_a_handler_that_exits_the_process_when_invoked_then_the_runtime_exit_error_is_reported(
    emulator_aws: LocalAws,
) -> None:
    arn = _deploy(emulator_aws, "exiter", "exiter")

    response, payload = _invoke(emulator_aws, "exiter", {"status": 3})
    run = run_definition(
        emulator_aws, {"StartAt": "Exit", "States": {"Exit": {"Type": "Task", "Resource": arn, "End": True}}}, {}
    )

    assert response["FunctionError"] == "Unhandled"
    assert payload["errorType"] == "Runtime.ExitError", payload
    assert "exit status 3" in payload["errorMessage"]
    assert run.description.get("error") == "Runtime.ExitError", run.explain()


def test_given_a_handler_allocating_past_its_memory_size_when_invoked_then_it_is_killed_out_of_memory(
    emulator_aws: LocalAws,
) -> None:
    limits = MemoryLimits()
    if not limits.enforced:
        pytest.skip(f"memory cannot be enforced on this machine: {limits.reason}")
    _deploy(emulator_aws, "allocator", "allocator", memory=128)

    small_response, small = _invoke(emulator_aws, "allocator", {"megabytes": 16})
    response, payload = _invoke(emulator_aws, "allocator", {"megabytes": 400})

    assert "FunctionError" not in small_response, small
    assert response["FunctionError"] == "Unhandled"
    assert payload["errorType"] == "Runtime.OutOfMemory", payload


def test_given_one_function_when_invoked_twice_then_the_same_warm_runtime_process_answers_on_the_template_python(
    emulator_aws: LocalAws,
) -> None:
    _deploy(emulator_aws, "whoami", "whoami", memory=192)

    _, first = _invoke(emulator_aws, "whoami", {})
    _, second = _invoke(emulator_aws, "whoami", {})

    assert first["pid"] == second["pid"], "a warm invocation started a new runtime process"
    assert first["memory"] == "192", "awslambdaric gives memory_limit_in_mb as the variable's string, as on AWS"
    interpreter = find_interpreter("python3.13")
    assert first["python"] == interpreter.version
    if interpreter.exact:
        assert first["python"].startswith("3.13."), first


def test_given_two_functions_when_invoked_at_once_then_they_run_concurrently_and_one_function_serializes(
    emulator_aws: LocalAws,
) -> None:
    _deploy(emulator_aws, "sleeper-a", "sleeper")
    _deploy(emulator_aws, "sleeper-b", "sleeper")
    for name in ("sleeper-a", "sleeper-b"):  # warm both, so cold starts do not blur the timing
        _invoke(emulator_aws, name, {"seconds": 0})
    results: dict[str, Any] = {}

    def call(key: str, name: str) -> None:
        results[key] = _invoke(emulator_aws, name, {"seconds": 1})[1]

    started = time.monotonic()
    threads = [threading.Thread(target=call, args=(k, n)) for k, n in (("a", "sleeper-a"), ("b", "sleeper-b"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    two_functions = time.monotonic() - started

    started = time.monotonic()
    threads = [threading.Thread(target=call, args=(k, "sleeper-a")) for k in ("c", "d")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    one_function = time.monotonic() - started

    assert all(r == {"slept": 1} for r in results.values()), results
    assert two_functions < 1.9, f"two functions did not run concurrently ({two_functions:.2f}s for 2 x 1 s)"
    assert one_function >= 2.0, f"one function's process was invoked concurrently ({one_function:.2f}s)"


def test_given_the_emulator_seam_when_the_aws_stops_then_no_runtime_process_is_left(
    aws_credentials: None, local_aws_config: LocalAwsConfig
) -> None:
    from tests.workflow.support import alive

    with LocalAws(local_aws_config, mode="server") as aws:
        _deploy(aws, "whoami", "whoami")
        _, payload = _invoke(aws, "whoami", {})
        assert aws.lambdas.pool is not None
        pids = {**aws.lambdas.pool.pids(), "runtime": payload["pid"]}
        assert all(alive(pid) for pid in pids.values()), pids

    left = {name: pid for name, pid in pids.items() if alive(pid)}
    assert not left, f"runtime processes left after the stack stopped: {left}"
