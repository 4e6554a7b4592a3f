"""The history table: which migration versions are applied, with the checksum of the file that was applied."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import psycopg2.extensions

HISTORY_TABLE = "deployflow_schema_history"

_CREATE = f"""
CREATE TABLE IF NOT EXISTS public.{HISTORY_TABLE} (
    version     integer     NOT NULL PRIMARY KEY,
    name        text        NOT NULL,
    checksum    text        NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now(),
    duration_ms integer     NOT NULL,
    applied_by  text        NOT NULL
)
"""
_COMMENT = f"COMMENT ON TABLE public.{HISTORY_TABLE} IS 'Migrations applied by deployflow dbmigrate (one row per file)'"


@dataclass(frozen=True)
class AppliedRow:
    version: int
    name: str
    checksum: str
    applied_at: datetime
    duration_ms: int
    applied_by: str


def history_exists(conn: psycopg2.extensions.connection) -> bool:
    with conn.cursor() as cur:
        cur.execute("SELECT to_regclass(%s) IS NOT NULL", (f"public.{HISTORY_TABLE}",))
        row = cur.fetchone()
    return bool(row and row[0])


def read_history(conn: psycopg2.extensions.connection) -> list[AppliedRow] | None:
    """Rows in version order, or None when the table does not exist yet. Read-only, takes no lock."""
    if not history_exists(conn):
        return None
    with conn.cursor() as cur:
        cur.execute(
            f"SELECT version, name, checksum, applied_at, duration_ms, applied_by FROM public.{HISTORY_TABLE} "
            "ORDER BY version"
        )
        return [AppliedRow(*row) for row in cur.fetchall()]


def ensure_history_table(conn: psycopg2.extensions.connection) -> None:
    """Create the table if missing (called under the advisory lock, in autocommit)."""
    if history_exists(conn):
        return
    with conn.cursor() as cur:
        cur.execute(_CREATE)
        cur.execute(_COMMENT)


def record(
    conn: psycopg2.extensions.connection, *, version: int, name: str, checksum: str, duration_ms: int, applied_by: str
) -> None:
    with conn.cursor() as cur:
        cur.execute(
            f"INSERT INTO public.{HISTORY_TABLE} (version, name, checksum, duration_ms, applied_by) "
            "VALUES (%s, %s, %s, %s, %s)",
            (version, name, checksum, duration_ms, applied_by),
        )
