"""Compare the live catalog (and the migration history) with the expected schema; a typed, readable diff."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Any, Protocol, TypeVar

import psycopg2.extensions

from dbmigrate import history
from dbmigrate.catalog import Catalog, Table, read_catalog
from dbmigrate.files import file_name

EXPECTED_SCHEMA_FILE = "expected_schema.json"
SNAPSHOT_FORMAT = 1
REGENERATE_COMMAND = "make expected-schema"


class DifferenceKind(StrEnum):
    TABLE_MISSING = "table missing"
    TABLE_UNEXPECTED = "unexpected table"
    COLUMN_MISSING = "column missing"
    COLUMN_UNEXPECTED = "unexpected column"
    COLUMN_TYPE_DIFFERS = "column type differs"
    COLUMN_NULLABILITY_DIFFERS = "column nullability differs"
    KEY_MISSING = "key missing"
    KEY_UNEXPECTED = "unexpected key"
    KEY_DIFFERS = "key differs"
    FOREIGN_KEY_MISSING = "foreign key missing"
    FOREIGN_KEY_UNEXPECTED = "unexpected foreign key"
    FOREIGN_KEY_DIFFERS = "foreign key differs"
    CHECK_MISSING = "check constraint missing"
    CHECK_UNEXPECTED = "unexpected check constraint"
    CHECK_DIFFERS = "check constraint differs"
    INDEX_MISSING = "index missing"
    INDEX_UNEXPECTED = "unexpected index"
    INDEX_DIFFERS = "index differs"
    INDEX_INVALID = "index invalid"
    MIGRATION_PENDING = "migration pending"
    MIGRATION_CHECKSUM_DIFFERS = "migration checksum differs"
    MIGRATION_UNEXPECTED = "unexpected migration"


@dataclass(frozen=True)
class Difference:
    """One difference. `table` and `name` locate it (name: column, constraint, index or migration file)."""

    kind: DifferenceKind
    table: str | None = None
    name: str | None = None
    expected: str | None = None
    actual: str | None = None

    def render(self) -> str:
        where = ".".join(part for part in (self.table, self.name) if part)
        line = f"{self.kind.value}: {where}" if where else self.kind.value
        if self.expected is not None and self.actual is not None:
            return f"{line}: expected {self.expected}, found {self.actual}"
        if self.expected is not None:
            return f"{line}: {self.expected}"
        if self.actual is not None:
            return f"{line}: {self.actual}"
        return line

    def to_json(self) -> dict[str, str | None]:
        return {
            "kind": self.kind.value,
            "table": self.table,
            "name": self.name,
            "expected": self.expected,
            "actual": self.actual,
            "message": self.render(),
        }


@dataclass(frozen=True)
class MigrationRef:
    version: int
    name: str
    checksum: str

    @property
    def filename(self) -> str:
        return file_name(self.version, self.name)


@dataclass(frozen=True)
class ExpectedSchema:
    """The checked-in snapshot: the migrations that produce the schema, and the schema they produce."""

    migrations: tuple[MigrationRef, ...]
    catalog: Catalog

    def to_json(self) -> dict[str, Any]:
        return {
            "format": SNAPSHOT_FORMAT,
            "regenerate": REGENERATE_COMMAND,
            "migrations": [
                {"version": m.version, "name": m.name, "file": m.filename, "checksum": m.checksum}
                for m in self.migrations
            ],
            "tables": self.catalog.to_json(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ExpectedSchema:
        if data.get("format") != SNAPSHOT_FORMAT:
            raise ValueError(f"expected schema format {data.get('format')!r} is not {SNAPSHOT_FORMAT}")
        return cls(
            migrations=tuple(MigrationRef(m["version"], m["name"], m["checksum"]) for m in data["migrations"]),
            catalog=Catalog.from_json(data["tables"]),
        )


@dataclass(frozen=True)
class VerificationResult:
    differences: tuple[Difference, ...]
    pending_migrations: tuple[MigrationRef, ...]
    tables_checked: int

    @property
    def ok(self) -> bool:
        return not self.differences

    def lines(self) -> list[str]:
        return [difference.render() for difference in self.differences]

    def render(self) -> str:
        if self.ok:
            return f"schema matches the expected schema ({self.tables_checked} tables)"
        return "\n".join(self.lines())

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "tables_checked": self.tables_checked,
            "pending_migrations": [m.filename for m in self.pending_migrations],
            "differences": [difference.to_json() for difference in self.differences],
        }


def load_expected_schema(path: Path | None = None) -> ExpectedSchema:
    """The snapshot shipped beside this package (or the file at path)."""
    if path is not None:
        text = path.read_text(encoding="utf-8")
    else:
        text = resources.files("dbmigrate").joinpath(EXPECTED_SCHEMA_FILE).read_text(encoding="utf-8")
    return ExpectedSchema.from_json(json.loads(text))


def verify(
    conn: psycopg2.extensions.connection,
    expected: ExpectedSchema,
    *,
    check_migrations: bool = True,
    schema: str = "public",
) -> VerificationResult:
    """Compare the live schema (and, unless disabled, the migration history) with the expected schema."""
    actual = read_catalog(conn, schema=schema)
    differences = compare_catalogs(expected.catalog, actual)
    pending: tuple[MigrationRef, ...] = ()
    if check_migrations:
        migration_differences = compare_migrations(conn, expected.migrations)
        differences.extend(migration_differences)
        by_file = {m.filename: m for m in expected.migrations}
        pending = tuple(
            by_file[d.name]
            for d in migration_differences
            if d.kind is DifferenceKind.MIGRATION_PENDING and d.name is not None
        )
    return VerificationResult(
        differences=tuple(differences), pending_migrations=pending, tables_checked=len(expected.catalog.tables)
    )


def pending_migrations(conn: psycopg2.extensions.connection, expected: ExpectedSchema) -> tuple[MigrationRef, ...]:
    """Expected migrations whose version is not in the history table (all of them when it does not exist)."""
    rows = history.read_history(conn) or []
    applied = {row.version for row in rows}
    return tuple(m for m in expected.migrations if m.version not in applied)


def compare_migrations(conn: psycopg2.extensions.connection, expected: Sequence[MigrationRef]) -> list[Difference]:
    rows = history.read_history(conn) or []
    applied = {row.version: row for row in rows}
    wanted = {m.version: m for m in expected}
    differences: list[Difference] = []
    for migration in expected:
        row = applied.get(migration.version)
        if row is None:
            differences.append(Difference(DifferenceKind.MIGRATION_PENDING, name=migration.filename))
        elif row.checksum != migration.checksum or row.name != migration.name:
            differences.append(
                Difference(
                    DifferenceKind.MIGRATION_CHECKSUM_DIFFERS,
                    name=migration.filename,
                    expected=f"{migration.filename} {migration.checksum[:12]}",
                    actual=f"{file_name(row.version, row.name)} {row.checksum[:12]}",
                )
            )
    for row in rows:
        if row.version not in wanted:
            differences.append(
                Difference(
                    DifferenceKind.MIGRATION_UNEXPECTED,
                    name=file_name(row.version, row.name),
                    actual="applied, but not in the expected schema (is this release older than the database?)",
                )
            )
    return differences


class _Named(Protocol):
    @property
    def name(self) -> str: ...

    def describe(self) -> str: ...


_N = TypeVar("_N", bound=_Named)


def compare_catalogs(expected: Catalog, actual: Catalog) -> list[Difference]:
    """Differences table by table, in a stable order (expected tables first, then unexpected ones)."""
    differences: list[Difference] = []
    for table in expected.tables:
        live = actual.table(table.name)
        if live is None:
            differences.append(Difference(DifferenceKind.TABLE_MISSING, table=table.name))
            continue
        differences.extend(_compare_table(table, live))
    for live in actual.tables:
        if expected.table(live.name) is None:
            columns = ", ".join(column.name for column in live.columns)
            differences.append(Difference(DifferenceKind.TABLE_UNEXPECTED, table=live.name, actual=f"({columns})"))
    return differences


def _compare_table(expected: Table, actual: Table) -> list[Difference]:
    differences: list[Difference] = []
    live_columns = {column.name: column for column in actual.columns}
    for column in expected.columns:
        live = live_columns.get(column.name)
        if live is None:
            differences.append(
                Difference(DifferenceKind.COLUMN_MISSING, expected.name, column.name, expected=column.describe())
            )
            continue
        if live.type != column.type:
            differences.append(
                Difference(DifferenceKind.COLUMN_TYPE_DIFFERS, expected.name, column.name, column.type, live.type)
            )
        if live.nullable != column.nullable:
            differences.append(
                Difference(
                    DifferenceKind.COLUMN_NULLABILITY_DIFFERS,
                    expected.name,
                    column.name,
                    "NULL" if column.nullable else "NOT NULL",
                    "NULL" if live.nullable else "NOT NULL",
                )
            )
    wanted_columns = {column.name for column in expected.columns}
    for live in actual.columns:
        if live.name not in wanted_columns:
            differences.append(
                Difference(DifferenceKind.COLUMN_UNEXPECTED, expected.name, live.name, actual=live.describe())
            )

    kinds = (
        (
            expected.keys,
            actual.keys,
            DifferenceKind.KEY_MISSING,
            DifferenceKind.KEY_UNEXPECTED,
            DifferenceKind.KEY_DIFFERS,
        ),
        (
            expected.foreign_keys,
            actual.foreign_keys,
            DifferenceKind.FOREIGN_KEY_MISSING,
            DifferenceKind.FOREIGN_KEY_UNEXPECTED,
            DifferenceKind.FOREIGN_KEY_DIFFERS,
        ),
        (
            expected.checks,
            actual.checks,
            DifferenceKind.CHECK_MISSING,
            DifferenceKind.CHECK_UNEXPECTED,
            DifferenceKind.CHECK_DIFFERS,
        ),
    )
    for wanted, found, missing, unexpected, differs in kinds:
        differences.extend(_compare_named(expected.name, wanted, found, missing, unexpected, differs, _same))

    differences.extend(
        _compare_named(
            expected.name,
            expected.indexes,
            actual.indexes,
            DifferenceKind.INDEX_MISSING,
            DifferenceKind.INDEX_UNEXPECTED,
            DifferenceKind.INDEX_DIFFERS,
            lambda want, got: want.definition == got.definition,
        )
    )
    wanted_indexes = {index.name for index in expected.indexes}
    for index in actual.indexes:
        if not index.valid and index.name in wanted_indexes:
            differences.append(
                Difference(
                    DifferenceKind.INDEX_INVALID,
                    expected.name,
                    index.name,
                    actual="indisvalid = false (a failed CREATE INDEX CONCURRENTLY?): drop and recreate it",
                )
            )
    return differences


def _same(want: _Named, got: _Named) -> bool:
    return want == got


def _compare_named(
    table: str,
    wanted: Sequence[_N],
    found: Sequence[_N],
    missing: DifferenceKind,
    unexpected: DifferenceKind,
    differs: DifferenceKind,
    same: Callable[[_N, _N], bool],
) -> list[Difference]:
    differences: list[Difference] = []
    live = {item.name: item for item in found}
    for item in wanted:
        other = live.get(item.name)
        if other is None:
            differences.append(Difference(missing, table, item.name, expected=item.describe()))
        elif not same(item, other):
            differences.append(Difference(differs, table, item.name, item.describe(), other.describe()))
    names = {item.name for item in wanted}
    for item in found:
        if item.name not in names:
            differences.append(Difference(unexpected, table, item.name, actual=item.describe()))
    return differences
