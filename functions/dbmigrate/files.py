"""Migration files: discovery in version order, name parsing, checksums and the no-transaction marker.

A file's statements (split by pglast) and waivers are parsed on first use: a run at head compares checksums only,
so it never loads the parser or the linter; the files it applies are parsed, and refused, before the lock is taken.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from dbmigrate.errors import DbConfigurationError, MigrationFileError
from dbmigrate.statements import Statement, StatementSplitError, split_statements

if TYPE_CHECKING:
    from dbmigrate.lint import Waiver

FILE_NAME = re.compile(r"^V(?P<version>\d{4})__(?P<name>[a-z0-9]+(?:_[a-z0-9]+)*)\.sql$")
NO_TRANSACTION_MARKER = "-- deployflow:no-transaction"
_MARKER_WORD = "deployflow:no-transaction"


@dataclass(frozen=True)
class MigrationFile:
    """One migration file: name, checksum and marker read at once; statements and waivers parsed on first use."""

    version: int
    name: str
    filename: str
    checksum: str
    transactional: bool
    text: str = field(default="", repr=False, compare=False)  # the normalized text the checksum is of

    @cached_property
    def waivers(self) -> tuple[Waiver, ...]:
        """The file's lint waivers; a malformed one is a ``MigrationFileError``."""
        from dbmigrate.lint import parse_waivers

        return parse_waivers(self.filename, self.text.split("\n"))

    @cached_property
    def statements(self) -> tuple[Statement, ...]:
        """The statements, split by PostgreSQL's parser; a file that does not parse, is empty or controls
        transactions is a ``MigrationFileError``."""
        try:
            statements = tuple(split_statements(self.text))
        except StatementSplitError as e:
            raise MigrationFileError(self.filename, str(e)) from None
        if not statements:
            raise MigrationFileError(self.filename, "contains no SQL statement")
        for statement in statements:
            if statement.is_transaction_control:
                raise MigrationFileError(
                    self.filename,
                    f"statement {statement.number} (line {statement.line}) is transaction control "
                    f"({statement.first_word}); the runner owns transactions (mark the file no-transaction instead)",
                )
        return statements

    def parsed(self) -> MigrationFile:
        """The file with its waivers and statements parsed (a ``MigrationFileError`` if either is refused)."""
        _ = self.waivers, self.statements
        return self


def file_name(version: int, name: str) -> str:
    return f"V{version:04d}__{name}.sql"


def normalize(raw: bytes, filename: str) -> str:
    """UTF-8 text with the BOM dropped and line endings made LF, so a checkout's line endings never change it."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise MigrationFileError(filename, f"not UTF-8 ({e.reason} at byte {e.start})") from None
    return text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")


def checksum(text: str) -> str:
    """sha256 (hex) of the normalized text."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def parse_migration(filename: str, raw: bytes, *, parse: bool = True) -> MigrationFile:
    """The migration file, refused with a ``MigrationFileError`` if anything in it is wrong; with ``parse=False``
    only its name, encoding and marker are checked now, its waivers and statements when first used."""
    match = FILE_NAME.match(filename)
    if match is None:
        raise MigrationFileError(filename, "name must match V<4 digits>__<snake_case_name>.sql (e.g. V0002__add_x.sql)")
    version = int(match.group("version"))
    if version == 0:
        raise MigrationFileError(filename, "versions start at V0001")
    text = normalize(raw, filename)
    lines = text.split("\n")
    first_line = next((line.strip() for line in lines if line.strip()), "")
    transactional = first_line != NO_TRANSACTION_MARKER
    marker_lines = [number for number, line in enumerate(lines, start=1) if _MARKER_WORD in line]
    if len(marker_lines) > (0 if transactional else 1):
        raise MigrationFileError(
            filename, f"'{NO_TRANSACTION_MARKER}' must be the first line, alone (found on line {marker_lines[-1]})"
        )
    migration = MigrationFile(
        version=version,
        name=match.group("name"),
        filename=filename,
        checksum=checksum(text),
        transactional=transactional,
        text=text,
    )
    return migration.parsed() if parse else migration


def discover_migrations(
    directory: Path, *, source: str = "MIGRATIONS_DIR", parse: bool = True
) -> tuple[MigrationFile, ...]:
    """Every *.sql file of the directory, in version order, parsed (see ``parse_migration``). Other files
    (README.md) are ignored."""
    if not directory.is_dir():
        raise DbConfigurationError(source, f"is not a directory: {directory}")
    migrations: dict[int, MigrationFile] = {}
    for path in sorted(directory.iterdir()):
        if path.name.startswith(".") or path.suffix.lower() != ".sql" or not path.is_file():
            continue
        migration = parse_migration(path.name, path.read_bytes(), parse=parse)
        if migration.version in migrations:
            raise MigrationFileError(
                path.name, f"version {migration.version} is also used by {migrations[migration.version].filename}"
            )
        migrations[migration.version] = migration
    return tuple(migrations[version] for version in sorted(migrations))
