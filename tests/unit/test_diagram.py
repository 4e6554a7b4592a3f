"""The workflow diagram: the DOT graph built from the real ASL, drawn by Graphviz's dot; complete, deterministic,
current (checked by its DOT source's digest); an execution's path on top."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from release_steps.errors import terminal_error_names

from deployflow.diagram import (
    DRAWN_BY,
    REPO_ROOT,
    DiagramError,
    catch_label,
    draw,
    file_graph,
    load_definition,
    staleness,
    to_dot,
    write_path,
)

ASL = REPO_ROOT / "statemachine" / "deploy.asl.json"
CHECKED_IN = REPO_ROOT / "docs" / "workflow.svg"
SVG = "{http://www.w3.org/2000/svg}"
XLINK_TITLE = "{http://www.w3.org/1999/xlink}title"

# A release that waits for the migration twice, then fails verifying the schema.
FAILED_PATH = [
    "Receive release request",
    "Validate release request",
    "Check migration image",
    "Run migration task",
    "Check migration task",
    "Migration task finished?",
    "Wait for migration task",
    "Check migration task",
    "Migration task finished?",
    "Wait for migration task",
    "Check migration task",
    "Migration task finished?",
    "Verify schema",
    "Verify schema failed",
    "Summarize failure",
    "Notify failure",
    "Release lock after failure",
    "Release failed",
]


@pytest.fixture(scope="module")
def definition() -> dict[str, Any]:
    return load_definition(ASL)


@pytest.fixture(scope="module")
def plain(definition: dict[str, Any]) -> ET.Element:
    return _parse(_svg(definition))


def _svg(definition: dict[str, Any], highlight: list[str] | None = None, failed: str | None = None) -> str:
    return draw(to_dot(definition, highlight, failed))


def _parse(text: str) -> ET.Element:
    """The SVG as a tree; raises on anything that is not well-formed XML."""
    return ET.fromstring(text)  # noqa: S314 - dot's output for our own graph


def _classes(element: ET.Element) -> list[str]:
    return element.get("class", "").split()


def _nodes(root: ET.Element) -> dict[str, ET.Element]:
    """The states drawn, by name (the SVG id of a state's group is its name)."""
    found: dict[str, ET.Element] = {}
    for group in root.iter(f"{SVG}g"):
        if "state" in _classes(group):
            name = group.get("id", "")
            assert name not in found, f"state {name!r} drawn twice"
            found[name] = group
    return found


def _edges(root: ET.Element) -> list[ET.Element]:
    return [g for g in root.iter(f"{SVG}g") if "transition" in _classes(g)]


def _edge_key(group: ET.Element) -> tuple[str, str, str]:
    kinds = [c for c in _classes(group) if c in ("next", "default", "choice", "catch")]
    assert len(kinds) == 1, f"edge {group.get('id')} has kinds {kinds}"
    src, _, rest = group.get("id", "").partition(" -> ")
    dst = rest.rsplit(" (", 1)[0]
    return src, dst, kinds[0]


def _texts(group: ET.Element) -> list[str]:
    return [t.text or "" for t in group.iter(f"{SVG}text")]


def _centre(group: ET.Element) -> tuple[float, float]:
    """The centre of a node's outline (its first polygon, ellipse or path)."""
    shape = next(e for e in group.iter() if e.tag in (f"{SVG}polygon", f"{SVG}ellipse", f"{SVG}path"))
    if shape.tag == f"{SVG}ellipse":
        return float(shape.get("cx", "0")), float(shape.get("cy", "0"))
    numbers = shape.get("points") or shape.get("d") or ""
    values = [float(v) for v in numbers.replace("M", " ").replace("C", " ").replace(",", " ").split()]
    xs, ys = values[0::2], values[1::2]
    return (min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2


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


def test_given_the_asl_when_drawn_then_one_node_per_state_with_its_name_and_type(
    definition: dict[str, Any], plain: ET.Element
) -> None:
    nodes = _nodes(plain)
    assert sorted(nodes) == sorted(definition["States"])
    for name, group in nodes.items():
        assert name in _texts(group), f"{name}: its name is not written in its box"
        assert definition["States"][name]["Type"].lower() in _classes(group)


def test_given_the_asl_when_drawn_then_one_edge_per_next_default_choice_and_catch_target(
    definition: dict[str, Any], plain: ET.Element
) -> None:
    drawn = [_edge_key(g) for g in _edges(plain)]
    duplicates = [key for key, count in Counter(drawn).items() if count > 1]
    assert not duplicates, f"edges drawn twice: {duplicates}"
    expected = _expected_edges(definition)
    assert set(drawn) == expected, (
        f"missing: {sorted(expected - set(drawn))}; unexpected: {sorted(set(drawn) - expected)}"
    )


def test_given_the_state_types_when_drawn_then_each_type_has_its_own_shape_and_colour(plain: ET.Element) -> None:
    looks: dict[str, set[tuple[str, str]]] = {}
    for group in _nodes(plain).values():
        kind = next(c for c in _classes(group) if c not in ("state", "node"))
        shape = next(e for e in group.iter() if e.tag in (f"{SVG}polygon", f"{SVG}ellipse", f"{SVG}path"))
        looks.setdefault(kind, set()).add((shape.tag, shape.get("fill", "")))
    assert all(len(seen) == 1 for seen in looks.values()), looks
    distinct = {next(iter(seen)) for seen in looks.values()}
    assert len(distinct) == len(looks), f"two state types look alike: {looks}"
    legend = next(g for g in plain.iter(f"{SVG}g") if g.findtext(f"{SVG}title") == "legend")
    assert set(looks) <= {t.strip().lower() for t in _texts(legend)}, "the legend misses a state type"


def test_given_catch_edges_when_drawn_then_they_alone_are_dashed(plain: ET.Element) -> None:
    for group in _edges(plain):
        src, dst, kind = _edge_key(group)
        dashed = [p.get("stroke-dasharray") is not None for p in group.iter(f"{SVG}path")]
        assert dashed, f"edge {src} -> {dst} has no path"
        assert all(dashed) == (kind == "catch"), f"{kind} edge {src} -> {dst}: dashed {dashed}"


def test_given_a_wait_loop_when_drawn_then_the_choice_branches_say_done_and_not_done(plain: ET.Element) -> None:
    labels = {_edge_key(g)[:2]: _texts(g) for g in _edges(plain) if _edge_key(g)[2] != "catch"}
    assert labels[("Migration task finished?", "Verify schema")] == ["done"]
    assert labels[("Migration task finished?", "Wait for migration task")] == ["not done"]
    assert labels[("Services rolled out?", "Build deployment record")] == ["done"]
    assert labels[("Services rolled out?", "Wait for services")] == ["not done"]
    assert ("Check migration task", "Migration task finished?") in labels, "the loop back is drawn"


def test_given_nine_states_catching_their_terminal_errors_when_drawn_then_each_catch_leads_to_its_named_pass(
    plain: ET.Element,
) -> None:
    catches = {_edge_key(g)[:2]: _texts(g) for g in _edges(plain) if _edge_key(g)[2] == "catch"}
    into_passes = {source: label for (source, target), label in catches.items() if target == f"{source} failed"}
    assert len(into_passes) == 9, sorted(catches)
    assert all(label for label in into_passes.values()), "each state's own Catch list is its label"
    into_summary = [g for g in _edges(plain) if _edge_key(g)[1] == "Summarize failure"]
    assert len(into_summary) == 9
    others = {_edge_key(g)[:2]: _texts(g) for g in _edges(plain) if _edge_key(g)[1] == "Release lock after failure"}
    assert others[("Notify failure", "Release lock after failure")] == ["States.ALL"], (
        "an unshared Catch keeps its label"
    )


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


def test_given_tasks_with_retries_when_drawn_then_each_names_its_retried_errors(
    definition: dict[str, Any], plain: ET.Element
) -> None:
    nodes = _nodes(plain)
    for name, state in definition["States"].items():
        if state["Type"] != "Task":
            continue
        shown = " ".join(_texts(nodes[name]))
        tooltip = " ".join(a.get(XLINK_TITLE, "") for a in nodes[name].iter(f"{SVG}a"))
        for retrier in state.get("Retry", []):
            for error in retrier["ErrorEquals"]:
                assert error in tooltip, f"{name}: retried {error} missing from the tooltip"
                short = "Lambda.*" if error.startswith("Lambda.") else error
                short = "DynamoDB.*" if error.startswith("DynamoDB.") else short
                assert short in shown, f"{name}: retried {error} not shown in the box ({shown!r})"


def test_given_the_asl_when_laid_out_then_the_way_through_is_one_column_and_the_loops_sit_beside_it(
    definition: dict[str, Any], plain: ET.Element
) -> None:
    nodes = _nodes(plain)
    centres = {name: _centre(group) for name, group in nodes.items()}
    way = ["Validate release request", "Check migration image", "Run migration task", "Check migration task"]
    way += ["Migration task finished?", "Verify schema", "Create Kafka topics", "Restart services", "Check services"]
    way += ["Services rolled out?"]
    way += [
        "Build deployment record",
        "Release lock",
        "Notify success",
        "Return deployment record",
        "Release succeeded",
    ]
    xs = {round(centres[name][0]) for name in way}
    assert max(xs) - min(xs) <= 2, f"the way through zigzags: {sorted(xs)}"
    ys = [centres[name][1] for name in way]
    assert ys == sorted(ys), "the way through does not run top to bottom"
    for wait in ("Wait for migration task", "Wait for services"):
        assert abs(centres[wait][0] - centres[way[0]][0]) > 50, f"{wait} sits on the way through"
    assert centres["Summarize failure"][0] > max(centres[name][0] for name in way), "the failure path is not beside"


def test_given_the_same_definition_when_drawn_twice_then_the_bytes_are_identical(definition: dict[str, Any]) -> None:
    assert _svg(definition) == _svg(definition)
    assert _svg(definition, FAILED_PATH, "Verify schema") == _svg(definition, FAILED_PATH, "Verify schema")


# --- staleness ------------------------------------------------------------------------------------------------


def _diagram_cli(*args: object, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "deployflow.diagram", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, check=False, cwd=REPO_ROOT, env=env, timeout=60)


def test_given_the_checked_in_diagram_when_checked_then_it_is_current_and_the_cli_says_so() -> None:
    assert staleness(ASL, CHECKED_IN) is None, "docs/workflow.svg is stale: run make diagram"
    result = _diagram_cli("--check")
    assert (result.returncode, result.stdout.strip()) == (0, "docs/workflow.svg is up to date"), result.stderr


def test_given_a_changed_asl_or_a_missing_file_when_checked_then_exit_1_names_the_command(tmp_path: Path) -> None:
    asl = tmp_path / "deploy.asl.json"
    document = load_definition(ASL)
    asl.write_text(json.dumps(document), encoding="utf-8")
    svg = tmp_path / "workflow.svg"
    missing = _diagram_cli("--check", "--asl", asl, "--output", svg)
    assert (missing.returncode, missing.stderr.strip()) == (1, f"{svg} is missing: run make diagram")

    assert _diagram_cli("--asl", asl, "--output", svg).returncode == 0
    assert _diagram_cli("--check", "--asl", asl, "--output", svg).returncode == 0
    document["States"]["Wait for services"]["SecondsPath"] = "$.config.otherSeconds"
    asl.write_text(json.dumps(document), encoding="utf-8")
    stale = _diagram_cli("--check", "--asl", asl, "--output", svg)
    assert (stale.returncode, stale.stderr.strip()) == (1, f"{svg} is stale: run make diagram")


def test_given_a_file_drawn_by_another_graphviz_when_checked_then_the_source_decides(tmp_path: Path) -> None:
    svg = tmp_path / "workflow.svg"
    text = draw(file_graph(ASL))
    drawn_by = DRAWN_BY.search(text)
    assert drawn_by is not None, "dot's version line is where --check reads it"
    # Another dot version lays it out differently: same source, other bytes. Current all the same.
    other = text.replace(drawn_by.group(0), "<!-- Generated by graphviz version 99.0.0").replace("<svg ", "<svg  ", 1)
    svg.write_text(other, encoding="utf-8")
    assert staleness(ASL, svg) is None
    # The same dot version, other bytes: edited by hand.
    svg.write_text(text.replace("Verify schema", "Verify scheme", 1), encoding="utf-8")
    assert staleness(ASL, svg) == f"not what dot {drawn_by.group(1)} draws (edited by hand?)"


def test_given_no_graphviz_installed_when_checked_then_it_still_checks_and_drawing_says_what_to_install(
    tmp_path: Path,
) -> None:
    env = {**os.environ, "PATH": str(tmp_path)}  # no dot on it
    check = _diagram_cli("--check", env=env)
    assert check.returncode == 0, check.stderr
    drawing = _diagram_cli("--output", tmp_path / "out.svg", env=env)
    assert drawing.returncode == 2
    assert "Graphviz's dot is not installed: run scripts/install-system-deps.sh" in drawing.stderr
    assert not (tmp_path / "out.svg").exists()


def test_given_an_asl_that_does_not_exist_when_drawn_then_exit_2_names_it(tmp_path: Path) -> None:
    result = _diagram_cli("--asl", tmp_path / "nope.json", "--output", tmp_path / "out.svg")
    assert (result.returncode, result.stderr.strip()) == (2, f"{tmp_path / 'nope.json'}: no such file (pass --asl)")


# --- an execution's path --------------------------------------------------------------------------------------


def test_given_a_path_when_drawn_then_exactly_its_states_are_marked_with_visit_counts(
    definition: dict[str, Any],
) -> None:
    nodes = _nodes(_parse(_svg(definition, FAILED_PATH, "Verify schema")))
    visited = {name for name, group in nodes.items() if "visited" in _classes(group)}
    assert visited == set(FAILED_PATH)
    dimmed = {name for name, group in nodes.items() if "dimmed" in _classes(group)}
    assert dimmed == set(definition["States"]) - set(FAILED_PATH)
    assert "\u00d73" in _texts(nodes["Migration task finished?"])
    assert "\u00d73" in _texts(nodes["Check migration task"])
    assert not [t for t in _texts(nodes["Verify schema"]) if t.startswith("\u00d7")], "entered once: no count"


def test_given_a_path_when_drawn_then_exactly_the_edges_taken_are_marked(definition: dict[str, Any]) -> None:
    root = _parse(_svg(definition, FAILED_PATH, "Verify schema"))
    taken = {_edge_key(g) for g in _edges(root) if "taken" in _classes(g)}
    pairs = set(itertools.pairwise(FAILED_PATH))
    assert {key[:2] for key in taken} == pairs
    assert ("Verify schema", "Verify schema failed", "catch") in taken


def test_given_a_failed_state_when_drawn_then_it_alone_is_red_and_the_title_names_it(
    definition: dict[str, Any],
) -> None:
    root = _parse(_svg(definition, FAILED_PATH, "Verify schema"))
    failed = [name for name, group in _nodes(root).items() if "failed" in _classes(group)]
    assert failed == ["Verify schema"]
    outline = next(e for e in _nodes(root)["Verify schema"].iter() if e.tag == f"{SVG}path")
    assert outline.get("stroke") == "#c92a2a"
    assert "\u2717 failed here" in _texts(_nodes(root)["Verify schema"])
    assert "failed at Verify schema" in [t.text for t in root.iter(f"{SVG}text")]


def test_given_next_and_catch_to_the_same_state_when_the_source_failed_then_the_catch_is_the_edge_taken(
    definition: dict[str, Any],
) -> None:
    path = [
        "Build deployment record",
        "Release lock",
        "Notify success",
        "Return deployment record",
        "Release succeeded",
    ]
    for failed, kind in ((None, "next"), ("Notify success", "catch")):
        root = _parse(_svg(definition, highlight=path, failed=failed))
        taken = {_edge_key(g) for g in _edges(root) if "taken" in _classes(g)}
        assert [t for t in taken if t[:2] == ("Notify success", "Return deployment record")] == [
            ("Notify success", "Return deployment record", kind)
        ]


def test_given_no_path_when_drawn_then_nothing_is_marked_or_faded(plain: ET.Element) -> None:
    marked = [n for n, g in _nodes(plain).items() if {"visited", "failed", "dimmed"} & set(_classes(g))]
    assert marked == []
    assert not [g for g in _edges(plain) if "taken" in _classes(g)]


@pytest.mark.parametrize("bad", [["Validate release request", "Deploy to prod"], []])
def test_given_a_state_the_definition_lacks_when_highlighted_then_diagram_error_names_it(
    definition: dict[str, Any], bad: list[str]
) -> None:
    with pytest.raises(DiagramError, match=r"not states of this definition: Deploy to prod"):
        to_dot(definition, highlight=bad, failed="Deploy to prod" if not bad else None)


def test_given_a_render_path_file_when_written_then_dot_suffix_gives_the_source_and_others_svg(
    definition: dict[str, Any], tmp_path: Path
) -> None:
    write_path(definition, tmp_path / "path.dot", FAILED_PATH, "Verify schema")
    write_path(definition, tmp_path / "path.svg", FAILED_PATH, "Verify schema")
    source = (tmp_path / "path.dot").read_text(encoding="utf-8")
    assert source.startswith("digraph workflow {")
    assert "failed here" in source
    nodes = _nodes(_parse((tmp_path / "path.svg").read_text(encoding="utf-8")))
    assert "failed" in _classes(nodes["Verify schema"])


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
    "parallel with catch, a colon in a name": {
        "StartAt": "Both: at once",
        "States": {
            "Both: at once": {
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
def test_given_another_definition_when_drawn_then_every_state_and_transition_is_drawn(name: str) -> None:
    definition = OTHER_DEFINITIONS[name]
    root = _parse(_svg(definition))
    assert sorted(_nodes(root)) == sorted(definition["States"])
    assert {_edge_key(g) for g in _edges(root)} == _expected_edges(definition)
    labels = [t for g in _edges(root) for t in _texts(g)]
    if name == "fork that rejoins":
        assert labels == ["n > 3", "otherwise"]


def test_given_a_definition_without_states_when_drawn_then_diagram_error() -> None:
    with pytest.raises(DiagramError, match="no States"):
        to_dot({"StartAt": "A"})
