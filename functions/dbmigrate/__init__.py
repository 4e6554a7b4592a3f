"""Migration runner, catalog reader and schema verification; shipped in the Lambda asset and the migration image.

The names below are imported on first use (PEP 562), so ``python -m dbmigrate <command>`` loads only the modules
its command needs: a plain migrate does not pay for baseline, verify, snapshot or the linter.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dbmigrate.baseline import BaselineReport, baseline
    from dbmigrate.catalog import Catalog, read_catalog
    from dbmigrate.db import connect
    from dbmigrate.errors import DbMigrateError, ExitCode
    from dbmigrate.runner import AppliedMigration, MigrationReport, migrate, pending
    from dbmigrate.settings import Settings
    from dbmigrate.verify import (
        Difference,
        DifferenceKind,
        ExpectedSchema,
        MigrationRef,
        VerificationResult,
        load_expected_schema,
        pending_migrations,
        verify,
    )

_WHERE = {
    "BaselineReport": "baseline",
    "baseline": "baseline",
    "Catalog": "catalog",
    "read_catalog": "catalog",
    "connect": "db",
    "DbMigrateError": "errors",
    "ExitCode": "errors",
    "AppliedMigration": "runner",
    "MigrationReport": "runner",
    "migrate": "runner",
    "pending": "runner",
    "Settings": "settings",
    "Difference": "verify",
    "DifferenceKind": "verify",
    "ExpectedSchema": "verify",
    "MigrationRef": "verify",
    "VerificationResult": "verify",
    "load_expected_schema": "verify",
    "pending_migrations": "verify",
    "verify": "verify",
}

__all__ = [
    "AppliedMigration",
    "BaselineReport",
    "Catalog",
    "DbMigrateError",
    "Difference",
    "DifferenceKind",
    "ExitCode",
    "ExpectedSchema",
    "MigrationRef",
    "MigrationReport",
    "Settings",
    "VerificationResult",
    "baseline",
    "connect",
    "load_expected_schema",
    "migrate",
    "pending",
    "pending_migrations",
    "read_catalog",
    "verify",
]


class _Package(types.ModuleType):
    """Keeps ``dbmigrate.verify`` / ``dbmigrate.baseline`` the functions, as eager imports made them: importing
    the submodule of the same name binds the module on the package, and this binds the function instead."""

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and _WHERE.get(name) == name:
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'dbmigrate' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"dbmigrate.{module}"), name)
    globals()[name] = value
    return value
