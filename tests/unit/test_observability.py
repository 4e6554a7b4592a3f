"""The handler shape every step shares: event parsing, step-named errors, correlation id and the duration metric."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from msgspec import ValidationError
from release_steps.errors import ImageNotFoundError, InvalidInputError
from release_steps.messages import describe_every_field, describe_validation_error
from release_steps.models import Model, ReleaseInput, ReleaseState
from release_steps.observability import logger, parse_event, step

from tests.static import documents

NO_CONTEXT: Any = None  # the decorator never reads the Lambda context
EXECUTION_ID = "arn:aws:states:us-east-1:123456789012:execution:deployflow-release:release-2026-11-23-4"


class Point(Model):
    x: int
    y: int


@pytest.fixture(autouse=True)
def powertools_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "DeployflowTest")
    yield
    logger.remove_keys(["step"])
    logger.set_correlation_id(None)


def emitted_metrics(output: str) -> list[dict[str, Any]]:
    documents = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    return [d for d in documents if "_aws" in d]


# --- parse_event / describe_validation_error --------------------------------------------------------------------


def test_given_a_valid_event_when_parsed_then_the_model_is_returned() -> None:
    assert parse_event(Point, {"x": 1, "y": 2}) == Point(x=1, y=2)


@pytest.mark.parametrize(
    ("event", "json_type"), [([1, 2], "an array"), ("x=1", "a string"), (None, "null"), (42, "a number")]
)
def test_given_an_event_that_is_not_an_object_when_parsed_then_invalid_input_names_its_json_type(
    event: Any, json_type: str
) -> None:
    with pytest.raises(InvalidInputError) as raised:
        parse_event(Point, event)

    assert raised.value.message == f"invalid step input: expected a JSON object, got {json_type}"


class StrictPoint(Point, forbid_unknown_fields=True):
    pass


def test_given_500_long_unknown_keys_when_parsed_then_the_message_names_one_clipped_and_stays_bounded() -> None:
    event = {"x": 1, "y": 2, **{f"key{i}" + "k" * 300: i for i in range(500)}}

    with pytest.raises(InvalidInputError) as raised:
        parse_event(StrictPoint, event)

    message = raised.value.message
    assert len(message) <= 1000, len(message)
    assert message.startswith("invalid step input: key0kkk"), message
    assert "...(clipped): unknown field" in message, message


@pytest.mark.parametrize(
    ("event", "named"),
    [
        ({"request": {"services": ["a"], "dryRun": False}}, "request.imageTag: field required"),
        (
            {"request": {"imageTag": "t", "services": ["a"], "dryRun": False}, "execution": {"id": "x"}},
            "execution.name: field required",
        ),
        (
            {
                "request": {"imageTag": "t", "services": [1], "dryRun": False},
                "execution": {"id": "x", "name": "n", "startTime": "s", "stateMachineArn": "a"},
            },
            "request.services[0]: expected a string, got an integer",
        ),
        (
            {
                "request": {"imageTag": "t", "services": ["a"], "dryRun": False},
                "execution": {"id": "x", "name": "n", "startTime": "s", "stateMachineArn": "a"},
                "poll": {"migrationSeconds": "x", "servicesSeconds": 5},
            },
            "poll.migrationSeconds: expected an integer, got a string",
        ),
    ],
)
def test_given_a_state_with_a_wrong_nested_field_when_parsed_then_the_field_is_named_by_its_json_path(
    event: dict[str, Any], named: str
) -> None:
    with pytest.raises(InvalidInputError) as raised:
        parse_event(ReleaseState, event, "release state")

    assert raised.value.message == f"invalid release state: {named}"


def test_given_a_validation_error_when_described_then_one_line_names_the_field_and_reason() -> None:
    with pytest.raises(ValidationError) as raised:
        Point.load({"x": "one"})

    assert describe_validation_error(raised.value, "point") == "invalid point: x: expected an integer, got a string"


def _every_field(document: Any) -> str:
    with pytest.raises(ValidationError) as raised:
        ReleaseInput.load(document)
    return describe_every_field(ReleaseInput, document, raised.value, "execution input")


def test_given_an_input_wrong_in_five_fields_when_described_then_each_is_named_in_declaration_order() -> None:
    document = {"services": [], "dryRun": "yes", "idempotencyKey": "k" * 81, "dryrun": True}

    assert _every_field(document) == (
        "invalid execution input: imageTag: field required; services: expected an array of length >= 1; "
        "dryRun: expected a boolean, got a string; idempotencyKey: expected a string of length <= 80; "
        "dryrun: unknown field"
    )


def test_given_a_field_wrong_inside_when_described_then_its_json_path_is_named() -> None:
    assert _every_field({"imageTag": "t", "services": ["a", 2]}) == (
        "invalid execution input: services[1]: expected a string, got an integer"
    )


def test_given_300_unknown_keys_when_described_then_ten_are_named_and_the_line_stays_bounded() -> None:
    message = _every_field({"imageTag": "t", **{f"key{i}" + "k" * 300: i for i in range(300)}})

    assert len(message) <= 1000, len(message)
    assert message.startswith("invalid execution input: key0kkk"), message
    assert "...(clipped): unknown field" in message, message


def test_given_a_document_that_is_not_an_object_when_described_then_msgspec_first_error_is_the_line() -> None:
    assert _every_field(["t"]) == "invalid execution input: expected an object, got an array"


# --- step ---------------------------------------------------------------------------------------------------------


def test_given_a_handler_when_decorated_then_its_result_name_and_docstring_are_kept(capsys: Any) -> None:
    @step("Check migration image")
    def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        """Check migration image."""
        return {"echo": event["value"]}

    assert lambda_handler({"value": 7}, NO_CONTEXT) == {"echo": 7}
    assert lambda_handler.__name__ == "lambda_handler"
    assert lambda_handler.__doc__ == "Check migration image."


def test_given_a_step_error_when_raised_then_it_passes_unchanged_the_asl_names_the_step() -> None:
    original = ImageNotFoundError("image tag '1.2' not found in ECR repository 'm'")

    @step("Check migration image")
    def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        raise original

    with pytest.raises(ImageNotFoundError) as raised:
        lambda_handler({}, NO_CONTEXT)

    assert raised.value is original, "the class name is the ASL contract, the message the step's own"
    assert raised.value.message == "image tag '1.2' not found in ECR repository 'm'"


def test_given_an_unexpected_exception_when_raised_then_it_propagates_unchanged() -> None:
    boom = KeyError("taskArn")

    @step("Run migration task")
    def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        raise boom

    with pytest.raises(KeyError) as raised:
        lambda_handler({}, NO_CONTEXT)

    assert raised.value is boom


def test_given_an_event_with_an_execution_when_handled_then_the_execution_id_is_the_correlation_id() -> None:
    seen: list[str | None] = []

    @step("Restart services")
    def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        seen.append(logger.get_correlation_id())
        return {}

    lambda_handler({"execution": {"id": EXECUTION_ID}}, NO_CONTEXT)
    lambda_handler({"input": {"imageTag": "x"}}, NO_CONTEXT)

    assert seen == [EXECUTION_ID, None]


@pytest.mark.parametrize(("fails", "outcome"), [(False, "succeeded"), (True, "InvalidInputError")])
def test_given_a_step_when_it_ends_then_its_duration_metric_is_emitted_with_step_and_outcome(
    capsys: Any, fails: bool, outcome: str
) -> None:
    @step("Validate release request")
    def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        if fails:
            raise InvalidInputError("invalid execution input: imageTag: Field required")
        return {}

    if fails:
        with pytest.raises(InvalidInputError):
            lambda_handler({}, NO_CONTEXT)
    else:
        lambda_handler({}, NO_CONTEXT)

    [metric] = emitted_metrics(capsys.readouterr().out)
    assert metric["step"] == "Validate release request"
    assert metric["outcome"] == outcome
    assert metric["_aws"]["CloudWatchMetrics"][0]["Metrics"] == [{"Name": "StepDuration", "Unit": "Milliseconds"}]
    [duration] = metric["StepDuration"] if isinstance(metric["StepDuration"], list) else [metric["StepDuration"]]
    assert duration >= 0


# Every function's module, as template.yaml names it in its Handler (release_steps.<module>.lambda_handler).
STEP_MODULES = tuple(sorted(f["Handler"].split(".")[1] for f in documents.functions().values()))


def imported_in_lambda(module: str, probe: str) -> Any:
    """Import ``release_steps.<module>`` in a fresh interpreter as Lambda's init does (tracing on), then print the
    JSON of ``probe``'s value."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(root / "functions"),
        "PYTHONDONTWRITEBYTECODE": "1",
        "LAMBDA_TASK_ROOT": str(root / "functions"),  # what makes Powertools trace: "running in Lambda"
        "AWS_REGION": "us-east-1",
    }
    code = f"import release_steps.{module}\nimport json, sys\nprint(json.dumps({probe}))"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.splitlines()[-1])


@pytest.mark.parametrize("module", STEP_MODULES)
def test_given_tracing_on_in_lambda_when_a_step_is_imported_then_it_patches_only_what_it_uses(module: str) -> None:
    patched = imported_in_lambda(
        module, "sorted(__import__('aws_xray_sdk.core.patcher').core.patcher._PATCHED_MODULES)"
    )
    assert patched == (["botocore", "psycopg2"] if module == "verify_schema" else ["botocore"])


# What a step's cold start loads only in the steps that use it (benchmarks/cold_start.py: every step within 1.5x a
# bare boto3 import); asyncio comes with confluent_kafka's serdes (wrapt 2 and pydantic-settings would bring it to
# every step: about +10 and +40 ms of each cold start here).
ONLY_IN = {
    "confluent_kafka": {"create_topics"},
    "asyncio": {"create_topics"},
    "psycopg2": {"verify_schema"},
    # Every step's settings are dbmigrate.envsettings models (standard library only); the runner and the schema
    # comparison are Verify schema's alone.
    "dbmigrate.verify": {"verify_schema"},
}
# Never at init: the SQL parser (dbmigrate splits SQL only to migrate), Powertools' parser package (steps validate
# with the model itself), Powertools parameters (the one secret reader is dbmigrate.aws_secrets), and pydantic (the
# models are msgspec Structs: pydantic's import and model classes were most of a cold start).
NEVER = (
    "pglast",
    "aws_lambda_powertools.utilities.parser",
    "aws_lambda_powertools.utilities.parameters",
    "pydantic",
)


@pytest.mark.parametrize("module", STEP_MODULES)
def test_given_a_step_when_imported_as_lambda_init_does_then_it_loads_only_what_it_uses(module: str) -> None:
    names = [*ONLY_IN, *NEVER]
    loaded = set(imported_in_lambda(module, f"[m for m in {names!r} if m in sys.modules]"))
    unexpected = {name for name, steps in ONLY_IN.items() if module not in steps} | set(NEVER)
    assert not loaded & unexpected, f"release_steps.{module} imports {sorted(loaded & unexpected)} at init"
    assert loaded >= {name for name, steps in ONLY_IN.items() if module in steps}, "the probe must see what it uses"
