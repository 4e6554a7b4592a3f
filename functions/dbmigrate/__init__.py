"""Migration runner, catalog reader and schema verification; shipped in the Lambda asset and the migration image."""

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
