"""docs/runbook.md keeps up with the error contract: every error a release can end with has its own entry."""

from __future__ import annotations

import re

from release_steps.errors import terminal_error_names, transient_error_names
from release_steps.record import NEXT_STEPS

from tests.static import documents as docs

RUNBOOK_PATH = docs.ROOT / "docs" / "runbook.md"
# Raised by Step Functions or Lambda rather than by a step; the runbook must say what to do about each.
PLATFORM_ERRORS = {
    "States.Timeout",
    "States.TaskFailed",
    "States.Runtime",
    "Sandbox.Timedout",
    *docs.LAMBDA_ERRORS,
}


def entry_headings() -> list[str]:
    """The text of every level-4 heading (one entry per error, several names may share one)."""
    return re.findall(r"(?m)^#### (.+)$", RUNBOOK_PATH.read_text(encoding="utf-8"))


def covered_names() -> set[str]:
    return {name for heading in entry_headings() for name in re.findall(r"[A-Za-z]+(?:\.[A-Za-z]+)?", heading)}


def test_given_the_runbook_then_every_terminal_error_has_an_entry() -> None:
    missing = set(terminal_error_names()) - covered_names()
    assert missing == set(), f"docs/runbook.md has no '#### <name>' entry for: {sorted(missing)}"


def test_given_the_runbook_then_every_transient_error_has_an_entry_for_when_its_retries_run_out() -> None:
    missing = set(transient_error_names()) - covered_names()
    assert missing == set(), f"docs/runbook.md has no '#### <name>' entry for: {sorted(missing)}"


def test_given_the_runbook_then_step_functions_and_lambda_errors_have_entries() -> None:
    missing = PLATFORM_ERRORS - covered_names()
    assert missing == set(), f"docs/runbook.md has no '#### <name>' entry for: {sorted(missing)}"


def test_given_the_failure_hints_then_each_hinted_error_is_in_the_runbook() -> None:
    missing = set(NEXT_STEPS) - covered_names()
    assert missing == set(), f"record.NEXT_STEPS hints errors the runbook does not explain: {sorted(missing)}"


def test_given_the_runbook_then_no_error_has_two_entries() -> None:
    names = [name for heading in entry_headings() for name in re.findall(r"[A-Za-z]+Error\b", heading)]
    repeated = sorted({name for name in names if names.count(name) > 1})
    assert repeated == [], f"errors with more than one entry: {repeated}"


EVERY_STEP = frozenset({"InvalidInputError", "ConfigurationError"})


def raising_states() -> dict[str, list[str]]:
    """Per terminal error, the Lambda states whose Catch takes it (the ASL is the source), in workflow order."""
    found: dict[str, list[str]] = {}
    for name, state in docs.lambda_tasks().items():
        for error in docs.catch_names(state):
            if error in terminal_error_names():
                found.setdefault(error, []).append(name)
    return found


def _expected_cell(error: str, states: list[str]) -> str:
    return "every step" if error in EVERY_STEP else ", ".join(states)


def test_given_the_readme_error_table_then_each_terminal_error_lists_the_states_that_raise_it() -> None:
    readme = (docs.ROOT / "README.md").read_text(encoding="utf-8")
    table = dict(re.findall(r"(?m)^\| `([A-Za-z]+Error)` \| (.+?) \|$", readme))
    expected = {error: _expected_cell(error, states) for error, states in raising_states().items()}
    assert table == expected


def test_given_the_runbook_then_each_terminal_error_entry_says_where_it_is_raised() -> None:
    text = RUNBOOK_PATH.read_text(encoding="utf-8")
    for error, states in raising_states().items():
        match = re.search(rf"(?m)^#### {error}\n- Raised at: (.+)\.$", text)
        assert match, f"docs/runbook.md: the {error} entry must start with '- Raised at: ...'"
        assert match.group(1) == _expected_cell(error, states), error
