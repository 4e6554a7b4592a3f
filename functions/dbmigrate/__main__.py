"""`python -m dbmigrate`: the migration container's entry point (exit codes: dbmigrate.errors.ExitCode).

Each command imports what it needs inside its own branch, so a plain migrate (every release runs one) loads
neither baseline, verify, snapshot nor the linter; keep new commands' imports in their branch too. The task
definition's command is ``python -m dbmigrate`` with no arguments: that is a migrate, and it builds no parser
(argparse, its help formatter and the seven sub-parsers were about 14 ms of a 120 ms process at head).
"""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dbmigrate.errors import CatalogMismatchError, DbMigrateError, ExitCode
from dbmigrate.events import EventSink, JsonLines
from dbmigrate.settings import DEFAULT_MIGRATIONS_DIR, Settings

if TYPE_CHECKING:
    import argparse


def build_parser() -> argparse.ArgumentParser:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m dbmigrate",
        description="Apply the pending SQL migrations (the default command). Settings come from DB_* variables.",
    )
    _add_migrate_options(parser, default=False)
    commands = parser.add_subparsers(dest="command", metavar="{migrate,plan,lint,snapshot,verify,baseline}")
    # `migrate` is the default command, spelled out (task definitions may name it).
    _add_migrate_options(commands.add_parser("migrate", help="apply the pending migrations (the default)"))
    planner = commands.add_parser(
        "plan",
        help="read-only: pending files with their statements, the lock each takes, and the lint findings "
        "(a READ ONLY transaction, no lock, no write)",
    )
    planner.add_argument("--migrations-dir", type=Path, default=argparse.SUPPRESS)
    linter = commands.add_parser("lint", help="squawk on every migration file, waivers applied (no database)")
    linter.add_argument("--migrations-dir", type=Path, default=argparse.SUPPRESS)
    snapshot = commands.add_parser(
        "snapshot", help="apply the migrations to an empty database (DB_* variables), write the expected schema JSON"
    )
    snapshot.add_argument("--migrations-dir", type=Path, default=argparse.SUPPRESS)
    snapshot.add_argument("--output", type=Path, help="default: the expected_schema.json shipped with dbmigrate")
    check = commands.add_parser("verify", help="compare the database (DB_* variables) with the expected schema")
    check.add_argument("--expected", type=Path, help="expected schema JSON (default: the one shipped with dbmigrate)")
    adopt = commands.add_parser(
        "baseline",
        help="record the migrations up to --version as applied on a database that already has their schema "
        "(refused unless the history is empty and the schema verifies clean)",
    )
    adopt.add_argument("--version", required=True, help="the version to baseline at, e.g. 0001 (the expected head)")
    adopt.add_argument("--migrations-dir", type=Path, default=argparse.SUPPRESS)
    return parser


def _add_migrate_options(parser: argparse.ArgumentParser, *, default: bool = True) -> None:
    import argparse

    # Sub-command copies use SUPPRESS so that an option given before the sub-command is not reset by it.
    parser.add_argument(
        "--dry-run",
        action="store_true",
        default=argparse.SUPPRESS if default else False,
        help="list the pending migrations; take no lock, change nothing",
    )
    parser.add_argument(
        "--migrations-dir",
        type=Path,
        default=argparse.SUPPRESS if default else None,
        help="directory of V<nnnn>__<name>.sql files (overrides MIGRATIONS_DIR)",
    )


def _stop_requested(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def cancel_on_stop() -> None:
    """Make a stop (ECS StopTask sends SIGTERM) cancel the statement in flight instead of orphaning it.

    With a select-based wait callback a query waits in Python, so SIGTERM interrupts it: the callback then
    cancels the query on the server, the migration's transaction rolls back (SQLSTATE 57014) and the runner exits
    with the migration-failed code. Without it the backend would go on running the statement (and holding the
    advisory lock) until statement_timeout.
    """
    import psycopg2.extensions

    from dbmigrate.db import wait_select

    psycopg2.extensions.set_wait_callback(wait_select)
    signal.signal(signal.SIGTERM, _stop_requested)


def parse_arguments(argv: Sequence[str]) -> dict[str, Any]:
    """The command line's options by name; no arguments at all is a plain migrate, parsed by no parser."""
    return vars(build_parser().parse_args(argv)) if argv else dict(NO_ARGUMENTS)


# What the parser makes of an empty command line (a test holds the two equal).
NO_ARGUMENTS: Mapping[str, Any] = {"command": None, "dry_run": False, "migrations_dir": None}


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None, log: EventSink | None = None) -> int:
    options = parse_arguments(sys.argv[1:] if argv is None else argv)
    log = log or JsonLines()
    command = options["command"] or "migrate"
    if command == "migrate" and options.get("dry_run"):
        command = "dry-run"
    try:
        if command == "lint":
            return _lint(options.get("migrations_dir"), log)
        settings = Settings.from_env(env, migrations_dir=options.get("migrations_dir"))
        if command == "snapshot":
            return _snapshot(settings, options["output"], log)
        if command == "verify":
            return _verify(settings, options["expected"], log)
        if command == "plan":
            return _plan(settings, log)
        if command == "baseline":
            from dbmigrate.baseline import baseline, parse_version

            baseline(settings, parse_version(options["version"]), log=log)
            return ExitCode.OK
        from dbmigrate.runner import migrate, pending

        if command == "dry-run":
            todo = pending(settings, log=log)
            for migration in todo:
                log("migration_pending", file=migration.filename, transactional=migration.transactional)
            log("dry_run_finished", target=settings.target, pending=[m.filename for m in todo])
            return ExitCode.OK
        migrate(settings, log=log)
        return ExitCode.OK
    except DbMigrateError as e:
        log(
            f"{command.replace('-', '_')}_failed",
            error=type(e).__name__,
            exit_code=int(e.exit_code),
            message=str(e),
            **e.log_fields(),
        )
        print(f"dbmigrate: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        return 130
    except Exception as e:
        log(f"{command.replace('-', '_')}_failed", error=type(e).__name__, exit_code=1, message=str(e))
        print(f"dbmigrate: internal error: {type(e).__name__}: {e}", file=sys.stderr)
        import traceback

        traceback.print_exc(file=sys.stderr)
        return ExitCode.INTERNAL_ERROR


def _snapshot(settings: Settings, output_path: Path | None, log: EventSink) -> int:
    from dbmigrate.snapshot import DEFAULT_OUTPUT, render_snapshot, snapshot_database

    expected = snapshot_database(settings, log=log)
    output = output_path or DEFAULT_OUTPUT
    output.write_text(render_snapshot(expected), encoding="utf-8")
    log(
        "snapshot_written",
        output=str(output),
        migrations=[m.filename for m in expected.migrations],
        tables=list(expected.catalog.table_names),
    )
    return ExitCode.OK


def _plan(settings: Settings, log: EventSink) -> int:
    from dbmigrate.plan import build_plan, refuse_unlinted

    refuse_unlinted(build_plan(settings, log=log).files)
    return ExitCode.OK


def _lint(migrations_dir: Path | None, log: EventSink) -> int:
    from dbmigrate.files import discover_migrations
    from dbmigrate.plan import describe, refuse_unlinted

    directory = migrations_dir or DEFAULT_MIGRATIONS_DIR
    planned = describe(discover_migrations(directory, source="--migrations-dir"), server_version=None, log=log)
    log("lint_finished", files=len(planned), failed=[p.migration.filename for p in planned if p.lint.failed])
    refuse_unlinted(planned)
    return ExitCode.OK


def _verify(settings: Settings, expected_path: Path | None, log: EventSink) -> int:
    from dbmigrate.db import connect
    from dbmigrate.verify import load_expected_schema, verify

    expected = load_expected_schema(expected_path)
    conn = connect(settings, log=log)
    with contextlib.closing(conn):
        conn.autocommit = True
        result = verify(conn, expected)
    for difference in result.differences:
        log("schema_difference", level="WARNING", **difference.to_json())
    log("verify_finished", target=settings.target, ok=result.ok, differences=len(result.differences))
    if not result.ok:
        raise CatalogMismatchError(
            f"schema of {settings.target} differs from the expected schema: " + "; ".join(result.lines())
        )
    return ExitCode.OK


if __name__ == "__main__":
    cancel_on_stop()
    sys.exit(main())
