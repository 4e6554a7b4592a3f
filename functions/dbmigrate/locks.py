"""The table lock each statement kind takes, from PostgreSQL's documentation, read off pglast's parse tree.

Sources (PostgreSQL 15, the same in later versions):
- "Explicit Locking", 13.3.1 Table-Level Locks (https://www.postgresql.org/docs/15/explicit-locking.html): which
  commands take ACCESS SHARE (SELECT), ROW EXCLUSIVE (INSERT/UPDATE/DELETE/MERGE), SHARE UPDATE EXCLUSIVE (VACUUM,
  ANALYZE, CREATE INDEX CONCURRENTLY, CREATE STATISTICS, COMMENT ON, REINDEX CONCURRENTLY, some ALTER TABLE forms),
  SHARE (CREATE INDEX), SHARE ROW EXCLUSIVE (CREATE TRIGGER, some ALTER TABLE forms), EXCLUSIVE (REFRESH
  MATERIALIZED VIEW CONCURRENTLY), ACCESS EXCLUSIVE (DROP TABLE, TRUNCATE, REINDEX, CLUSTER, VACUUM FULL, REFRESH
  MATERIALIZED VIEW, most ALTER TABLE / ALTER INDEX forms), and which modes conflict (ACCESS EXCLUSIVE blocks reads).
- ALTER TABLE (https://www.postgresql.org/docs/15/sql-altertable.html): "An ACCESS EXCLUSIVE lock is acquired
  unless explicitly noted"; SET STATISTICS, SET/RESET (storage parameters), CLUSTER ON, SET WITHOUT CLUSTER,
  VALIDATE CONSTRAINT, ATTACH PARTITION (on the parent), DETACH PARTITION CONCURRENTLY take SHARE UPDATE EXCLUSIVE;
  ADD FOREIGN KEY and ENABLE/DISABLE TRIGGER take SHARE ROW EXCLUSIVE (a foreign key also on the referenced table);
  with several subcommands "the lock acquired will be the strictest one required by any subcommand".
- CREATE TABLE ... REFERENCES creates the foreign key's triggers on the referenced table: SHARE ROW EXCLUSIVE there.
Statements on no existing table (CREATE FUNCTION, CREATE TYPE, a new table without foreign keys) take none.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Weakest to strongest (explicit-locking.html, Table 13.2's order).
LOCK_MODES = (
    "ACCESS SHARE",
    "ROW SHARE",
    "ROW EXCLUSIVE",
    "SHARE UPDATE EXCLUSIVE",
    "SHARE",
    "SHARE ROW EXCLUSIVE",
    "EXCLUSIVE",
    "ACCESS EXCLUSIVE",
)
# What a holder of the mode blocks, for the plan's reader (Table 13.2, "Conflicting Table-Level Locks").
BLOCKS = {
    "ACCESS SHARE": "ACCESS EXCLUSIVE only",
    "ROW SHARE": "EXCLUSIVE, ACCESS EXCLUSIVE",
    "ROW EXCLUSIVE": "schema changes, CREATE INDEX",
    "SHARE UPDATE EXCLUSIVE": "other schema changes and VACUUM; not reads or writes",
    "SHARE": "writes",
    "SHARE ROW EXCLUSIVE": "writes",
    "EXCLUSIVE": "writes and SELECT ... FOR UPDATE; not plain reads",
    "ACCESS EXCLUSIVE": "reads and writes",
}
UNCLASSIFIED = "UNCLASSIFIED"

_SUE = "SHARE UPDATE EXCLUSIVE"
_SRE = "SHARE ROW EXCLUSIVE"
_AE = "ACCESS EXCLUSIVE"
_ALTER_TABLE_LOCKS = {
    "AT_SetStatistics": _SUE,
    "AT_SetRelOptions": _SUE,
    "AT_ResetRelOptions": _SUE,
    "AT_ClusterOn": _SUE,
    "AT_DropCluster": _SUE,
    "AT_ValidateConstraint": _SUE,
    "AT_AttachPartition": _SUE,
    "AT_DetachPartitionFinalize": _SUE,
    "AT_EnableTrig": _SRE,
    "AT_EnableAlwaysTrig": _SRE,
    "AT_EnableReplicaTrig": _SRE,
    "AT_DisableTrig": _SRE,
    "AT_EnableTrigAll": _SRE,
    "AT_DisableTrigAll": _SRE,
    "AT_EnableTrigUser": _SRE,
    "AT_DisableTrigUser": _SRE,
}
_NO_TABLE_LOCK = frozenset(
    {
        "CreateFunctionStmt",
        "CreateEnumStmt",
        "CreateDomainStmt",
        "CompositeTypeStmt",
        "CreateSeqStmt",
        "CreateSchemaStmt",
        "CreateExtensionStmt",
        "DefineStmt",
        "ViewStmt",
        "GrantStmt",
        "GrantRoleStmt",
        "CreateRoleStmt",
        "AlterEnumStmt",
        "AlterSeqStmt",
        "VariableSetStmt",
        "DoStmt",
    }
)


def strongest(modes: list[str]) -> str | None:
    known = [mode for mode in modes if mode in LOCK_MODES]
    if UNCLASSIFIED in modes:
        return UNCLASSIFIED
    return max(known, key=LOCK_MODES.index) if known else None


@dataclass(frozen=True)
class StatementLocks:
    """The locks one statement takes: ``lock`` is the strongest (None: no lock on an existing table)."""

    locks: tuple[tuple[str, str], ...]  # (table, mode)
    notes: tuple[str, ...] = field(default=())

    @property
    def lock(self) -> str | None:
        return strongest([mode for _, mode in self.locks])

    @property
    def tables(self) -> list[str]:
        return sorted({table for table, _ in self.locks})

    def summary(self) -> str:
        if not self.locks:
            return "no lock on an existing table"
        by_mode: dict[str, list[str]] = {}
        for table, mode in self.locks:
            by_mode.setdefault(mode, []).append(table)
        return "; ".join(
            f"{mode} on {', '.join(sorted(set(tables)))}"
            for mode, tables in sorted(by_mode.items(), key=lambda item: -_rank(item[0]))
        )


def _rank(mode: str) -> int:
    return LOCK_MODES.index(mode) if mode in LOCK_MODES else len(LOCK_MODES)


def _name(range_var: Any) -> str:
    if range_var is None:
        return "?"
    schema = getattr(range_var, "schemaname", None)
    return f"{schema}.{range_var.relname}" if schema else str(range_var.relname)


def _enum_name(value: Any) -> str:
    return str(getattr(value, "name", value))


def _foreign_key_targets(constraints: Any) -> list[Any]:
    return [c.pktable for c in constraints or () if _enum_name(c.contype) == "CONSTR_FOREIGN" and c.pktable]


def _names(node: Any) -> str:
    parts = getattr(node, "names", None) or node
    if isinstance(parts, tuple):
        return ".".join(str(getattr(p, "sval", p)) for p in parts)
    return str(getattr(parts, "sval", parts))


def statement_locks(node: Any) -> StatementLocks:
    """The table locks of one parsed statement (pglast.ast node)."""
    kind = type(node).__name__
    if node is None or kind in _NO_TABLE_LOCK:
        return StatementLocks(())
    if kind == "AlterTableStmt":
        return _alter_table(node)
    if kind == "RenameStmt":
        return StatementLocks(((_name(node.relation) if node.relation else _names(node.object), _AE),))
    if kind == "IndexStmt":
        notes = () if node.concurrent else ("blocks writes to the table while the index builds; use CONCURRENTLY",)
        return StatementLocks(((_name(node.relation), _SUE if node.concurrent else "SHARE"),), notes)
    if kind == "CreateStmt":
        targets = _foreign_key_targets(node.constraints)
        for element in node.tableElts or ():
            if type(element).__name__ == "ColumnDef":
                targets += _foreign_key_targets(element.constraints)
            elif type(element).__name__ == "Constraint":
                targets += _foreign_key_targets((element,))
        return StatementLocks(tuple((_name(target), _SRE) for target in targets))
    if kind == "CreateTrigStmt":
        return StatementLocks(((_name(node.relation), _SRE),))
    if kind in ("InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt"):
        return StatementLocks(((_name(node.relation), "ROW EXCLUSIVE"),))
    if kind == "SelectStmt":
        return StatementLocks((("tables read", "ACCESS SHARE"),))
    if kind == "TruncateStmt":
        return StatementLocks(tuple((_name(r), _AE) for r in node.relations or ()))
    if kind == "DropStmt":
        return _drop(node)
    if kind == "CommentStmt":
        return StatementLocks(((_names(node.object), _SUE),))
    if kind == "CreateStatsStmt":
        return StatementLocks(tuple((_name(r), _SUE) for r in node.relations or () if hasattr(r, "relname")))
    if kind == "VacuumStmt":
        full = any(getattr(o, "defname", "") == "full" for o in node.options or ())
        tables = tuple(_name(r.relation) for r in node.rels or ()) or ("every table",)
        return StatementLocks(tuple((t, _AE if full else _SUE) for t in tables))
    if kind == "ReindexStmt":
        concurrent = any(getattr(o, "defname", "") == "concurrently" for o in node.params or ())
        return StatementLocks(
            ((_name(node.relation) if node.relation else str(node.name), _SUE if concurrent else _AE),)
        )
    if kind == "ClusterStmt":
        return StatementLocks(((_name(node.relation) if node.relation else "clustered tables", _AE),))
    if kind == "RefreshMatViewStmt":
        return StatementLocks(((_name(node.relation), "EXCLUSIVE" if node.concurrent else _AE),))
    if kind == "LockStmt":
        mode = LOCK_MODES[max(0, min(int(node.mode) - 1, len(LOCK_MODES) - 1))]
        return StatementLocks(tuple((_name(r), mode) for r in node.relations or ()))
    return StatementLocks((("?", UNCLASSIFIED),), (f"{kind}: lock level not classified; check its reference page",))


def _drop(node: Any) -> StatementLocks:
    kind = _enum_name(node.removeType)
    objects = [_names(o) for o in node.objects or ()]
    if kind in ("OBJECT_TABLE", "OBJECT_MATVIEW", "OBJECT_VIEW", "OBJECT_FOREIGN_TABLE"):
        return StatementLocks(tuple((o, _AE) for o in objects))
    if kind == "OBJECT_INDEX":
        mode = _SUE if node.concurrent else _AE
        note = () if node.concurrent else ("locks the index's table; use DROP INDEX CONCURRENTLY",)
        return StatementLocks(tuple((f"table of index {o}", mode) for o in objects), note)
    if kind == "OBJECT_TRIGGER":
        return StatementLocks(tuple((o.rsplit(".", 1)[0], _AE) for o in objects))
    return StatementLocks(())


def _alter_table(node: Any) -> StatementLocks:
    table = _name(node.relation)
    locks: list[tuple[str, str]] = []
    notes: list[str] = []
    for cmd in node.cmds or ():
        subtype = _enum_name(cmd.subtype)
        mode = _ALTER_TABLE_LOCKS.get(subtype, _AE)
        definition = cmd.def_
        if subtype == "AT_DetachPartition" and getattr(definition, "concurrent", False):
            mode = _SUE
        if subtype == "AT_AddConstraint" and definition is not None:
            contype = _enum_name(definition.contype)
            if contype == "CONSTR_FOREIGN":
                mode = _SRE
                locks.append((_name(definition.pktable), _SRE))
            if contype in ("CONSTR_FOREIGN", "CONSTR_CHECK") and not definition.skip_validation:
                notes.append("checks every existing row while holding the lock; add it NOT VALID, then VALIDATE")
            if contype in ("CONSTR_UNIQUE", "CONSTR_PRIMARY") and not getattr(definition, "indexname", None):
                notes.append("builds a unique index under ACCESS EXCLUSIVE; build it CONCURRENTLY, then USING INDEX")
        if subtype == "AT_AlterColumnType":
            notes.append(
                f"column {cmd.name}: rewrites the table and its indexes unless the new type is binary-coercible"
            )
        if subtype == "AT_SetNotNull":
            notes.append(f"column {cmd.name}: scans the whole table under ACCESS EXCLUSIVE")
        if subtype == "AT_AddColumn" and definition is not None:
            for constraint in definition.constraints or ():
                if (
                    _enum_name(constraint.contype) == "CONSTR_DEFAULT"
                    and type(constraint.raw_expr).__name__ == "FuncCall"
                ):
                    notes.append(f"column {definition.colname}: a volatile DEFAULT rewrites the table")
        locks.append((table, mode))
    return StatementLocks(tuple(locks), tuple(notes))
