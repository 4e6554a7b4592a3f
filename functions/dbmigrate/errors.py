"""Errors of the migration runner; each maps to one exit code of `python -m dbmigrate` (the CLI contract)."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Exit codes of `python -m dbmigrate`. Stable: the release workflow and the local stack read them."""

    OK = 0
    INTERNAL_ERROR = 1
    USAGE = 2  # argparse's own code for a bad command line
    CONFIGURATION = 3
    DATABASE_UNREACHABLE = 4
    CONNECTION_REJECTED = 5
    LOCK_NOT_ACQUIRED = 6
    HISTORY_MISMATCH = 7
    MIGRATION_FAILED = 8
    MIGRATION_LOCK_TIMEOUT = 9
    SCHEMA_MISMATCH = 10
    LINT_FAILED = 11


STATEMENT_MAX_CHARS = 200  # the statement in the exit line: enough to recognise it, never a whole file


class DbMigrateError(Exception):
    """Base class: a failure the runner explains in one line."""

    exit_code: ExitCode = ExitCode.INTERNAL_ERROR

    def log_fields(self) -> dict[str, object]:
        """Facts of the failure for the runner's exit line (``migrate_failed``), beside its message."""
        return {}


class DbConfigurationError(DbMigrateError):
    """A setting is missing or invalid; the message names the environment variable."""

    exit_code = ExitCode.CONFIGURATION

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"configuration error: {variable} {problem}")
        self.variable = variable
        self.problem = problem


class MigrationFileError(DbMigrateError):
    """A file in the migrations directory is malformed (name, encoding, marker, transaction control)."""

    exit_code = ExitCode.CONFIGURATION

    def __init__(self, file: str, problem: str) -> None:
        super().__init__(f"invalid migration file {file}: {problem}")
        self.file = file

    def log_fields(self) -> dict[str, object]:
        return {"file": self.file}


class DbUnreachableError(DbMigrateError):
    """The database did not accept a connection within the wait bound (or the connection was lost)."""

    exit_code = ExitCode.DATABASE_UNREACHABLE


class DbConnectionRejectedError(DbMigrateError):
    """The server answered but refused us (authentication, missing database or role): retrying will not help."""

    exit_code = ExitCode.CONNECTION_REJECTED


class MigrationLockNotAcquiredError(DbMigrateError):
    """Another runner held the migration advisory lock for longer than the lock wait bound."""

    exit_code = ExitCode.LOCK_NOT_ACQUIRED


class MigrationHistoryMismatchError(DbMigrateError):
    """The history table disagrees with the migration files; nothing was applied."""

    exit_code = ExitCode.HISTORY_MISMATCH


class MigrationChecksumMismatchError(MigrationHistoryMismatchError):
    """An already-applied migration file was edited."""

    def __init__(self, file: str, applied_checksum: str, file_checksum: str) -> None:
        super().__init__(
            f"checksum mismatch: {file} was edited after it was applied "
            f"(history {applied_checksum[:12]}, file {file_checksum[:12]}); "
            "restore the file and put the change in a new migration"
        )
        self.file = file


class MigrationFileMissingError(MigrationHistoryMismatchError):
    """A version recorded in the history has no file any more."""

    def __init__(self, version: int, name: str) -> None:
        super().__init__(
            f"applied migration V{version:04d}__{name}.sql is missing from the migrations directory "
            "(applied files must never be deleted or renamed)"
        )
        self.version = version


class MigrationOutOfOrderError(MigrationHistoryMismatchError):
    """A pending file has a lower version than one already applied."""

    def __init__(self, file: str, head_version: int) -> None:
        super().__init__(
            f"out-of-order migration: {file} is pending but V{head_version:04d} is already applied; "
            "renumber it above the applied head"
        )
        self.file = file


class MigrationStatementError(DbMigrateError):
    """A statement of a migration file failed; the file's transaction was rolled back."""

    exit_code = ExitCode.MIGRATION_FAILED

    def __init__(
        self,
        *,
        file: str,
        statement_number: int,
        line: int,
        excerpt: str,
        sqlstate: str | None,
        error: str,
        transactional: bool,
    ) -> None:
        outcome = (
            "rolled back, history unchanged"
            if transactional
            else "no-transaction file: statements before this one stay applied, history unchanged"
        )
        super().__init__(
            f"migration {file} failed at statement {statement_number} (line {line}) [{excerpt}]: "
            f"SQLSTATE {sqlstate or 'unknown'}: {error} ({outcome})"
        )
        self.file = file
        self.statement_number = statement_number
        self.line = line
        self.excerpt = excerpt
        self.sqlstate = sqlstate
        self.error = error
        self.transactional = transactional

    def log_fields(self) -> dict[str, object]:
        return {
            "file": self.file,
            "statement_number": self.statement_number,
            "line": self.line,
            "statement": self.excerpt[:STATEMENT_MAX_CHARS],
            "sqlstate": self.sqlstate,
            "pg_error": self.error,
            "transactional": self.transactional,
        }


class MigrationDatabaseError(DbMigrateError):
    """A database error outside a migration statement (e.g. no privilege to create the history table)."""

    exit_code = ExitCode.MIGRATION_FAILED


class MigrationLockTimeoutError(MigrationStatementError):
    """A migration statement waited longer than lock_timeout for a table lock (SQLSTATE 55P03); safe to retry."""

    exit_code = ExitCode.MIGRATION_LOCK_TIMEOUT


class MigrationLintError(DbMigrateError):
    """squawk found something in a pending file that the file does not waive; nothing was applied."""

    exit_code = ExitCode.LINT_FAILED


class CatalogMismatchError(DbMigrateError):
    """`python -m dbmigrate verify`: the live schema differs from the expected schema."""

    exit_code = ExitCode.SCHEMA_MISMATCH


class BaselineHistoryNotEmptyError(MigrationHistoryMismatchError):
    """`baseline`: the history table already has rows; a baseline is only for a database the runner never touched."""


class BaselineSchemaMismatchError(CatalogMismatchError):
    """`baseline`: the live schema differs from the expected schema of the baseline version; nothing was recorded."""
