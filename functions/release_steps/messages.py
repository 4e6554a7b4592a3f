"""One-line messages from a msgspec validation error and from a Lambda error cause.

Pure (msgspec and the standard library only): the handlers and the ``deployflow`` CLI share it, and the CLI's
wheel ships it without Powertools or any handler.
"""

from __future__ import annotations

import json
import re
from typing import Any

from msgspec import Struct, ValidationError, convert, structs

FIELD_MAX_CHARS = 80  # a field name comes from input: an unknown key can be any length
FIELDS_LISTED = 10
MESSAGE_MAX_CHARS = 1000


def clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, marked when cut: every string from input passes here first."""
    return text if len(text) <= limit else text[: max(0, limit - 14)].rstrip() + " ...(clipped)"


def json_type(value: Any) -> str:
    """The JSON name of a value's type, as the operator typed it."""
    names = {list: "an array", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


# msgspec's message: "<what is wrong>[ - at `$.path`]"; its type names are JSON's, written as code.
_AT = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_FIELD = re.compile(r"^Object (?P<what>missing required|contains unknown) field `(?P<field>[^`]*)`$")
_JSON_TYPES = {
    "`object`": "an object",
    "`array`": "an array",
    "`str`": "a string",
    "`int`": "an integer",
    "`float`": "a number",
    "`bool`": "a boolean",
    "`null`": "null",
}


def _problem(error: ValidationError, within: str = "") -> str:
    """``field: what is wrong`` (or only what is wrong, when the error has no path) for one msgspec error."""
    found = _AT.match(str(error))
    message, path = (found["msg"], found["path"] or "") if found else (str(error), "")
    field = within + path if within else path.removeprefix(".")
    missing = _FIELD.match(message)
    if missing:
        field = f"{field}.{missing['field']}" if field else missing["field"]
        message = "field required" if missing["what"] == "missing required" else "unknown field"
    else:
        message = message[:1].lower() + message[1:]
        for code, name in _JSON_TYPES.items():
            message = message.replace(code, name)
    # No path: the document itself, or a model's own check (``__post_init__``).
    return f"{clip(field, FIELD_MAX_CHARS)}: {clip(message, 200)}" if field else clip(message, 200)


def describe_validation_error(error: ValidationError, what: str) -> str:
    """One line naming the offending field, e.g. ``imageTag: expected a string matching regex ...`` (bounded).

    msgspec stops at the first problem, so the line names one field; ``describe_every_field`` names them all for a
    document an operator typed."""
    return clip(f"invalid {what}: {_problem(error)}", MESSAGE_MAX_CHARS)


def describe_every_field(model: type[Struct], document: Any, error: ValidationError, what: str) -> str:
    """One line naming every top-level field of ``document`` at fault for ``model`` (``error`` is msgspec's first):
    each present field checked alone, then the required ones missing, then unknown keys if the model forbids them,
    so an operator fixes the input in one go. Within a field, its first problem; a check across fields (a model's
    ``__post_init__``) is ``error`` itself. Bounded: FIELDS_LISTED fields, MESSAGE_MAX_CHARS in all."""
    if not isinstance(document, dict):
        return describe_validation_error(error, what)
    fields = structs.fields(model)
    problems = []
    for field in fields:
        if field.encode_name not in document:
            if field.required:
                problems.append(f"{field.encode_name}: field required")
            continue
        try:
            convert(document[field.encode_name], field.type)
        except ValidationError as e:
            problems.append(_problem(e, within=field.encode_name))
    if model.__struct_config__.forbid_unknown_fields:
        known = {field.encode_name for field in fields}
        problems += [f"{clip(str(key), FIELD_MAX_CHARS)}: unknown field" for key in document if key not in known]
    if not problems:
        return describe_validation_error(error, what)
    shown = problems[:FIELDS_LISTED]
    if len(problems) > FIELDS_LISTED:
        shown.append(f"... and {len(problems) - FIELDS_LISTED} more")
    return clip(f"invalid {what}: " + "; ".join(shown), MESSAGE_MAX_CHARS)


def cause_message(cause: str | None) -> str:
    """The error message inside a Lambda cause (``{"errorMessage", "errorType", ...}``), else the cause itself."""
    if not cause:
        return ""
    try:
        parsed = json.loads(cause)
    except ValueError:
        return cause.strip()
    if isinstance(parsed, dict) and isinstance(parsed.get("errorMessage"), str):
        return str(parsed["errorMessage"]).strip()
    return cause.strip()
