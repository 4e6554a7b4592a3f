"""The workflow diagram: drawn from the real ASL; well-formed, complete, deterministic, current; shows a path."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from release_steps.errors import terminal_error_names

from deployflow.diagram import REPO_ROOT, catch_label, load_definition, render_file, render_svg

ASL = REPO_ROOT / "statemachine" / "deploy.asl.json"
CHECKED_IN = REPO_ROOT / "docs" / "workflow.svg"
NS = {"svg": "http://www.w3.org/2000/svg"}
SVG = "{http://www.w3.org/2000/svg}"

# A release that polls the migration twice, then fails verifying the schema.
FAILED_PATH = [
    "Validate release request",
    "Check migration image",
    "Run migration task",
    "Migration task finished?",
    "Wait for migration task",
    "Check migration task",
    "Migration task finished?",
    "Wait for migration task",
    "Check migration task",
    "Migration task finished?",
    "Verify schema",
    "Summarize failure",
    "Notify failure",
    "Release failed",
]


@pytest.fixture(scope="module")
def definition() -> dict[str, Any]:
    return load_definition(ASL)


@pytest.fixture(scope="module")
def plain(definition: dict[str, Any]) -> ET.Element:
    return _parse(render_svg(definition))


def _parse(text: str) -> ET.Element:
    """The SVG as a tree; raises on anything that is not well-formed XML."""
    return ET.fromstring(text)  # noqa: S314 - our own renderer's output


def _classes(element: ET.Element) -> list[str]:
    return element.get("class", "").split()


def _nodes(root: ET.Element) -> dict[str, ET.Element]:
    found: dict[str, ET.Element] = {}
    for group in root.iter(f"{SVG}g"):
        if "node" in _classes(group):
            name = group.get("data-state", "")
            assert name not in found, f"state {name!r} drawn twice"
            found[name] = group
    return found


def _edges(root: ET.Element) -> list[ET.Element]:
    return [g for g in root.iter(f"{SVG}g") if "edge" in _classes(g)]


def _edge_key(group: ET.Element) -> tuple[str, str, str]:
    kinds = [c for c in _classes(group) if c in ("next", "default", "choice", "catch")]
    assert len(kinds) == 1, f"edge {group.get('data-from')} -> {group.get('data-to')} has kinds {kinds}"
    return group.get("data-from", ""), group.get("data-to", ""), kinds[0]


def _texts(group: ET.Element) -> list[str]:
    return [t.text or "" for t in group.iter(f"{SVG}text")]


def _box(group: ET.Element) -> tuple[float, float, float, float]:
    """left, top, right, bottom of a node's outline."""
    shape = next(e for e in group if e.tag in (f"{SVG}rect", f"{SVG}polygon"))
    if shape.tag == f"{SVG}polygon":
        points = [tuple(float(v) for v in p.split(",")) for p in shape.get("points", "").split()]
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        return min(xs), min(ys), max(xs), max(ys)
    x, y = float(shape.get("x", "0")), float(shape.get("y", "0"))
    return x, y, x + float(shape.get("width", "0")), y + float(shape.get("height", "0"))


def _expected_edges(definition: dict[str, Any]) -> set[tuple[str, str, str]]:
    """Every transition the ASL declares, read straight from the document."""
    expected: set[tuple[str, str, str]] = set()
    for name, state in definition["States"].items():
        if "Next" in state:
            expected.add((name, state["Next"], "next"))
        if "Default" in state:
            expected.add((name, state["Default"], "default"))
        for rule in state.get("Choices", []):
            expected.add((name, rule["Next"], "choice"))
        for catcher in state.get("Catch", []):
            expected.add((name, catcher["Next"], "catch"))
    return expected


# --- the plain diagram ----------------------------------------------------------------------------------------


def test_given_the_asl_when_rendered_then_the_svg_is_well_formed_with_fixed_width_and_sans_serif(
    definition: dict[str, Any],
) -> None:
    text = render_svg(definition)
    root = _parse(text)
    assert root.tag == f"{SVG}svg"
    assert root.get("width") == "1000", f"the width is fixed, got {root.get('width')}"
    assert root.get("viewBox") == f"0 0 1000 {root.get('height')}"
    assert root.get("font-family") == "sans-serif"
    assert text.endswith("</svg>\n")


def test_given_the_asl_when_rendered_then_one_node_per_state_carrying_its_name(
    definition: dict[str, Any], plain: ET.Element
) -> None:
    nodes = _nodes(plain)
    assert list(nodes) == list(definition["States"]), "one node per ASL state, in definition order"
    for name, group in nodes.items():
        assert name in _texts(group), f"node {name!r} does not show its name; texts: {_texts(group)}"
        assert state_type(definition, name).lower() in _classes(group)


def state_type(definition: dict[str, Any], name: str) -> str:
    return str(definition["States"][name]["Type"])


def test_given_the_asl_when_rendered_then_one_edge_per_next_default_choice_and_catch_target(
    definition: dict[str, Any], plain: ET.Element
) -> None:
    drawn = [_edge_key(g) for g in _edges(plain)]
    duplicates = [key for key, count in Counter(drawn).items() if count > 1]
    assert not duplicates, f"edges drawn twice: {duplicates}"
    expected = _expected_edges(definition)
    assert set(drawn) == expected, (
        f"missing: {sorted(expected - set(drawn))}; unexpected: {sorted(set(drawn) - expected)}"
    )


def test_given_catch_edges_when_rendered_then_they_alone_are_dashed(plain: ET.Element) -> None:
    for group in _edges(plain):
        src, dst, kind = _edge_key(group)
        dashed = [p.get("stroke-dasharray") is not None for p in group.iter(f"{SVG}path")]
        assert dashed, f"edge {src} -> {dst} has no path"
        if kind == "catch":
            assert all(dashed), f"Catch edge {src} -> {dst} is not dashed"
        else:
            assert not any(dashed), f"{kind} edge {src} -> {dst} is dashed like a Catch"


def test_given_a_wait_loop_when_rendered_then_the_choice_branches_say_done_and_not_done(plain: ET.Element) -> None:
    labels = {(_edge_key(g)[0], _edge_key(g)[1]): _texts(g) for g in _edges(plain)}
    assert labels[("Migration task finished?", "Verify schema")] == ["done"]
    assert labels[("Migration task finished?", "Wait for migration task")] == ["not done"]
    assert labels[("Services rolled out?", "Build deployment record")] == ["done"]
    assert labels[("Services rolled out?", "Wait for services")] == ["not done"]


def test_given_the_release_asl_when_rendered_then_the_error_bus_says_it_carries_the_terminal_errors(
    plain: ET.Element,
) -> None:
    [bus] = [g for g in plain.iter(f"{SVG}g") if "bus" in _classes(g)]
    assert _texts(bus) == ["Catch terminal errors \u2192 Summarize failure"]
    titles = [
        group.findtext("svg:title", default="", namespaces=NS)
        for group in _edges(plain)
        if _edge_key(group)[1:] == ("Summarize failure", "catch")
    ]
    assert len(titles) == 9, f"one Catch edge per step into Summarize failure, got {len(titles)}"
    assert all(title.endswith("(catch: terminal errors)") for title in titles), titles


@pytest.mark.parametrize(
    ("errors", "label"),
    [
        (["States.ALL"], "States.ALL"),
        (["States.Timeout", "States.TaskFailed"], "States.Timeout, States.TaskFailed"),
        (terminal_error_names(), "terminal errors"),
        (list(reversed(terminal_error_names())), "terminal errors"),
        (terminal_error_names()[1:], f"{len(terminal_error_names()) - 1} errors"),
    ],
)
def test_given_a_catch_when_labelled_then_a_short_list_is_named_and_the_terminal_set_is_called_so(
    errors: list[str], label: str
) -> None:
    assert catch_label(errors) == label


def test_given_tasks_with_retries_when_rendered_then_each_names_its_retried_errors(
    definition: dict[str, Any], plain: ET.Element
) -> None:
    nodes = _nodes(plain)
    for name, state in definition["States"].items():
        if state["Type"] != "Task":
            continue
        shown = " ".join(_texts(nodes[name]))
        tooltip = nodes[name].findtext("svg:title", default="", namespaces=NS)
        for retrier in state.get("Retry", []):
            for error in retrier["ErrorEquals"]:
                assert error in tooltip, f"{name}: retried {error} missing from the tooltip"
                short = "Lambda.*" if error.startswith("Lambda.") else error
                assert short in shown, f"{name}: retried {error} not shown in the box ({shown!r})"


def test_given_the_asl_when_laid_out_then_happy_path_descends_loops_sit_beside_and_failures_in_a_side_column(
    plain: ET.Element,
) -> None:
    boxes = {name: _box(group) for name, group in _nodes(plain).items()}
    spine = [
        "Validate release request",
        "Check migration image",
        "Run migration task",
        "Migration task finished?",
        "Verify schema",
        "Create Kafka topics",
        "Restart services",
        "Services rolled out?",
        "Build deployment record",
        "Notify success",
        "Return deployment record",
        "Release succeeded",
    ]
    tops = [boxes[name][1] for name in spine]
    assert tops == sorted(tops), f"happy path not top to bottom: {tops}"
    assert len(set(tops)) == len(tops), f"two happy-path states share a row: {tops}"
    centres = {(boxes[name][0] + boxes[name][2]) / 2 for name in spine}
    assert len(centres) == 1, f"happy path not in one column: {centres}"
    spine_right = max(boxes[name][2] for name in spine)
    for choice, wait, check in (
        ("Migration task finished?", "Wait for migration task", "Check migration task"),
        ("Services rolled out?", "Wait for services", "Check services"),
    ):
        assert boxes[wait][0] > spine_right, f"{wait} is not beside the happy path"
        assert boxes[wait][1] < boxes[check][1], f"{wait} is not above {check}"
        level = (boxes[choice][1] + boxes[choice][3]) / 2 == (boxes[wait][1] + boxes[wait][3]) / 2
        assert level, f"{wait} is not level with {choice}"
    loop_right = max(boxes[name][2] for name in ("Wait for migration task", "Check migration task"))
    for name in ("Summarize failure", "Notify failure", "Notify failure (raw)", "Release failed"):
        assert boxes[name][0] > loop_right, f"{name} is not in the side column"
    assert boxes["Summarize failure"][1] < boxes["Notify failure"][1] < boxes["Release failed"][1]


def test_given_a_wait_loop_when_rendered_then_the_check_goes_back_up_to_the_choice(plain: ET.Element) -> None:
    boxes = {name: _box(group) for name, group in _nodes(plain).items()}
    back = next(
        g for g in _edges(plain) if _edge_key(g) == ("Check migration task", "Migration task finished?", "next")
    )
    d = next(back.iter(f"{SVG}path")).get("d", "")
    end_x, end_y = (float(v) for v in d.split("L")[-1].split(","))
    choice = boxes["Migration task finished?"]
    assert end_y == choice[1], f"back edge ends at y={end_y}, not on top of the Choice ({choice[1]})"
    assert choice[0] < end_x < choice[2]
    ys = [float(point.split(",")[1]) for point in d.removeprefix("M").split(" L")]
    assert min(ys) < choice[1], "the back edge does not rise above the Choice"


def test_given_the_same_definition_when_rendered_twice_then_the_bytes_are_identical(
    definition: dict[str, Any],
) -> None:
    first = render_svg(definition, FAILED_PATH, "Verify schema")
    second = render_svg(copy.deepcopy(definition), list(FAILED_PATH), "Verify schema")
    assert first == second
    assert render_svg(definition) == render_svg(json.loads(json.dumps(definition)))


def test_given_the_checked_in_diagram_when_compared_with_a_fresh_render_then_it_is_current() -> None:
    assert CHECKED_IN.is_file(), "docs/workflow.svg is missing: run make diagram"
    assert CHECKED_IN.read_text(encoding="utf-8") == render_file(ASL), "docs/workflow.svg is stale: run make diagram"


# --- the command line -----------------------------------------------------------------------------------------


def _cli(*args: str | Path, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "deployflow.diagram", *map(str, args)]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=60, check=False)


def test_given_the_repository_when_checked_then_the_cli_says_up_to_date() -> None:
    result = _cli("--check")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "docs/workflow.svg is up to date"


def test_given_a_stale_or_missing_file_when_checked_then_exit_1_names_the_command(tmp_path: Path) -> None:
    target = tmp_path / "workflow.svg"
    missing = _cli("--check", "--output", target, cwd=tmp_path)
    assert (missing.returncode, missing.stderr.strip()) == (1, "workflow.svg is missing: run make diagram")

    written = _cli("--output", target, cwd=tmp_path)
    assert written.returncode == 0, written.stderr
    assert target.read_text(encoding="utf-8") == render_file(ASL)
    assert _cli("--check", "--output", target, cwd=tmp_path).returncode == 0

    target.write_text(target.read_text(encoding="utf-8").replace("Verify schema", "Verify schemas"), encoding="utf-8")
    stale = _cli("--check", "--output", target, cwd=tmp_path)
    assert (stale.returncode, stale.stderr.strip()) == (1, "workflow.svg is stale: run make diagram")
    assert "Verify schemas" in target.read_text(encoding="utf-8"), "--check must not rewrite the file"


def test_given_an_asl_that_does_not_exist_when_drawn_then_exit_2_names_it(tmp_path: Path) -> None:
    result = _cli("--asl", tmp_path / "nope.json", "--output", tmp_path / "out.svg", cwd=tmp_path)
    assert (result.returncode, result.stderr.strip()) == (2, "nope.json: no such file (pass --asl)")
    assert not (tmp_path / "out.svg").exists()


# --- an execution's path --------------------------------------------------------------------------------------


def test_given_a_path_when_highlighted_then_exactly_its_states_are_marked_with_visit_counts(
    definition: dict[str, Any],
) -> None:
    root = _parse(render_svg(definition, highlight=FAILED_PATH))
    nodes = _nodes(root)
    visited = {name for name, g in nodes.items() if "visited" in _classes(g)}
    assert visited == set(FAILED_PATH)
    counts = Counter(FAILED_PATH)
    for name in visited:
        assert nodes[name].get("data-visits") == str(counts[name]), name
    choice = _texts(nodes["Migration task finished?"])
    assert "\u00d73" in choice, f"the Choice entered 3 times shows no x3 badge: {choice}"
    assert "\u00d72" in _texts(nodes["Wait for migration task"])
    assert not any(t.startswith("\u00d7") for t in _texts(nodes["Verify schema"])), "a single visit has no badge"
    for name, group in nodes.items():
        if name not in visited:
            assert group.get("opacity") == "0.45", f"{name} was not entered but is not faded"
            assert group.get("data-visits") is None


def test_given_a_path_when_highlighted_then_exactly_the_edges_taken_are_marked(definition: dict[str, Any]) -> None:
    root = _parse(render_svg(definition, highlight=FAILED_PATH, failed="Verify schema"))
    taken = {_edge_key(g) for g in _edges(root) if "traversed" in _classes(g)}
    assert taken == {
        ("Validate release request", "Check migration image", "next"),
        ("Check migration image", "Run migration task", "next"),
        ("Run migration task", "Migration task finished?", "next"),
        ("Migration task finished?", "Wait for migration task", "default"),
        ("Wait for migration task", "Check migration task", "next"),
        ("Check migration task", "Migration task finished?", "next"),
        ("Migration task finished?", "Verify schema", "choice"),
        ("Verify schema", "Summarize failure", "catch"),
        ("Summarize failure", "Notify failure", "next"),
        ("Notify failure", "Release failed", "next"),
    }
    catch = next(g for g in _edges(root) if _edge_key(g) == ("Verify schema", "Summarize failure", "catch"))
    summarize = _box(_nodes(root)["Summarize failure"])
    ends = [p.get("d", "").split("L")[-1] for p in catch.iter(f"{SVG}path")]
    assert any(float(end.split(",")[0]) == summarize[0] for end in ends), f"the caught error stops short: {ends}"


def test_given_a_failed_state_when_rendered_then_it_alone_is_marked_red(definition: dict[str, Any]) -> None:
    root = _parse(render_svg(definition, highlight=FAILED_PATH, failed="Verify schema"))
    nodes = _nodes(root)
    failed = [name for name, g in nodes.items() if "failed" in _classes(g)]
    assert failed == ["Verify schema"]
    outline = next(e for e in nodes["Verify schema"] if e.tag == f"{SVG}rect")
    assert outline.get("stroke") == "#c92a2a", "the failed state's outline is not red"
    assert "failed" in _texts(nodes["Verify schema"])
    header = " ".join(t.text or "" for t in root.findall("svg:text", NS))
    assert "failed at Verify schema" in header


def test_given_next_and_catch_to_the_same_state_when_the_source_failed_then_the_catch_is_the_edge_taken(
    definition: dict[str, Any],
) -> None:
    path = ["Build deployment record", "Notify success", "Return deployment record", "Release succeeded"]
    for failed, kind in ((None, "next"), ("Notify success", "catch")):
        root = _parse(render_svg(definition, highlight=path, failed=failed))
        taken = {_edge_key(g) for g in _edges(root) if "traversed" in _classes(g)}
        assert ("Notify success", "Return deployment record", kind) in taken, (failed, taken)
        assert len([t for t in taken if t[:2] == ("Notify success", "Return deployment record")]) == 1


def test_given_no_path_when_rendered_then_nothing_is_marked_or_faded(plain: ET.Element) -> None:
    marked = [g.get("data-state") for g in _nodes(plain).values() if {"visited", "failed"} & set(_classes(g))]
    assert marked == []
    assert not [g for g in plain.iter() if g.get("opacity") is not None]
    assert not [g for g in _edges(plain) if "traversed" in _classes(g)]


@pytest.mark.parametrize("bad", [["Validate release request", "Deploy to prod"], []])
def test_given_a_state_the_definition_lacks_when_highlighted_then_value_error_names_it(
    definition: dict[str, Any], bad: list[str]
) -> None:
    with pytest.raises(ValueError, match=r"not states of this definition: Deploy to prod"):
        render_svg(definition, highlight=bad, failed="Deploy to prod" if not bad else None)


# --- other shapes of definition -------------------------------------------------------------------------------

OTHER_DEFINITIONS: dict[str, dict[str, Any]] = {
    "one pass": {"StartAt": "Only", "States": {"Only": {"Type": "Pass", "End": True}}},
    "fork that rejoins": {
        "StartAt": "Pick",
        "States": {
            "Pick": {
                "Type": "Choice",
                "Choices": [{"Variable": "$.n", "NumericGreaterThan": 3, "Next": "Big"}],
                "Default": "Small",
            },
            "Big": {"Type": "Pass", "Next": "Join"},
            "Small": {"Type": "Wait", "Seconds": 5, "Next": "Join"},
            "Join": {"Type": "Succeed"},
        },
    },
    "parallel with catch": {
        "StartAt": "Both",
        "States": {
            "Both": {
                "Type": "Parallel",
                "Branches": [],
                "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Oops"}],
                "Next": "Done",
            },
            "Done": {"Type": "Succeed"},
            "Oops": {"Type": "Fail", "Error": "Broke"},
        },
    },
}


@pytest.mark.parametrize("name", sorted(OTHER_DEFINITIONS))
def test_given_another_definition_when_rendered_then_every_state_and_transition_is_drawn(name: str) -> None:
    definition = OTHER_DEFINITIONS[name]
    root = _parse(render_svg(definition))
    assert list(_nodes(root)) == list(definition["States"])
    assert {_edge_key(g) for g in _edges(root)} == _expected_edges(definition)
    labels = [t for g in _edges(root) for t in _texts(g)]
    if name == "fork that rejoins":
        assert labels == ["n > 3", "otherwise"]


def test_given_a_definition_without_states_when_rendered_then_value_error() -> None:
    with pytest.raises(ValueError, match="no States"):
        render_svg({"StartAt": "A"})
