"""Every events/ file (for `sam local invoke -e`) belongs to a function of the template and parses through the
input model of that function's handler; every function has one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from release_steps import lock_on_end, models, notify_stopped

from tests.static.documents import ROOT, template

EVENTS_DIR = ROOT / "events"

# Each handler module and the model its lambda_handler parses (the contract table of the step package).
INPUT_MODELS: dict[str, type[models.Model]] = {
    "prepare": models.PrepareEvent,
    "check_image": models.ReleaseState,
    "run_migration": models.ImageStepInput,
    "check_migration": models.MigrationStepInput,
    "verify_schema": models.ReleaseState,
    "create_topics": models.ReleaseState,
    "restart_services": models.ReleaseState,
    "check_services": models.RolloutStepInput,
    "record": models.RecordStepInput,
    "summarize_failure": models.SummarizeFailureInput,
    "notify_stopped": notify_stopped.ExecutionStatusChangeEvent,
    "lock_on_end": lock_on_end.ExecutionStatusChange,
}


def _handler_modules() -> set[str]:
    handlers = {
        str(resource["Properties"]["Handler"])
        for resource in template()["Resources"].values()
        if resource.get("Type") == "AWS::Serverless::Function"
    }
    return {handler.split(".")[1] for handler in handlers}


def _event_files() -> list[Path]:
    return sorted(EVENTS_DIR.glob("*.json"))


def test_given_the_template_then_every_function_has_an_input_model_and_an_event_file() -> None:
    modules = _handler_modules()
    assert modules == set(INPUT_MODELS), f"handler modules {sorted(modules)} vs models {sorted(INPUT_MODELS)}"
    covered = {path.stem.split("-")[0] for path in _event_files()}
    assert modules <= covered, f"functions without an events/ file: {sorted(modules - covered)}"


@pytest.mark.parametrize("path", _event_files(), ids=lambda p: p.name)
def test_given_an_event_file_then_it_parses_through_its_handler_s_model(path: Path) -> None:
    module = path.stem.split("-")[0]
    assert module in INPUT_MODELS, f"{path.name}: no function module named {module!r} (name events <module>[-x].json)"
    event = json.loads(path.read_text(encoding="utf-8"))
    INPUT_MODELS[module].load(event)  # raises, naming the field, when the file drifts from the model
