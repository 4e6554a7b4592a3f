"""Fixtures of the migration runner tests: settings for the per-test database, migration directories, a migrated db."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from dbmigrate import Settings, migrate

from deployflow.local.postgres import ConnectionParams

REPO_ROOT = Path(__file__).resolve().parents[2]
SQL_DIR = REPO_ROOT / "sql"
INITIAL = "V0001__initial_schema.sql"

SettingsFactory = Callable[..., Settings]


def settings_for(params: ConnectionParams, migrations_dir: Path = SQL_DIR, **overrides: Any) -> Settings:
    """Runner settings for a test database, with small bounds so failures are quick."""
    settings = Settings(
        host=params.host,
        port=params.port,
        dbname=params.dbname,
        user=params.user,
        password=params.password,
        sslmode=params.sslmode,
        migrations_dir=migrations_dir,
        connect_timeout_seconds=5,
        lock_wait_seconds=5,
        lock_timeout_ms=2_000,
        statement_timeout_ms=30_000,
        applied_by="pytest",
    )
    return replace(settings, **overrides)


@pytest.fixture
def make_settings(postgres_db: ConnectionParams) -> SettingsFactory:
    def factory(migrations_dir: Path = SQL_DIR, **overrides: Any) -> Settings:
        return settings_for(postgres_db, migrations_dir, **overrides)

    return factory


@pytest.fixture
def migrations_dir(tmp_path: Path) -> Path:
    """A private copy of sql/ that a test may extend or edit."""
    directory = tmp_path / "sql"
    directory.mkdir()
    shutil.copy(SQL_DIR / INITIAL, directory / INITIAL)
    return directory


@pytest.fixture
def migrated_db(postgres_db: ConnectionParams) -> ConnectionParams:
    """A fresh database with sql/ applied by the runner."""
    report = migrate(settings_for(postgres_db))
    assert [m.filename for m in report.applied] == [INITIAL], f"fixture could not migrate: {report}"
    return postgres_db
