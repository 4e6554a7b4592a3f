"""Generate expected_schema.json: apply the migrations to an empty database, read its catalog, write the snapshot.

The repository's `make expected-schema` gives it a scratch PostgreSQL (deployflow.local.expected_schema).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg2.extensions

from dbmigrate.catalog import read_catalog
from dbmigrate.db import connect
from dbmigrate.events import EventSink, discard
from dbmigrate.files import MigrationFile, discover_migrations
from dbmigrate.runner import migrate
from dbmigrate.settings import Settings
from dbmigrate.verify import EXPECTED_SCHEMA_FILE, ExpectedSchema, MigrationRef

DEFAULT_OUTPUT = Path(__file__).resolve().parent / EXPECTED_SCHEMA_FILE


def build_expected_schema(conn: psycopg2.extensions.connection, files: Sequence[MigrationFile]) -> ExpectedSchema:
    """The snapshot of a database the files were just applied to."""
    return ExpectedSchema(
        migrations=tuple(MigrationRef(f.version, f.name, f.checksum) for f in files),
        catalog=read_catalog(conn),
    )


def render_snapshot(expected: ExpectedSchema) -> str:
    """Indented JSON with one line per column / key / index, so a schema change reads as a small diff."""
    return _render(expected.to_json(), 0) + "\n"


def _nested(value: Any) -> bool:
    return isinstance(value, dict) or (isinstance(value, list) and any(isinstance(item, dict) for item in value))


def _render(value: Any, depth: int) -> str:
    pad = "  " * (depth + 1)
    if isinstance(value, dict) and any(_nested(item) for item in value.values()):
        items = [f"{pad}{json.dumps(key)}: {_render(item, depth + 1)}" for key, item in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + "  " * depth + "}"
    if isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
        items = [f"{pad}{_render(item, depth + 1)}" for item in value]
        return "[\n" + ",\n".join(items) + "\n" + "  " * depth + "]"
    return json.dumps(value, ensure_ascii=False)


def snapshot_database(settings: Settings, *, log: EventSink = discard) -> ExpectedSchema:
    """Apply settings.migrations_dir to the (empty) database of settings and read back the expected schema."""
    files = discover_migrations(settings.migrations_dir)
    migrate(settings, log=log)
    with contextlib.closing(connect(settings, log=log)) as conn:
        conn.autocommit = True
        return build_expected_schema(conn, files)
