"""One-line messages from a msgspec validation error and from a Lambda error cause.

Pure (msgspec and the standard library only): the handlers and the ``deployflow`` CLI share it, and the CLI's
wheel ships it without Powertools or any handler.
"""

from __future__ import annotations

import json
import re
from typing import Any

from msgspec import ValidationError

FIELD_MAX_CHARS = 80  # a field name comes from input: an unknown key can be any length
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


def describe_validation_error(error: ValidationError, what: str) -> str:
    """One line naming the offending field, e.g. ``imageTag: expected a string matching regex ...`` (bounded).

    msgspec stops at the first problem, so the line names one field: the operator fixes it and tries again."""
    found = _AT.match(str(error))
    message, path = (found["msg"], found["path"] or "") if found else (str(error), "")
    field = path.removeprefix(".")
    missing = _FIELD.match(message)
    if missing:
        field = f"{field}.{missing['field']}" if field else missing["field"]
        message = "field required" if missing["what"] == "missing required" else "unknown field"
    else:
        message = message[:1].lower() + message[1:]
        for code, name in _JSON_TYPES.items():
            message = message.replace(code, name)
    named = f"{clip(field, FIELD_MAX_CHARS)}: " if field else ""  # no path: the document itself, or a model's check
    return clip(f"invalid {what}: {named}{clip(message, 200)}", MESSAGE_MAX_CHARS)


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
