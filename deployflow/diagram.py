"""Draw the state machine as an SVG: the happy path top to bottom, wait loops beside it, the failure path in a side
column, Catch edges dashed; optionally an execution's path on top.

Pure Python and deterministic (same definition and path, same bytes), so ``docs/workflow.svg`` is generated, checked
in, and checked for staleness in CI: ``python -m deployflow.diagram --check``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from release_steps.errors import terminal_error_names

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_ASL = Path("statemachine") / "deploy.asl.json"
DEFAULT_OUTPUT = Path("docs") / "workflow.svg"
REGENERATE_COMMAND = "make diagram"
DEFAULT_TITLE = "deployflow release workflow"

# Canvas: a fixed width, the height follows the rows.
WIDTH = 1000
MARGIN = 20
HEADER = 62
ROW_GAP = 38
MAIN_W = 240
LOOP_W = 200
FAIL_W = 180
FAIL_GAP = 20
MAIN_CX = MARGIN + MAIN_W // 2 + 4
LOOP_CX = MAIN_CX + MAIN_W // 2 + 70 + LOOP_W // 2
BACK_LANE_X = LOOP_CX + LOOP_W // 2 + 18
BUS_X = BACK_LANE_X + 26
FAIL_LEFT = BUS_X + 22

NAME_SIZE = 13
SMALL_SIZE = 10
LABEL_SIZE = 11
NAME_LINE = 17
SMALL_LINE = 13
PAD = 9
CHOICE_TIP = 18
CHAR_WIDTH = 0.6  # average glyph advance of a sans-serif face, in ems: enough to wrap and size boxes

INK = "#333333"
MUTED = "#666666"
EDGE = "#555555"
CATCH = "#8a8a8a"
PATH = "#e8590c"
FAILED = "#c92a2a"
DASH = "6 4"
TIMES = "\u00d7"  # multiplication sign, for the visit count badge ("x3")
TWIN_OFFSET = 12  # a Catch that goes where Next goes is drawn beside it
CATCH_NAMES_SHOWN = 3  # a Catch naming more errors than this is labelled by what they are, not one by one

# Type -> (fill, stroke).
COLOURS: dict[str, tuple[str, str]] = {
    "Task": ("#e7f0fb", "#3d6fb6"),
    "Choice": ("#fff3d1", "#b8860b"),
    "Wait": ("#f1eafa", "#7657a8"),
    "Pass": ("#f1f1f1", "#6b6b6b"),
    "Succeed": ("#e1f3de", "#2e7d32"),
    "Fail": ("#fbe2df", "#b3261e"),
    "Parallel": ("#e7f0fb", "#3d6fb6"),
    "Map": ("#e7f0fb", "#3d6fb6"),
}
FAILED_FILL = "#fbd5d0"
LAMBDA_SERVICE_ERRORS = (
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
)
COMPARISONS = {
    "Equals": "=",
    "LessThan": "<",
    "GreaterThan": ">",
    "LessThanEquals": "≤",
    "GreaterThanEquals": "≥",
    "Matches": "~",
}
MAIN, LOOP = 0, 1  # columns; failure sub-columns follow from 2


@dataclass(frozen=True)
class Edge:
    """One transition of the definition: ``kind`` is next, choice, default or catch."""

    src: str
    dst: str
    kind: str
    label: str = ""


@dataclass
class _Node:
    name: str
    type: str
    col: int
    row: int
    w: int
    lines: list[str]
    title: str
    cx: float = 0.0
    cy: float = 0.0
    h: int = 0

    @property
    def left(self) -> float:
        return self.cx - self.w / 2

    @property
    def right(self) -> float:
        return self.cx + self.w / 2

    @property
    def top(self) -> float:
        return self.cy - self.h / 2

    @property
    def bottom(self) -> float:
        return self.cy + self.h / 2


@dataclass
class _Layout:
    nodes: dict[str, _Node]
    edges: list[Edge]
    hub: str | None
    height: int
    row_top: list[float] = field(default_factory=list)


# --- reading the definition -----------------------------------------------------------------------------------


def edges_of(definition: Mapping[str, Any]) -> list[Edge]:
    """Every transition of the top-level states, in definition order (Choice rules, Default, Next, then Catch)."""
    found: dict[tuple[str, str, str], Edge] = {}

    def add(edge: Edge) -> None:
        key = (edge.src, edge.dst, edge.kind)
        if key in found:
            joined = " or ".join(x for x in (found[key].label, edge.label) if x)
            found[key] = Edge(edge.src, edge.dst, edge.kind, joined)
        else:
            found[key] = edge

    for name, state in _states(definition).items():
        if state.get("Type") == "Choice":
            rules: list[dict[str, Any]] = list(state.get("Choices", []))
            for rule in rules:
                if "Next" in rule:
                    add(Edge(name, str(rule["Next"]), "choice", _rule_label(rule)))
            if "Default" in state:
                add(Edge(name, str(state["Default"]), "default", _default_label(rules)))
        elif "Next" in state:
            add(Edge(name, str(state["Next"]), "next"))
        for catcher in state.get("Catch", []):
            add(Edge(name, str(catcher["Next"]), "catch", catch_label(catcher.get("ErrorEquals", []))))
    return list(found.values())


def catch_label(errors: Sequence[str]) -> str:
    """A Catch's errors in a few words: the names themselves, or ``terminal errors`` for errors.py's terminal set."""
    names = [str(error) for error in errors]
    if len(names) > CATCH_NAMES_SHOWN and set(names) == set(terminal_error_names()):
        return "terminal errors"
    if len(names) > CATCH_NAMES_SHOWN:
        return f"{len(names)} errors"
    return ", ".join(names)


def _states(definition: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    states = definition.get("States")
    if not isinstance(states, dict) or not states:
        raise ValueError("definition has no States: not an Amazon States Language document")
    return states


def _short_path(path: object) -> str:
    text = str(path)
    return text.rsplit(".", 1)[-1] if text.startswith("$") else text


def _shorten(text: str, limit: int = 26) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _rule_label(rule: Mapping[str, Any]) -> str:
    """A Choice rule in a few words: ``done``, ``not done``, ``status = "FAILED"``, ``attempts > 3``."""
    return _shorten(_condition(rule))


def _condition(rule: Mapping[str, Any]) -> str:
    if "And" in rule:
        return " and ".join(_condition(r) for r in rule["And"])
    if "Or" in rule:
        return " or ".join(_condition(r) for r in rule["Or"])
    if "Not" in rule:
        return "not " + _condition(rule["Not"])
    if "Condition" in rule:  # JSONata
        return str(rule["Condition"]).removeprefix("{%").removesuffix("%}").strip()
    var = _short_path(rule.get("Variable", "?"))
    if "BooleanEquals" in rule:
        return var if rule["BooleanEquals"] else f"not {var}"
    if "BooleanEqualsPath" in rule:
        return f"{var} = {_short_path(rule['BooleanEqualsPath'])}"
    for key, value in rule.items():
        if key in ("IsPresent", "IsNull", "IsString", "IsNumeric", "IsBoolean", "IsTimestamp"):
            what = key.removeprefix("Is").lower()
            return f"{var} {what}" if value else f"{var} not {what}"
        for suffix, op in COMPARISONS.items():
            for prefix in ("String", "Numeric", "Timestamp"):
                if key == prefix + suffix:
                    return f"{var} {op} {json.dumps(value)}"
                if key == prefix + suffix + "Path":
                    return f"{var} {op} {_short_path(value)}"
    return var


def _default_label(rules: Sequence[Mapping[str, Any]]) -> str:
    if len(rules) == 1 and isinstance(rules[0].get("BooleanEquals"), bool) and "Variable" in rules[0]:
        var = _short_path(rules[0]["Variable"])
        return _shorten(f"not {var}" if rules[0]["BooleanEquals"] else var)
    return "otherwise"


def _resource_label(state: Mapping[str, Any]) -> str:
    resource = str(state.get("Resource", ""))
    if resource.startswith("arn:aws:states:::lambda:invoke"):
        resource = str(state.get("Parameters", {}).get("FunctionName", resource))
    if resource.startswith("${") and resource.endswith("}"):
        return "λ " + resource[2:-1].removesuffix("Arn")
    if ":function:" in resource:
        return "λ " + resource.split(":function:", 1)[1].split(":", 1)[0]
    if resource.startswith("arn:aws:states:::"):
        return resource.removeprefix("arn:aws:states:::")
    return resource.rsplit(":", 1)[-1]


def _retry_names(state: Mapping[str, Any]) -> list[str]:
    names: list[str] = []
    for retrier in state.get("Retry", []):
        for error in retrier.get("ErrorEquals", []):
            short = "Lambda.*" if error in LAMBDA_SERVICE_ERRORS else str(error)
            if short not in names:
                names.append(short)
    return names


def _wrap(words: Sequence[str], first: str, width: float, size: int, sep: str = ", ") -> list[str]:
    """Greedy wrap of ``first`` + words joined by ``sep`` into lines that fit ``width`` pixels."""
    limit = max(8, int(width / (size * CHAR_WIDTH)))
    lines: list[str] = []
    current = first
    for i, word in enumerate(words):
        piece = _shorten(word, limit) + (sep.rstrip() if i < len(words) - 1 else "")
        candidate = piece if current == "" else (current + ("" if current.endswith(" ") else " ") + piece)
        if len(candidate) > limit and current not in ("", first):
            lines.append(current)
            current = piece
        else:
            current = candidate
    if current:
        lines.append(current)
    return lines


def _small_lines(state: Mapping[str, Any], width: int) -> list[str]:
    kind = state.get("Type")
    inner = width - 2 * PAD
    if kind in ("Task", "Parallel", "Map"):
        lines: list[str] = []
        if kind == "Task":
            lines += _wrap([_resource_label(state)], "", inner, SMALL_SIZE)
        else:
            branches = state.get("Branches")
            lines.append(f"{len(branches)} branches" if isinstance(branches, list) else "per item")
        retries = _retry_names(state)
        if retries:
            lines += _wrap(retries, "retry:", inner, SMALL_SIZE)
        return lines
    if kind == "Wait":
        for key, template in (
            ("Seconds", "{} s"),
            ("SecondsPath", "{}"),
            ("Timestamp", "until {}"),
            ("TimestampPath", "until {}"),
        ):
            if key in state:
                return _wrap([template.format(state[key])], "", inner, SMALL_SIZE)
    if kind == "Fail":
        for key in ("Error", "ErrorPath"):
            if key in state:
                return _wrap([f"error: {state[key]}"], "", inner, SMALL_SIZE)
    return []


def _fmt_value(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _tooltip(name: str, state: Mapping[str, Any]) -> str:
    lines = [f"{name} ({state.get('Type', '?')})"]
    if "Comment" in state:
        lines.append(str(state["Comment"]))
    if "Resource" in state:
        lines.append(f"Resource: {state['Resource']}")
    for retrier in state.get("Retry", []):
        errors = ", ".join(retrier.get("ErrorEquals", []))
        details = ", ".join(
            f"{key} {_fmt_value(retrier[key])}"
            for key in ("IntervalSeconds", "MaxAttempts", "BackoffRate", "MaxDelaySeconds", "JitterStrategy")
            if key in retrier
        )
        lines.append(f"Retry {errors}: {details}")
    for catcher in state.get("Catch", []):
        lines.append(f"Catch {', '.join(catcher.get('ErrorEquals', []))} -> {catcher.get('Next')}")
    for key in ("Seconds", "SecondsPath", "Timestamp", "TimestampPath", "ErrorPath", "CausePath", "OutputPath"):
        if key in state:
            lines.append(f"{key}: {_fmt_value(state[key])}")
    return "\n".join(lines)


# --- layout ---------------------------------------------------------------------------------------------------


def _successors(edges: Sequence[Edge], *, catches: bool) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for edge in edges:
        if catches or edge.kind != "catch":
            found.setdefault(edge.src, []).append(edge.dst)
    return found


def _reachable(start: str, succ: Mapping[str, Sequence[str]]) -> set[str]:
    seen = {start}
    stack = [start]
    while stack:
        for nxt in succ.get(stack.pop(), []):
            if nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    return seen


def _layout(definition: Mapping[str, Any]) -> _Layout:
    states = _states(definition)
    start = str(definition.get("StartAt", next(iter(states))))
    if start not in states:
        raise ValueError(f"StartAt names {start!r}, which is not a state")
    edges = edges_of(definition)
    for edge in edges:
        if edge.dst not in states:
            raise ValueError(f"{edge.src!r} goes to {edge.dst!r}, which is not a state")
    normal = _successors(edges, catches=False)
    main_set = _reachable(start, normal)

    # The happy path: follow Next; at a Choice, the branch that comes back to it is a wait loop, the other goes on.
    spine: list[str] = []
    loops: dict[str, list[str]] = {}
    placed: set[str] = set()
    current: str | None = start
    while current is not None and current not in placed:
        spine.append(current)
        placed.add(current)
        state = states[current]
        if state.get("Type") == "Choice":
            targets = [e.dst for e in edges if e.src == current and e.kind in ("choice", "default")]
            looping = [t for t in targets if t not in placed and current in _reachable(t, normal)]
            onward = [t for t in targets if t not in looping and t not in placed]
            if looping:
                ring: list[str] = []
                step: str | None = looping[0]
                while step is not None and step != current and step not in placed and step not in ring:
                    ring.append(step)
                    choices = [t for t in normal.get(step, []) if current in _reachable(t, normal)]
                    step = choices[0] if choices else None
                loops[current] = ring
                placed.update(ring)
            current = onward[0] if onward else None
        else:
            nxt = state.get("Next")
            current = str(nxt) if nxt is not None else None

    position: dict[str, tuple[int, int]] = {}
    row = 0
    for name in spine:
        position[name] = (MAIN, row)
        ring = loops.get(name, [])
        for i, looped in enumerate(ring):
            position[looped] = (LOOP, row + i)
        row += max(1, len(ring))
    for name in states:  # reachable but off the happy path (a fork that rejoins): below it, in definition order
        if name in main_set and name not in position:
            position[name] = (MAIN, row)
            row += 1

    # The failure column: from the state most Catch edges go to, layered by longest path.
    catch_targets = Counter(e.dst for e in edges if e.kind == "catch" and e.src in main_set and e.dst not in main_set)
    hub = min(catch_targets, key=lambda n: (-catch_targets[n], list(states).index(n))) if catch_targets else None
    rest = [n for n in states if n not in position]
    if rest:
        every = _successors(edges, catches=True)
        first = hub if hub is not None else rest[0]
        group = [n for n in rest if n in _reachable(first, every)]
        depth = {first: 0}
        for _ in range(len(group)):
            for edge in edges:
                reachable = edge.src in depth and edge.dst in group and edge.dst != first
                if reachable and depth.get(edge.dst, -1) < depth[edge.src] + 1 <= len(group):
                    depth[edge.dst] = depth[edge.src] + 1
        stubs = [position[e.src][1] for e in edges if e.dst == first and e.src in position]
        base = max(stubs) + 1 if stubs else 0
        order = _bfs_order(first, edges, set(group))
        layers: dict[int, list[str]] = {}
        for name in order:
            layers.setdefault(depth[name], []).append(name)
        for level, names in sorted(layers.items()):
            for i, name in enumerate(names):
                position[name] = (2 + i, base + level)
        extra = base + (max(layers) + 1 if layers else 0)
        for name in rest:
            if name not in position:
                position[name] = (2, extra)
                extra += 1

    fail_cols = max((c for c, _ in position.values()), default=LOOP) - 1
    fail_w = min(FAIL_W, int((WIDTH - MARGIN - FAIL_LEFT - FAIL_GAP * (fail_cols - 1)) / max(1, fail_cols)))

    def centre_x(col: int) -> float:
        if col == MAIN:
            return MAIN_CX
        if col == LOOP:
            return LOOP_CX
        return FAIL_LEFT + fail_w / 2 + (col - 2) * (fail_w + FAIL_GAP)

    nodes: dict[str, _Node] = {}
    for name, state in states.items():
        col, at = position[name]
        width = MAIN_W if col == MAIN else LOOP_W if col == LOOP else fail_w
        kind = str(state.get("Type", "Task"))
        node = _Node(name, kind, col, at, width, _small_lines(state, width), _tooltip(name, state))
        node.cx = centre_x(col)
        node.h = 46 if kind == "Choice" else 2 * PAD + NAME_LINE + SMALL_LINE * len(node.lines) + 2
        nodes[name] = node

    rows = max(n.row for n in nodes.values()) + 1
    heights = [max((n.h for n in nodes.values() if n.row == r), default=40) for r in range(rows)]
    tops: list[float] = []
    y = float(HEADER + 40)
    for r in range(rows):
        tops.append(y)
        y += heights[r] + ROW_GAP
    for node in nodes.values():
        node.cy = tops[node.row] + heights[node.row] / 2
    height = int(y - ROW_GAP + 24)
    return _Layout(nodes, edges, hub, height, tops)


def _bfs_order(first: str, edges: Sequence[Edge], group: set[str]) -> list[str]:
    rank = {"next": 0, "choice": 1, "default": 2, "catch": 3}
    order = [first]
    for name in order:
        outgoing = sorted((e for e in edges if e.src == name), key=lambda e: rank[e.kind])
        for edge in outgoing:
            if edge.dst in group and edge.dst not in order:
                order.append(edge.dst)
    return order


# --- routing --------------------------------------------------------------------------------------------------

Point = tuple[float, float]


def _side_x(node: _Node, right: bool) -> float:
    return node.right if right else node.left


def _route(edge: Edge, layout: _Layout) -> list[Point]:
    """An orthogonal polyline from the source's border to the target's border."""
    src, dst = layout.nodes[edge.src], layout.nodes[edge.dst]
    if edge.kind == "catch" and edge.dst == layout.hub and src.col < 2:
        y = src.cy + src.h / 4
        return [(src.right, y), (BUS_X, y)]
    low = src.cy + src.h / 4 if src.type != "Choice" else src.cy
    if src.col == dst.col:
        between = [n for n in layout.nodes.values() if n.col == src.col and src.row < n.row < dst.row]
        if dst.row > src.row and not between:
            return [(src.cx, src.bottom), (dst.cx, dst.top)]
        lane = max(src.right, dst.right) + 16
        if dst.row > src.row:
            return [(src.right, low), (lane, low), (lane, dst.cy), (dst.right, dst.cy)]
        return _back_edge(src, dst, lane, layout)
    if dst.row == src.row:
        going_right = dst.col > src.col
        return [(_side_x(src, going_right), src.cy), (_side_x(dst, not going_right), dst.cy)]
    if dst.row > src.row:
        if dst.col > src.col:
            return [(src.right, low), (dst.cx, low), (dst.cx, dst.top)]
        return [(src.cx, src.bottom), (src.cx, dst.cy), (dst.right, dst.cy)]
    lane = max(src.right, dst.right) + 18
    return _back_edge(src, dst, lane, layout)


def _back_edge(src: _Node, dst: _Node, lane: float, layout: _Layout) -> list[Point]:
    y = src.cy - src.h / 4
    above = layout.row_top[dst.row] - ROW_GAP / 2
    return [(src.right, y), (lane, y), (lane, above), (dst.cx, above), (dst.cx, dst.top)]


def _border_x(node: _Node, y: float, right: bool) -> float:
    """Where a horizontal line at ``y`` meets the node's outline (hexagon tips and rounded ends are not boxes)."""
    dy = min(abs(y - node.cy), node.h / 2)
    if node.type == "Choice":
        inset = CHOICE_TIP * dy / (node.h / 2)
    elif node.type in ("Wait", "Succeed", "Fail"):
        radius = node.h / 2
        inset = radius - math.sqrt(max(0.0, radius * radius - dy * dy))
    else:
        inset = 0.0
    return node.right - inset if right else node.left + inset


def _snap(points: Sequence[Point], src: _Node, dst: _Node) -> list[Point]:
    """Move the ends of horizontal first/last segments onto the outline of the node they touch."""
    snapped = list(points)
    if len(snapped) < 2:
        return snapped
    (x0, y0), (_, y1) = snapped[0], snapped[1]
    if y0 == y1 and x0 in (src.left, src.right):
        snapped[0] = (_border_x(src, y0, x0 == src.right), y0)
    (_, ya), (xb, yb) = snapped[-2], snapped[-1]
    if ya == yb and xb in (dst.left, dst.right):
        snapped[-1] = (_border_x(dst, yb, xb == dst.right), yb)
    return snapped


def _offset(points: Sequence[Point], d: float) -> list[Point]:
    """The same orthogonal polyline moved ``d`` pixels to its right-hand side (a twin drawn beside it)."""
    normals: list[Point] = []
    for (x0, y0), (x1, y1) in itertools.pairwise(points):
        length = math.hypot(x1 - x0, y1 - y0) or 1.0
        normals.append(((y1 - y0) / length * d, -(x1 - x0) / length * d))
    if not normals:
        return list(points)
    moved = [(points[0][0] + normals[0][0], points[0][1] + normals[0][1])]
    for i in range(1, len(points) - 1):
        (ax, ay), (bx, by) = normals[i - 1], normals[i]
        moved.append((points[i][0] + ax + bx, points[i][1] + ay + by))
    moved.append((points[-1][0] + normals[-1][0], points[-1][1] + normals[-1][1]))
    return moved


# --- drawing --------------------------------------------------------------------------------------------------


def _n(value: float) -> str:
    text = f"{value:.1f}"
    return text[:-2] if text.endswith(".0") else text


def _d(points: Sequence[Point]) -> str:
    return "M" + " L".join(f"{_n(x)},{_n(y)}" for x, y in points)


def _text(x: float, y: float, text: str, *, size: int, fill: str = INK, anchor: str = "middle", extra: str = "") -> str:
    attrs = f'x="{_n(x)}" y="{_n(y)}" font-size="{size}" fill="{fill}" text-anchor="{anchor}"'
    return f"<text {attrs}{extra}>{escape(text)}</text>"


def _shape(node: _Node, fill: str, stroke: str, width: float) -> list[str]:
    paint = f'fill="{fill}" stroke="{stroke}" stroke-width="{_n(width)}"'
    x, y, w, h = node.left, node.top, node.w, node.h
    box = f'x="{_n(x)}" y="{_n(y)}" width="{_n(w)}" height="{_n(h)}"'
    if node.type == "Choice":
        pts = [
            (x, node.cy),
            (x + CHOICE_TIP, y),
            (x + w - CHOICE_TIP, y),
            (x + w, node.cy),
            (x + w - CHOICE_TIP, y + h),
            (x + CHOICE_TIP, y + h),
        ]
        return [f'<polygon points="{" ".join(f"{_n(a)},{_n(b)}" for a, b in pts)}" {paint}/>']
    if node.type == "Pass":
        return [f"<rect {box} {paint}/>"]
    if node.type == "Wait":
        return [f'<rect {box} rx="{_n(h / 2)}" {paint}/>']
    if node.type in ("Succeed", "Fail"):
        inner = f'x="{_n(x + 4)}" y="{_n(y + 4)}" width="{_n(w - 8)}" height="{_n(h - 8)}"'
        return [
            f'<rect {box} rx="{_n(h / 2)}" {paint}/>',
            f'<rect {inner} rx="{_n(h / 2 - 4)}" fill="none" stroke="{stroke}" stroke-width="1"/>',
        ]
    if node.type in ("Parallel", "Map"):
        inner = f'x="{_n(x + 4)}" y="{_n(y + 4)}" width="{_n(w - 8)}" height="{_n(h - 8)}"'
        return [
            f'<rect {box} rx="8" {paint}/>',
            f'<rect {inner} rx="5" fill="none" stroke="{stroke}" stroke-width="1"/>',
        ]
    return [f'<rect {box} rx="8" {paint}/>']


def _node_svg(node: _Node, visits: int, failed: bool, dimmed: bool) -> Iterator[str]:
    fill, stroke = COLOURS.get(node.type, COLOURS["Task"])
    width = 1.5
    classes = ["node", node.type.lower()]
    if visits:
        classes.append("visited")
        stroke, width = PATH, 3.0
    if failed:
        classes.append("failed")
        fill, stroke, width = FAILED_FILL, FAILED, 3.5
    attrs = f'class="{" ".join(classes)}" data-state={quoteattr(node.name)}'
    if visits:
        attrs += f' data-visits="{visits}"'
    if dimmed:
        attrs += ' opacity="0.45"'
    yield f"<g {attrs}>"
    yield f"<title>{escape(node.title)}</title>"
    yield from _shape(node, fill, stroke, width)
    text_h = NAME_LINE + SMALL_LINE * len(node.lines)
    y = node.cy - text_h / 2 + 13
    yield _text(node.cx, y, node.name, size=NAME_SIZE, extra=' font-weight="600"')
    for line in node.lines:
        y += SMALL_LINE
        yield _text(node.cx, y, line, size=SMALL_SIZE, fill=MUTED)
    if visits > 1:
        label = f"{TIMES}{visits}"
        bw = 10 + len(label) * 7
        bx, by = node.right - bw + 6, node.top - 9
        yield f'<rect x="{_n(bx)}" y="{_n(by)}" width="{bw}" height="17" rx="8.5" fill="{PATH}"/>'
        yield _text(bx + bw / 2, by + 12.5, label, size=LABEL_SIZE, fill="#ffffff", extra=' font-weight="700"')
    if failed:
        bx, by = node.left - 6, node.top - 9
        yield f'<rect x="{_n(bx)}" y="{_n(by)}" width="48" height="17" rx="8.5" fill="{FAILED}"/>'
        yield _text(bx + 24, by + 12.5, "failed", size=LABEL_SIZE, fill="#ffffff", extra=' font-weight="700"')
    yield "</g>"


def _edge_svg(edge: Edge, points: Sequence[Point], lit: bool, dimmed: bool, bus_to: Point | None) -> Iterator[str]:
    catch = edge.kind == "catch"
    colour = PATH if lit else CATCH if catch else EDGE
    marker = "arrow-path" if lit else "arrow-catch" if catch else "arrow"
    attrs = f'class="edge {edge.kind}{" traversed" if lit else ""}" data-from={quoteattr(edge.src)}'
    attrs += f" data-to={quoteattr(edge.dst)}"
    if dimmed:
        attrs += ' opacity="0.45"'
    yield f"<g {attrs}>"
    detail = f"{edge.kind}: {edge.label}" if edge.label else edge.kind
    yield f"<title>{escape(f'{edge.src} -> {edge.dst} ({detail})')}</title>"
    paint = f'fill="none" stroke="{colour}" stroke-width="{"2.5" if lit else "1.4"}"'
    if catch:
        paint += f' stroke-dasharray="{DASH}"'
    if bus_to is None:
        yield f'<path d="{_d(points)}" {paint} marker-end="url(#{marker})"/>'
    else:  # a stub onto the shared error bus; lit, it is drawn all the way to the failure column
        yield f'<path d="{_d(points)}" {paint}/>'
        x, y = points[-1]
        yield f'<circle cx="{_n(x)}" cy="{_n(y)}" r="2.5" fill="{colour}"/>'
        if lit:
            yield f'<path d="{_d([(x, y), (x, bus_to[1]), bus_to])}" {paint} marker-end="url(#{marker})"/>'
    if edge.kind in ("choice", "default") and edge.label:
        (x0, y0), (x1, _) = points[0], points[1]
        fill = PATH if lit else INK
        if x0 == x1:
            yield _text(x0 + 6, y0 + 14, edge.label, size=LABEL_SIZE, fill=fill, anchor="start")
        elif x1 > x0:
            yield _text(x0 + 8, y0 - 6, edge.label, size=LABEL_SIZE, fill=fill, anchor="start")
        else:
            yield _text(x0 - 8, y0 - 6, edge.label, size=LABEL_SIZE, fill=fill, anchor="end")
    yield "</g>"


def _markers() -> Iterator[str]:
    yield "<defs>"
    for marker, colour in (("arrow", EDGE), ("arrow-catch", CATCH), ("arrow-path", PATH)):
        yield (
            f'<marker id="{marker}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="9" markerHeight="9" '
            f'markerUnits="userSpaceOnUse" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="{colour}"/></marker>'
        )
    yield "</defs>"


def _legend(x: float, y: float, width: float, types: Sequence[str], highlighted: bool) -> Iterator[str]:
    entries = len(types)
    edge_entries = 4 if highlighted else 2
    rows = max(entries, edge_entries)
    height = 30 + rows * 24
    yield '<g class="legend">'
    yield (
        f'<rect x="{_n(x)}" y="{_n(y)}" width="{_n(width)}" height="{height}" rx="6" fill="#fafafa" '
        'stroke="#d0d0d0" stroke-width="1"/>'
    )
    yield _text(x + 12, y + 19, "Legend", size=LABEL_SIZE, anchor="start", extra=' font-weight="700"')
    for i, kind in enumerate(types):
        fill, stroke = COLOURS.get(kind, COLOURS["Task"])
        sample = _Node(kind, kind, 0, 0, 46, [], "", cx=x + 12 + 23, cy=y + 40 + i * 24, h=18)
        yield from _shape(sample, fill, stroke, 1.2)
        yield _text(x + 66, y + 44 + i * 24, kind, size=LABEL_SIZE, anchor="start")
    ex = x + width / 2 - 10
    samples: list[tuple[str, str, str, str]] = [
        ("next / branch", EDGE, ' stroke-width="1.4"', "arrow"),
        ("Catch (on error)", CATCH, f' stroke-width="1.4" stroke-dasharray="{DASH}"', "arrow-catch"),
    ]
    if highlighted:
        samples.append(("executed path", PATH, ' stroke-width="2.5"', "arrow-path"))
    for i, (label, colour, style, marker) in enumerate(samples):
        ly = y + 40 + i * 24
        yield (
            f'<path d="M{_n(ex)},{_n(ly)} L{_n(ex + 40)},{_n(ly)}" fill="none" stroke="{colour}"'
            f'{style} marker-end="url(#{marker})"/>'
        )
        yield _text(ex + 50, ly + 4, label, size=LABEL_SIZE, anchor="start")
    if highlighted:
        ly = y + 40 + len(samples) * 24
        yield (
            f'<rect x="{_n(ex)}" y="{_n(ly - 8)}" width="40" height="16" rx="4" fill="{FAILED_FILL}" '
            f'stroke="{FAILED}" stroke-width="2"/>'
        )
        yield _text(ex + 50, ly + 4, "failed state", size=LABEL_SIZE, anchor="start")
    yield "</g>"


def legend_height(types: int, highlighted: bool) -> int:
    """Height of the legend box for ``types`` state types."""
    return 30 + max(types, 4 if highlighted else 2) * 24


def render_svg(
    definition: Mapping[str, Any],
    highlight: Sequence[str] | None = None,
    failed: str | None = None,
    *,
    title: str = DEFAULT_TITLE,
    subtitle: str | None = None,
) -> str:
    """The state machine as an SVG document; ``highlight`` is an execution's path (state names in the order
    entered), drawn in a strong colour with visit counts; ``failed`` is the state that failed, drawn in red."""
    layout = _layout(definition)
    nodes = layout.nodes
    path = list(highlight or [])
    unknown = sorted({name for name in [*path, *([failed] if failed else [])] if name not in nodes})
    if unknown:
        raise ValueError(f"not states of this definition: {', '.join(unknown)}")
    visits = Counter(path)
    highlighted = bool(path) or failed is not None
    steps = set(itertools.pairwise(path))

    def traversed(edge: Edge) -> bool:
        if (edge.src, edge.dst) not in steps:
            return False
        twins = [e for e in layout.edges if (e.src, e.dst) == (edge.src, edge.dst)]
        if len(twins) == 1:
            return True
        # Next and Catch to the same state: the path cannot tell them apart, the failed state can.
        return (edge.kind == "catch") == (edge.src == failed)

    types = [t for t in COLOURS if any(n.type == t for n in nodes.values())]
    legend_h = legend_height(len(types), highlighted)
    legend_x, legend_y = float(BUS_X + 40), layout.row_top[0]
    height = layout.height
    if any(n.top < legend_y + legend_h + 20 for n in nodes.values() if n.col >= 2):
        legend_x, legend_y = MARGIN, height - 10
        height += legend_h + 10

    out: list[str] = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" font-family="sans-serif">',
        f"<title>{escape(title)}</title>",
        *_markers(),
        f'<rect x="0" y="0" width="{WIDTH}" height="{height}" fill="#ffffff"/>',
        _text(MARGIN, 28, title, size=17, anchor="start", extra=' font-weight="700"'),
    ]
    notes = [subtitle] if subtitle else []
    if highlighted:
        summary = f"execution path: {len(path)} states entered"
        notes.append(summary + (f", failed at {failed}" if failed else ""))
    for i, note in enumerate(notes):
        out.append(_text(MARGIN, 48 + i * 15, note, size=LABEL_SIZE, fill=MUTED, anchor="start"))

    first = nodes[str(definition.get("StartAt", next(iter(nodes))))]
    lit_start = bool(path) and path[0] == first.name
    colour = PATH if lit_start else EDGE
    sy = first.top - 28
    out += [
        '<g class="start">',
        f'<circle cx="{_n(first.cx)}" cy="{_n(sy)}" r="6" fill="{colour}"/>',
        f'<path d="{_d([(first.cx, sy + 6), (first.cx, first.top)])}" fill="none" stroke="{colour}" '
        f'stroke-width="{"2.5" if lit_start else "1.4"}" marker-end="url(#{"arrow-path" if lit_start else "arrow"})"/>',
        _text(first.cx + 12, sy + 4, "start", size=LABEL_SIZE, fill=MUTED, anchor="start"),
        "</g>",
    ]

    # The error bus: the Catch stubs of the happy path join it on their way to the failure column.
    hub = nodes[layout.hub] if layout.hub else None
    stubs = [e for e in layout.edges if hub and e.kind == "catch" and e.dst == hub.name and nodes[e.src].col < 2]
    bus_to: Point | None = None
    if hub is not None and stubs:
        ys = [nodes[e.src].cy + nodes[e.src].h / 4 for e in stubs] + [hub.cy]
        bus_to = (hub.left, hub.cy)
        labels = sorted({e.label for e in stubs})
        caught = labels[0] if len(labels) == 1 else "errors"
        fade = ' opacity="0.45"' if highlighted else ""
        mid = (min(ys) + hub.cy) / 2
        out += [
            f'<g class="bus" data-to={quoteattr(hub.name)}{fade}>',
            f'<path d="{_d([(BUS_X, min(ys)), (BUS_X, hub.cy), bus_to])}" fill="none" stroke="{CATCH}" '
            f'stroke-width="1.4" stroke-dasharray="{DASH}" marker-end="url(#arrow-catch)"/>',
            _text(
                BUS_X + 14,
                mid,
                f"Catch {caught} → {hub.name}",
                size=LABEL_SIZE,
                fill=MUTED,
                extra=f' transform="rotate(90 {_n(BUS_X + 14)} {_n(mid)})"',
            ),
            "</g>",
        ]

    # Edges the execution took go last, so that no faded edge is drawn over them.
    for edge in sorted(layout.edges, key=traversed):
        points = _route(edge, layout)
        twin = [e for e in layout.edges if (e.src, e.dst) == (edge.src, edge.dst) and e.kind != "catch"]
        if edge.kind == "catch" and twin:
            points = _offset(_route(twin[0], layout), TWIN_OFFSET)
        points = _snap(points, nodes[edge.src], nodes[edge.dst])
        lit = traversed(edge)
        out.extend(_edge_svg(edge, points, lit, highlighted and not lit, bus_to if edge in stubs else None))

    for node in nodes.values():
        dimmed = highlighted and not visits[node.name] and node.name != failed
        out.extend(_node_svg(node, visits[node.name], node.name == failed, dimmed))

    out.extend(_legend(legend_x, legend_y, WIDTH - MARGIN - legend_x, types, highlighted))
    out.append("</svg>")
    return "\n".join(out) + "\n"


# --- command line ---------------------------------------------------------------------------------------------


def load_definition(path: Path) -> dict[str, Any]:
    """The ASL document at ``path`` (``${...}`` substitutions left as they are: only the shape matters here)."""
    document: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return document


def render_file(asl: Path) -> str:
    """The diagram's text for the ASL file at ``asl``, as ``docs/workflow.svg`` holds it."""
    try:
        source_label = asl.resolve().relative_to(REPO_ROOT).as_posix()
    except ValueError:
        source_label = asl.name
    return render_svg(
        load_definition(asl),
        subtitle=f"Generated from {source_label} by `{REGENERATE_COMMAND}` (python -m deployflow.diagram). "
        "Do not edit by hand.",
    )


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m deployflow.diagram [--check] [--asl FILE] [--output FILE]``."""
    parser = argparse.ArgumentParser(
        prog="python -m deployflow.diagram",
        description="Draw the state machine as an SVG (docs/workflow.svg), or check the checked-in one is current.",
    )
    parser.add_argument("--asl", type=Path, default=REPO_ROOT / DEFAULT_ASL, help="the ASL definition to draw")
    parser.add_argument("--output", type=Path, default=REPO_ROOT / DEFAULT_OUTPUT, help="the SVG file to write")
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if the output file is missing or stale"
    )
    args = parser.parse_args(argv)
    asl: Path = args.asl
    output: Path = args.output
    if not asl.is_file():
        print(f"{_display(asl)}: no such file (pass --asl)", file=sys.stderr)
        return 2
    expected = render_file(asl)
    if args.check:
        if not output.is_file():
            print(f"{_display(output)} is missing: run {REGENERATE_COMMAND}", file=sys.stderr)
            return 1
        if output.read_text(encoding="utf-8") != expected:
            print(f"{_display(output)} is stale: run {REGENERATE_COMMAND}", file=sys.stderr)
            return 1
        print(f"{_display(output)} is up to date")
        return 0
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_bytes(expected.encode("utf-8"))
    print(f"wrote {_display(output)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
