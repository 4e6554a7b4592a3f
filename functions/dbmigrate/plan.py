"""`python -m dbmigrate plan`: what a migrate would do, read-only — pending files, their statements, the lock each
statement takes, and squawk's findings with the file's waivers.

Read-only for real: one ``READ ONLY`` transaction (PostgreSQL refuses any write in it), no advisory lock, no history
table created; the only relation it reads is the history table (ACCESS SHARE, which conflicts with nothing but
ACCESS EXCLUSIVE), under a short ``lock_timeout`` so even that cannot queue behind a schema change for long. The
same description is logged by ``migrate`` before it applies anything, so a release's record shows what was applied
the way a dry run shows what would be.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from dbmigrate import history
from dbmigrate.db import connect
from dbmigrate.errors import MigrationLintError
from dbmigrate.events import EventSink, discard
from dbmigrate.files import MigrationFile, discover_migrations
from dbmigrate.lint import FileLint, lint_migrations
from dbmigrate.locks import strongest
from dbmigrate.settings import Settings

PLAN_LOCK_TIMEOUT_MS = 2000  # the history read may wait this long behind an ACCESS EXCLUSIVE holder, no longer
MAX_STATEMENTS_PER_FILE = 200  # keeps one log event (and the Step Functions state) bounded for a huge file


@dataclass(frozen=True)
class PlannedFile:
    migration: MigrationFile
    lint: FileLint

    @property
    def lock(self) -> str | None:
        """The strongest lock any statement of the file takes."""
        from dbmigrate.locks import statement_locks

        return strongest([statement_locks(s.node).lock or "" for s in self.migration.statements])

    def to_json(self) -> dict[str, Any]:
        """The ``plan_file`` event's fields (also what Check migration task puts in the record)."""
        from dbmigrate.locks import BLOCKS, statement_locks

        statements = []
        modes = []
        for statement in self.migration.statements:
            locks = statement_locks(statement.node)
            modes.append(locks.lock or "")
            statements.append(
                {
                    "number": statement.number,
                    "line": statement.line,
                    "kind": statement.kind.removesuffix("Stmt"),
                    "excerpt": statement.excerpt(),
                    "lock": locks.lock,
                    "locks": locks.summary(),
                    "blocks": BLOCKS.get(locks.lock or ""),
                    "notes": list(locks.notes),
                }
            )
        return {
            "file": self.migration.filename,
            "version": self.migration.version,
            "checksum": self.migration.checksum,
            "transactional": self.migration.transactional,
            "lock": strongest([mode for mode in modes if mode]),
            "lint": "fail" if self.lint.failed else "pass",
            "findings": [finding.to_json() for finding in self.lint.findings],
            "waivers": [
                {"rule": w.rule, "reason": w.reason, "line": w.line, "used": w not in self.lint.unused_waivers}
                for w in self.migration.waivers
            ],
            "statements_total": len(statements),
            "statements": statements[:MAX_STATEMENTS_PER_FILE],
        }


@dataclass(frozen=True)
class Plan:
    target: str
    applied: int
    head_version: int | None
    files: tuple[PlannedFile, ...]
    duration_ms: int

    @property
    def lint_failed(self) -> tuple[PlannedFile, ...]:
        return tuple(planned for planned in self.files if planned.lint.failed)


def describe(
    migrations: Sequence[MigrationFile], *, server_version: int | None, log: EventSink
) -> tuple[PlannedFile, ...]:
    """Lint the files and log one ``plan_file`` event each (statements, locks, findings, waivers)."""
    verdicts = lint_migrations(migrations, server_version=server_version)
    planned = tuple(PlannedFile(migration, verdicts[migration.filename]) for migration in migrations)
    for item in planned:
        log("plan_file", level="WARNING" if item.lint.failed else "INFO", **item.to_json())
    return planned


def refuse_unlinted(planned: Sequence[PlannedFile]) -> None:
    """Raise MigrationLintError naming every unwaived finding (nothing has been applied when this is called)."""
    failed = [item for item in planned if item.lint.failed]
    if not failed:
        return
    details = "; ".join(
        f"{item.migration.filename} {finding.render()}" for item in failed for finding in item.lint.blocking
    )
    raise MigrationLintError(
        f"lint failed, nothing applied: {details} — fix the file, or if the change is safe for the running service "
        "version add a line '-- deployflow:allow <rule>: <reason>'"
    )


def build_plan(settings: Settings, *, log: EventSink = discard) -> Plan:
    """Read the history in a READ ONLY transaction, verify it against the files, describe and lint what is pending."""
    started = time.monotonic()
    files = discover_migrations(settings.migrations_dir)
    conn = connect(settings, log=log)
    from dbmigrate.runner import database_errors, plan

    try:
        with database_errors(settings):
            conn.set_session(readonly=True, autocommit=False)
            with conn.cursor() as cur:
                cur.execute("SELECT set_config('lock_timeout', %s, true)", (str(PLAN_LOCK_TIMEOUT_MS),))
            rows = history.read_history(conn)
            todo = plan(files, rows)
            server_version = conn.server_version
            conn.rollback()
    finally:
        with contextlib.suppress(Exception):
            conn.close()
    planned = describe(todo, server_version=server_version, log=log)
    applied = len(rows or ())
    head = max((row.version for row in rows or ()), default=None)
    result = Plan(
        target=settings.target,
        applied=applied,
        head_version=head,
        files=planned,
        duration_ms=round((time.monotonic() - started) * 1000),
    )
    log(
        "plan_finished",
        level="WARNING" if result.lint_failed else "INFO",
        target=settings.target,
        already_applied=applied,
        head_version=head,
        pending=[item.migration.filename for item in planned],
        lock=strongest([item.lock or "" for item in planned]),
        lint_failed=[item.migration.filename for item in result.lint_failed],
        duration_ms=result.duration_ms,
    )
    return result
