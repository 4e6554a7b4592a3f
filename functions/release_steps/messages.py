"""One-line messages from a pydantic validation error and from a Lambda error cause.

Pure (pydantic and the standard library only): the handlers and the ``deployflow`` CLI share it, and the CLI's
wheel ships it without Powertools or any handler.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

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


def describe_validation_error(error: ValidationError, what: str) -> str:
    """One line naming the offending fields, e.g. ``imageTag: String should match pattern ...`` (bounded)."""
    errors = error.errors()
    parts = []
    for err in errors[:FIELDS_LISTED]:
        field = clip(".".join(str(p) for p in err["loc"]) or "(document)", FIELD_MAX_CHARS)
        parts.append(f"{field}: {clip(err['msg'], 200)}")
    if len(errors) > FIELDS_LISTED:
        parts.append(f"... and {len(errors) - FIELDS_LISTED} more")
    return clip(f"invalid {what}: " + "; ".join(parts), MESSAGE_MAX_CHARS)


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
