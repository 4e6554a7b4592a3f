"""Read the live schema from the PostgreSQL catalog into plain, comparable, JSON-serialisable values."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import psycopg2.extensions

from dbmigrate.history import HISTORY_TABLE

_ON_ACTION = {"a": "NO ACTION", "r": "RESTRICT", "c": "CASCADE", "n": "SET NULL", "d": "SET DEFAULT"}
_KEY_KIND = {"p": "PRIMARY KEY", "u": "UNIQUE"}


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # format_type(): "bigint", "character varying(20)", "timestamp with time zone"
    nullable: bool

    def describe(self) -> str:
        return f"{self.type} {'NULL' if self.nullable else 'NOT NULL'}"


@dataclass(frozen=True)
class Key:
    """A PRIMARY KEY or UNIQUE constraint."""

    name: str
    kind: str  # "PRIMARY KEY" | "UNIQUE"
    columns: tuple[str, ...]

    def describe(self) -> str:
        return f"{self.kind} ({', '.join(self.columns)})"


@dataclass(frozen=True)
class ForeignKey:
    name: str
    columns: tuple[str, ...]
    references_table: str
    references_columns: tuple[str, ...]
    on_delete: str
    on_update: str

    def describe(self) -> str:
        text = (
            f"({', '.join(self.columns)}) REFERENCES {self.references_table} "
            f"({', '.join(self.references_columns)}) ON DELETE {self.on_delete}"
        )
        return text if self.on_update == "NO ACTION" else f"{text} ON UPDATE {self.on_update}"


@dataclass(frozen=True)
class Check:
    name: str
    definition: str  # pg_get_constraintdef(), whitespace collapsed

    def describe(self) -> str:
        return self.definition


@dataclass(frozen=True)
class Index:
    name: str
    definition: str  # pg_get_indexdef()
    valid: bool

    def describe(self) -> str:
        return self.definition


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]  # in column order
    keys: tuple[Key, ...] = ()  # every tuple below sorted by name
    foreign_keys: tuple[ForeignKey, ...] = ()
    checks: tuple[Check, ...] = ()
    indexes: tuple[Index, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "columns": [{"name": c.name, "type": c.type, "nullable": c.nullable} for c in self.columns],
            "keys": [{"name": k.name, "kind": k.kind, "columns": list(k.columns)} for k in self.keys],
            "foreign_keys": [
                {
                    "name": f.name,
                    "columns": list(f.columns),
                    "references_table": f.references_table,
                    "references_columns": list(f.references_columns),
                    "on_delete": f.on_delete,
                    "on_update": f.on_update,
                }
                for f in self.foreign_keys
            ],
            "checks": [{"name": c.name, "definition": c.definition} for c in self.checks],
            "indexes": [{"name": i.name, "definition": i.definition, "valid": i.valid} for i in self.indexes],
        }

    @classmethod
    def from_json(cls, name: str, data: dict[str, Any]) -> Table:
        return cls(
            name=name,
            columns=tuple(Column(c["name"], c["type"], bool(c["nullable"])) for c in data["columns"]),
            keys=tuple(Key(k["name"], k["kind"], tuple(k["columns"])) for k in data.get("keys", [])),
            foreign_keys=tuple(
                ForeignKey(
                    name=f["name"],
                    columns=tuple(f["columns"]),
                    references_table=f["references_table"],
                    references_columns=tuple(f["references_columns"]),
                    on_delete=f["on_delete"],
                    on_update=f.get("on_update", "NO ACTION"),
                )
                for f in data.get("foreign_keys", [])
            ),
            checks=tuple(Check(c["name"], c["definition"]) for c in data.get("checks", [])),
            indexes=tuple(
                Index(i["name"], i["definition"], bool(i.get("valid", True))) for i in data.get("indexes", [])
            ),
        )


@dataclass(frozen=True)
class Catalog:
    """The tables of one schema, sorted by name."""

    tables: tuple[Table, ...]

    def table(self, name: str) -> Table | None:
        return next((table for table in self.tables if table.name == name), None)

    @property
    def table_names(self) -> tuple[str, ...]:
        return tuple(table.name for table in self.tables)

    def to_json(self) -> dict[str, Any]:
        return {table.name: table.to_json() for table in self.tables}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Catalog:
        return cls(tables=tuple(Table.from_json(name, data[name]) for name in sorted(data)))


_TABLES = """
SELECT c.oid, c.relname
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %(schema)s AND c.relkind IN ('r', 'p') AND NOT c.relispartition
  AND c.relname <> ALL (%(exclude)s::text[])
"""
_COLUMNS = """
SELECT a.attrelid, a.attname::text, pg_catalog.format_type(a.atttypid, a.atttypmod), NOT a.attnotnull
FROM pg_catalog.pg_attribute a
WHERE a.attrelid = ANY (%(oids)s::oid[]) AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attrelid, a.attnum
"""
_CONSTRAINTS = """
SELECT con.conrelid, con.conname::text, con.contype::text,
       ARRAY(SELECT a.attname::text
             FROM unnest(con.conkey) WITH ORDINALITY AS k(attnum, ord)
             JOIN pg_catalog.pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum
             ORDER BY k.ord),
       (SELECT CASE WHEN fn.nspname = %(schema)s THEN fc.relname::text ELSE fn.nspname || '.' || fc.relname END
        FROM pg_catalog.pg_class fc JOIN pg_catalog.pg_namespace fn ON fn.oid = fc.relnamespace
        WHERE fc.oid = con.confrelid),
       ARRAY(SELECT a.attname::text
             FROM unnest(con.confkey) WITH ORDINALITY AS k(attnum, ord)
             JOIN pg_catalog.pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.attnum
             ORDER BY k.ord),
       con.confdeltype::text, con.confupdtype::text,
       pg_catalog.pg_get_constraintdef(con.oid)
FROM pg_catalog.pg_constraint con
WHERE con.conrelid = ANY (%(oids)s::oid[]) AND con.contype IN ('p', 'u', 'f', 'c')
"""
_INDEXES = """
SELECT i.indrelid, ic.relname::text, pg_catalog.pg_get_indexdef(i.indexrelid), i.indisvalid
FROM pg_catalog.pg_index i
JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
WHERE i.indrelid = ANY (%(oids)s::oid[])
"""


def read_catalog(
    conn: psycopg2.extensions.connection,
    *,
    schema: str = "public",
    exclude_tables: tuple[str, ...] = (HISTORY_TABLE,),
) -> Catalog:
    """The tables of `schema` (the runner's history table excluded) with columns, keys, foreign keys, checks, indexes.

    Read-only catalog queries; on a connection that is not in autocommit they run in the caller's transaction.
    """
    with conn.cursor() as cur:
        cur.execute(_TABLES, {"schema": schema, "exclude": list(exclude_tables)})
        table_names: dict[int, str] = {oid: name for oid, name in cur.fetchall()}
        oids = list(table_names)
        params = {"oids": oids, "schema": schema}

        columns: dict[int, list[Column]] = defaultdict(list)
        cur.execute(_COLUMNS, params)
        for relid, name, type_name, nullable in cur.fetchall():
            columns[relid].append(Column(name=name, type=type_name, nullable=nullable))

        keys: dict[int, list[Key]] = defaultdict(list)
        foreign_keys: dict[int, list[ForeignKey]] = defaultdict(list)
        checks: dict[int, list[Check]] = defaultdict(list)
        cur.execute(_CONSTRAINTS, params)
        for relid, name, kind, cols, ref_table, ref_cols, on_delete, on_update, definition in cur.fetchall():
            if kind in _KEY_KIND:
                keys[relid].append(Key(name=name, kind=_KEY_KIND[kind], columns=tuple(cols)))
            elif kind == "f":
                foreign_keys[relid].append(
                    ForeignKey(
                        name=name,
                        columns=tuple(cols),
                        references_table=ref_table,
                        references_columns=tuple(ref_cols),
                        on_delete=_ON_ACTION.get(on_delete, on_delete),
                        on_update=_ON_ACTION.get(on_update, on_update),
                    )
                )
            else:
                checks[relid].append(Check(name=name, definition=" ".join(definition.split())))

        indexes: dict[int, list[Index]] = defaultdict(list)
        cur.execute(_INDEXES, params)
        for relid, name, definition, valid in cur.fetchall():
            indexes[relid].append(Index(name=name, definition=definition, valid=valid))

    def by_name(items: list[Any]) -> tuple[Any, ...]:
        return tuple(sorted(items, key=lambda item: item.name))

    return Catalog(
        tables=tuple(
            Table(
                name=name,
                columns=tuple(columns[oid]),
                keys=by_name(keys[oid]),
                foreign_keys=by_name(foreign_keys[oid]),
                checks=by_name(checks[oid]),
                indexes=by_name(indexes[oid]),
            )
            for oid, name in sorted(table_names.items(), key=lambda item: item[1])
        )
    )
