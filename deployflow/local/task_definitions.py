"""The migration task definition examples of docs/deploy.md (docs/examples/*.json), filled in.

The documentation and the local stack register the same document, so the two cannot drift: a user fills the
``${NAME}`` placeholders with their values, the local stack with its own.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "docs" / "examples"
EXAMPLES: dict[str, str] = {"fargate": "migration-task-fargate.json", "ec2-bridge": "migration-task-ec2-bridge.json"}
PLACEHOLDER = re.compile(r"\$\{([A-Z][A-Z0-9_]*)\}")


class MissingValueError(KeyError):
    """A placeholder of the example has no value."""


def placeholders(kind: Literal["fargate", "ec2-bridge"]) -> set[str]:
    """The ``${NAME}`` placeholders of an example."""
    return set(PLACEHOLDER.findall((EXAMPLES_DIR / EXAMPLES[kind]).read_text(encoding="utf-8")))


def migration_task_definition(kind: Literal["fargate", "ec2-bridge"], values: Mapping[str, str]) -> dict[str, Any]:
    """RegisterTaskDefinition arguments: the example with every placeholder replaced (JSON-escaped)."""
    text = (EXAMPLES_DIR / EXAMPLES[kind]).read_text(encoding="utf-8")
    missing = sorted(set(PLACEHOLDER.findall(text)) - set(values))
    if missing:
        raise MissingValueError(f"{EXAMPLES[kind]}: no value for {', '.join(missing)}")
    filled = PLACEHOLDER.sub(lambda m: json.dumps(str(values[m.group(1)]))[1:-1], text)
    document: dict[str, Any] = json.loads(filled)
    return document
