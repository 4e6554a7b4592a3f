"""The ASL is the one source of the states' names: every name written elsewhere in the product is proven equal here.

Where code needs a state's name and cannot read the ASL at run time (a Lambda handler: statemachine/ is not in its
asset; the CLI's wheel: neither), it keeps a constant and a test below proves it equals the ASL. Anything else (the
local stack's scenarios) derives the name from the ASL. A scan of functions/ and deployflow/ fails on any other
string that is a state's name.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

from deployflow import render
from tests.static import documents as docs

PRODUCT_DIRS = (docs.ROOT / "functions", docs.ROOT / "deployflow")


def _asl_loops() -> dict[str, tuple[str, str, str]]:
    """The ASL's wait loops by the part of the state their check writes: part -> (Choice, Wait, Check).

    A loop is a Wait whose Next is a Task whose Next is a Choice that can go back to the Wait; the part is the
    Task's ResultPath (``$.migration``), where its deadline lives."""
    states = docs.states()
    loops = {}
    for wait, state in states.items():
        if state["Type"] != "Wait":
            continue
        check = str(state["Next"])
        choice = str(states[check].get("Next", ""))
        if states[check]["Type"] != "Task" or states.get(choice, {}).get("Type") != "Choice":
            continue
        if wait in docs.transitions(states[choice], with_catch=False):
            part = str(states[check]["ResultPath"]).removeprefix("$.")
            loops[part] = (choice, wait, check)
    return loops


def test_given_the_asl_then_it_has_the_two_wait_loops_the_tools_draw() -> None:
    assert set(_asl_loops()) == {"migration", "rollout"}, _asl_loops()


def test_given_the_renderer_then_its_loop_states_are_the_asl_s_checks_with_their_parts() -> None:
    expected = {check: part for part, (_, _, check) in _asl_loops().items()}
    assert expected == render._LOOP_STATES, "deployflow/render.py _LOOP_STATES must be the ASL's wait-loop checks"


def test_given_the_workflow_tests_then_their_loop_table_is_the_asl_s() -> None:
    from tests.workflow import support

    loops = _asl_loops()
    assert {"migration": loops["migration"], "services": loops["rollout"]} == support.LOOPS


def _step_name(module_name: str) -> str:
    module = importlib.import_module(module_name)
    names = [getattr(module, attr) for attr in ("STEP_NAME", "STATE_NAME") if hasattr(module, attr)]
    assert len(names) == 1, f"{module_name}: one STEP_NAME (or STATE_NAME), found {names}"
    return str(names[0])


@pytest.mark.parametrize("state", sorted(docs.task_functions()))
def test_given_a_lambda_task_then_its_handler_names_itself_after_that_state(state: str) -> None:
    function = docs.functions()[docs.task_functions()[state]]
    module = docs.handler_module(function)
    assert _step_name(module) == state, f"{module}: its step name (logs, metrics, idempotency tokens) is not {state!r}"


def test_given_a_function_no_state_invokes_then_its_name_is_no_state_s() -> None:
    invoked = set(docs.task_functions().values())
    for logical_id, function in docs.functions().items():
        if logical_id not in invoked:
            name = _step_name(docs.handler_module(function))
            assert name not in docs.states(), f"{logical_id} runs outside the state machine but is named {name!r}"


def _state_name_literals(path: Path) -> set[str]:
    states = set(docs.states())
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and n.value in states}


def test_given_the_product_code_then_a_state_name_is_written_only_where_a_test_above_proves_it() -> None:
    proven: dict[str, set[str]] = {"deployflow/render.py": set(render._LOOP_STATES)}
    for state, logical_id in docs.task_functions().items():
        module = docs.handler_module(docs.functions()[logical_id])
        proven.setdefault(str(docs.module_path(module).relative_to(docs.ROOT)), set()).add(state)
    found = {
        str(path.relative_to(docs.ROOT)): names
        for root in PRODUCT_DIRS
        for path in sorted(root.rglob("*.py"))
        if (names := _state_name_literals(path))
    }
    unproven = {path: sorted(names - proven.get(path, set())) for path, names in found.items()}
    unproven = {path: names for path, names in unproven.items() if names}
    assert not unproven, f"state names written outside the ASL, unproven (derive them from the ASL): {unproven}"
