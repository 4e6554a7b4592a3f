"""``make expected-schema``: regenerate functions/dbmigrate/expected_schema.json from sql/ on a scratch PostgreSQL.

The snapshot itself is dbmigrate's (``snapshot_database``); the scratch cluster is this repository's tooling, which
the migration package must not import.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from dbmigrate.events import JsonLines
from dbmigrate.settings import DEFAULT_MIGRATIONS_DIR, Settings
from dbmigrate.snapshot import DEFAULT_OUTPUT, render_snapshot, snapshot_database

from deployflow.local.postgres import PostgresCluster


def main(argv: Sequence[str] | None = None) -> int:
    """Apply the migrations to a fresh database of a throwaway cluster and write the snapshot."""
    parser = argparse.ArgumentParser(prog="python -m deployflow.local.expected_schema", description=__doc__)
    parser.add_argument("--migrations-dir", type=Path, default=DEFAULT_MIGRATIONS_DIR)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    with PostgresCluster() as cluster:
        params = cluster.create_database("deployflow_snapshot")
        settings = Settings.from_env(params.as_env(), migrations_dir=args.migrations_dir)
        expected = snapshot_database(settings, log=JsonLines(sys.stderr))
    args.output.write_text(render_snapshot(expected), encoding="utf-8")
    print(f"wrote {args.output} ({len(expected.migrations)} migrations, {len(expected.catalog.table_names)} tables)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
