"""One-line messages from a pydantic validation error and from a Lambda error cause.

Pure (pydantic and the standard library only): the handlers and the ``deployflow`` CLI share it, and the CLI's
wheel ships it without Powertools or any handler.
"""

from __future__ import annotations

import json

from pydantic import ValidationError


def describe_validation_error(error: ValidationError, what: str) -> str:
    """One line naming every offending field, e.g. ``imageTag: String should match pattern ...``."""
    parts = []
    for err in error.errors():
        field = ".".join(str(p) for p in err["loc"]) or "(document)"
        parts.append(f"{field}: {err['msg']}")
    return f"invalid {what}: " + "; ".join(parts)


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
