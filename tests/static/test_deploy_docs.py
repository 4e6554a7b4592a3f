"""docs/deploy.md's migration task definition examples: embedded verbatim, valid RegisterTaskDefinition input."""

from __future__ import annotations

import re

import boto3
import pytest
from botocore.validate import ParamValidator

from deployflow.local.task_definitions import EXAMPLES, EXAMPLES_DIR, migration_task_definition, placeholders
from tests.static import documents as docs

DEPLOY_MD = docs.ROOT / "docs" / "deploy.md"
RUNNER_VARIABLES = {"DB_HOST", "DB_PORT", "DB_NAME", "DB_SSLMODE", "DB_USER", "DB_PASSWORD"}


@pytest.mark.parametrize("kind", sorted(EXAMPLES))
def test_given_an_example_then_deploy_md_shows_the_file_itself(kind: str) -> None:
    name = EXAMPLES[kind]
    text = DEPLOY_MD.read_text(encoding="utf-8")
    match = re.search(rf"<!-- example: {re.escape(name)} -->\n```json\n(.*?)```", text, re.DOTALL)

    assert match, f"docs/deploy.md does not embed {name}"
    assert match.group(1) == (EXAMPLES_DIR / name).read_text(encoding="utf-8"), f"{name} and docs/deploy.md differ"


@pytest.mark.parametrize("kind", sorted(EXAMPLES))
def test_given_an_example_filled_in_then_it_is_valid_register_task_definition_input(kind: str) -> None:
    values = {name: "1" if name == "DB_PORT" else f"x-{name.lower()}" for name in placeholders(kind)}  # type: ignore[arg-type]
    definition = migration_task_definition(kind, values)  # type: ignore[arg-type]
    shape = (
        boto3.client("ecs", region_name="us-east-1")
        .meta.service_model.operation_model("RegisterTaskDefinition")
        .input_shape
    )

    assert shape is not None
    report = ParamValidator().validate(definition, shape)

    assert not report.has_errors(), report.generate_report()
    [container] = definition["containerDefinitions"]
    named = {e["name"] for e in container["environment"]} | {s["name"] for s in container["secrets"]}
    assert named == RUNNER_VARIABLES
    assert container["command"] == ["migrate"]
    assert container["logConfiguration"]["options"]["awslogs-stream-prefix"], "the log tail needs a stream prefix"
