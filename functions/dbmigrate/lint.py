"""Migration lint: squawk (the PostgreSQL migration linter, PyPI squawk-cli) on pending files, with reasoned waivers.

A finding fails its file unless the file carries a waiver for that rule, a comment line of its own:

    -- deployflow:allow ban-drop-column: column unused since 2026-10, service v41 no longer reads it

A waiver names a rule of the pinned squawk (KNOWN_RULES) and gives a reason; anything else is refused when the file
is parsed (``lint``, ``plan``; a run, for its pending files before the lock). squawk's own ``-- squawk-ignore``
comments are refused too: they would silence a finding without a reason the plan and the record can show.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dbmigrate.errors import DbConfigurationError, MigrationFileError

if TYPE_CHECKING:
    from dbmigrate.files import MigrationFile

SQUAWK_VERSION = "2.66.0"  # = constraints.txt; tests/dbmigrate/test_lint.py checks the installed binary against it
SQUAWK_TIMEOUT_SECONDS = 30
DEFAULT_PG_VERSION = "15.0"  # the local stack's server; the runner passes the connected server's version

# The rule names squawk 2.66.0 accepts (its `--exclude` refuses any other; a test checks each one against the binary).
KNOWN_RULES = frozenset(
    {
        "adding-field-with-default",
        "adding-foreign-key-constraint",
        "adding-not-nullable-field",
        "adding-required-field",
        "adding-serial-primary-key-field",
        "ban-alter-domain-with-add-constraint",
        "ban-char-field",
        "ban-concurrent-index-creation-in-transaction",
        "ban-create-domain-with-constraint",
        "ban-drop-column",
        "ban-drop-database",
        "ban-drop-not-null",
        "ban-drop-table",
        "ban-duplicate-column-assignments",
        "ban-truncate-cascade",
        "ban-uncommitted-transaction",
        "changing-column-type",
        "constraint-missing-not-valid",
        "disallowed-unique-constraint",
        "identifier-too-long",
        "prefer-bigint-over-int",
        "prefer-bigint-over-smallint",
        "prefer-identity",
        "prefer-repack",
        "prefer-robust-stmts",
        "prefer-text-field",
        "prefer-timestamptz",
        "renaming-column",
        "renaming-table",
        "require-concurrent-index-creation",
        "require-concurrent-index-deletion",
        "require-concurrent-partition-detach",
        "require-concurrent-reindex",
        "require-enum-value-ordering",
        "require-lock-timeout",
        "require-statement-timeout",
        "require-table-schema",
        "require-timeout-settings",
        "transaction-nesting",
    }
)

# Rules off for every file, each for a reason of this runner's (README: "Lint").
EXCLUDED_RULES: dict[str, str] = {
    "require-lock-timeout": "the runner sets lock_timeout (DB_LOCK_TIMEOUT_MS) for every file",
    "require-statement-timeout": "the runner sets statement_timeout (DB_STATEMENT_TIMEOUT_MS) for every file",
    "require-timeout-settings": "the runner sets lock_timeout and statement_timeout for every file",
    "prefer-robust-stmts": "sql/README.md: no IF [NOT] EXISTS; the history makes reruns no-ops and guards hide drift",
    "prefer-bigint-over-int": "aimed at ids, which are bigint identities here; counters may stay integer",
    "prefer-bigint-over-smallint": "aimed at ids, which are bigint identities here",
}

WAIVER_WORD = "deployflow:allow"
_WAIVER = re.compile(r"^--\s*deployflow:allow\s+(?P<rule>[^\s:]+)\s*:\s*(?P<reason>.*?)\s*$")
_SQUAWK_IGNORE = re.compile(r"squawk-ignore")
_MIN_REASON_CHARS = 8


class LintUnavailableError(DbConfigurationError):
    """The squawk binary is missing, of another version, or did not answer."""

    def __init__(self, problem: str) -> None:
        super().__init__("squawk", problem)


@dataclass(frozen=True)
class Waiver:
    """One ``-- deployflow:allow <rule>: <reason>`` line of a file."""

    rule: str
    reason: str
    line: int


@dataclass(frozen=True)
class Finding:
    """One squawk finding on a file; ``waived`` is the waiver's reason when the file allows the rule."""

    rule: str
    line: int
    message: str
    help: str | None
    waived: str | None = None

    def to_json(self) -> dict[str, object]:
        return {"rule": self.rule, "line": self.line, "message": self.message, "help": self.help, "waived": self.waived}

    def render(self) -> str:
        waived = f" (waived: {self.waived})" if self.waived else ""
        return f"line {self.line} {self.rule}: {self.message}{waived}"


@dataclass(frozen=True)
class FileLint:
    """squawk's verdict on one file: failed when a finding has no waiver."""

    filename: str
    findings: tuple[Finding, ...]
    unused_waivers: tuple[Waiver, ...]

    @property
    def failed(self) -> bool:
        return any(finding.waived is None for finding in self.findings)

    @property
    def blocking(self) -> tuple[Finding, ...]:
        return tuple(finding for finding in self.findings if finding.waived is None)


def parse_waivers(filename: str, lines: Sequence[str]) -> tuple[Waiver, ...]:
    """The file's waivers; a malformed one, an unknown or excluded rule, or a missing reason is refused."""
    waivers: dict[str, Waiver] = {}
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if _SQUAWK_IGNORE.search(line) and line.startswith("--"):
            raise MigrationFileError(
                filename,
                f"line {number}: squawk-ignore comments are not used here; write "
                f"'-- {WAIVER_WORD} <rule>: <reason>' so the plan and the record show why",
            )
        if WAIVER_WORD not in line:
            continue
        match = _WAIVER.match(line)
        if match is None:
            raise MigrationFileError(
                filename, f"line {number}: a waiver is a comment line of its own: '-- {WAIVER_WORD} <rule>: <reason>'"
            )
        rule, reason = match.group("rule"), match.group("reason")
        if rule not in KNOWN_RULES:
            raise MigrationFileError(
                filename,
                f"line {number}: waiver for unknown rule {rule!r} (not a rule of squawk {SQUAWK_VERSION}; "
                "see https://squawkhq.com/docs/rules)",
            )
        if rule in EXCLUDED_RULES:
            raise MigrationFileError(
                filename, f"line {number}: rule {rule} is off for every file ({EXCLUDED_RULES[rule]}); drop the waiver"
            )
        if len(reason) < _MIN_REASON_CHARS:
            raise MigrationFileError(
                filename,
                f"line {number}: waiver for {rule} has no reason; say why it is safe, e.g. "
                f"'-- {WAIVER_WORD} {rule}: column unused since 2026-10, service v41'",
            )
        if rule in waivers:
            raise MigrationFileError(filename, f"line {number}: {rule} is already waived on line {waivers[rule].line}")
        waivers[rule] = Waiver(rule=rule, reason=reason, line=number)
    return tuple(waivers.values())


def squawk_binary() -> Path:
    """The squawk of this Python's environment (the venv's bin/, /usr/local/bin in the image), else PATH's."""
    beside = Path(sys.executable).parent / "squawk"
    if beside.is_file():
        return beside
    found = shutil.which("squawk")
    if found is None:
        raise LintUnavailableError(f"binary not found beside {sys.executable} or on PATH (pip install squawk-cli)")
    return Path(found)


def _pg_version(server_version: int | None) -> str:
    """psycopg2's server_version (150004) as squawk's --pg-version (15.4)."""
    if not server_version:
        return DEFAULT_PG_VERSION
    return f"{server_version // 10000}.{server_version % 10000}"


def squawk_version(binary: Path) -> str:
    try:
        done = subprocess.run(
            [str(binary), "--version"], capture_output=True, text=True, timeout=SQUAWK_TIMEOUT_SECONDS, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise LintUnavailableError(f"{binary} --version failed: {e}") from None
    return done.stdout.strip().removeprefix("squawk ").strip()


def lint_text(
    filename: str, text: str, *, transactional: bool, waivers: Iterable[Waiver], binary: Path, pg_version: str
) -> FileLint:
    """squawk on one file's text (stdin, so the linted text is exactly the checksummed one)."""
    args = [str(binary), "--reporter", "json", "--stdin-filepath", filename, "--pg-version", pg_version]
    # A transactional file runs inside the runner's transaction; a no-transaction file in autocommit.
    args.append("--assume-in-transaction" if transactional else "--no-assume-in-transaction")
    args += ["--exclude", ",".join(sorted(EXCLUDED_RULES))]
    try:
        done = subprocess.run(
            args, input=text, capture_output=True, text=True, timeout=SQUAWK_TIMEOUT_SECONDS, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise LintUnavailableError(f"linting {filename} failed: {e}") from None
    if done.returncode not in (0, 1):
        raise LintUnavailableError(f"exited {done.returncode} on {filename}: {' '.join(done.stderr.split())[:300]}")
    try:
        raw = json.loads(done.stdout or "[]")
    except ValueError:
        raise LintUnavailableError(f"printed no JSON report for {filename}: {done.stdout[:200]!r}") from None
    allowed = {waiver.rule: waiver for waiver in waivers}
    findings = tuple(
        Finding(
            rule=str(item.get("rule_name")),
            line=int(item.get("line", 0)) + 1,  # squawk's JSON lines are 0-based
            message=str(item.get("message", "")),
            help=item.get("help"),
            waived=allowed[item["rule_name"]].reason if item.get("rule_name") in allowed else None,
        )
        for item in raw
    )
    used = {finding.rule for finding in findings}
    return FileLint(
        filename=filename,
        findings=findings,
        unused_waivers=tuple(waiver for rule, waiver in allowed.items() if rule not in used),
    )


def lint_migrations(migrations: Sequence[MigrationFile], *, server_version: int | None = None) -> dict[str, FileLint]:
    """squawk's verdict per file (by file name); no files, no squawk process."""
    if not migrations:
        return {}
    binary = squawk_binary()
    pg_version = _pg_version(server_version)
    return {
        migration.filename: lint_text(
            migration.filename,
            migration.text,
            transactional=migration.transactional,
            waivers=migration.waivers,
            binary=binary,
            pg_version=pg_version,
        )
        for migration in migrations
    }
