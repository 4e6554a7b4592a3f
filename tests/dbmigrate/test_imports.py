"""`python -m dbmigrate` loads only what its command needs: a plain migrate runs in every release's task."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import dbmigrate
from dbmigrate.__main__ import NO_ARGUMENTS, build_parser

from tests.dbmigrate.conftest import REPO_ROOT, SQL_DIR

# Modules a plain migrate never uses: other commands' and the verifier's.
NOT_FOR_MIGRATE = (
    "dbmigrate.baseline",
    "dbmigrate.verify",
    "dbmigrate.snapshot",
    "dbmigrate.plan",
    "dbmigrate.catalog",
)
# Nor, at head (nothing pending, nothing to split or lint), the parser and the linter.
NOT_AT_HEAD = (*NOT_FOR_MIGRATE, "dbmigrate.lint", "pglast")
# Nor, as the task definition runs it (no arguments), a command-line parser or the logging psycopg2.extras loads.
NOT_FOR_THE_TASK = (*NOT_AT_HEAD, "argparse", "logging", "psycopg2.extras")


def loaded_after(code: str, prefix: str = "dbmigrate", **env: str) -> set[str]:
    """The modules (named from ``prefix``) a fresh interpreter holds after running ``code``."""
    script = f"{code}\nimport json, sys\nprint(json.dumps(sorted(m for m in sys.modules if m.startswith({prefix!r}))))"
    environ = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "functions"), str(REPO_ROOT)]),
        "PYTHONDONTWRITEBYTECODE": "1",
        **env,
    }
    done = subprocess.run([sys.executable, "-c", script], env=environ, capture_output=True, text=True, check=True)
    return set(json.loads(done.stdout.splitlines()[-1]))


def test_given_the_entry_point_and_the_runner_when_imported_then_no_other_command_s_modules_are_loaded() -> None:
    # What `python -m dbmigrate migrate` imports before it connects: the entry point and the runner.
    loaded = loaded_after("import dbmigrate.__main__, dbmigrate.runner")
    assert "dbmigrate.runner" in loaded, "the probe must see the runner it imported"
    assert not loaded.intersection(NOT_FOR_MIGRATE), f"a plain migrate loads {sorted(loaded & set(NOT_FOR_MIGRATE))}"


def test_given_a_database_at_head_when_migrate_runs_then_neither_the_parser_nor_the_linter_is_loaded(migrated_db):
    code = "from dbmigrate.__main__ import main\nassert main(['migrate']) == 0"
    loaded = loaded_after(code, prefix="", MIGRATIONS_DIR=str(SQL_DIR), **migrated_db.as_env())
    assert "dbmigrate.runner" in loaded, "the probe must see the runner it ran"
    assert not loaded.intersection(NOT_AT_HEAD), f"a migrate at head loads {sorted(loaded & set(NOT_AT_HEAD))}"


def test_given_the_task_s_command_at_head_when_run_then_no_parser_nor_logging_is_imported(migrated_db) -> None:
    # The whole process, as the migration image runs it: `python -m dbmigrate`; -X importtime names every import.
    environ = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "functions"), str(REPO_ROOT)]),
        "PYTHONDONTWRITEBYTECODE": "1",
        "MIGRATIONS_DIR": str(SQL_DIR),
        **migrated_db.as_env(),
    }
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "dbmigrate"], env=environ, capture_output=True, text=True
    )

    assert done.returncode == 0, done.stderr
    assert '"event":"migrate_finished"' in done.stdout, done.stdout
    imported = {line.rsplit("|", 1)[1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert "dbmigrate.runner" in imported, "the probe must see the runner it ran"
    assert not imported.intersection(NOT_FOR_THE_TASK), f"the task loads {sorted(imported & set(NOT_FOR_THE_TASK))}"


def test_given_no_arguments_then_main_s_options_are_what_the_parser_makes_of_an_empty_command_line() -> None:
    assert vars(build_parser().parse_args([])) == NO_ARGUMENTS


def test_given_the_package_when_a_name_is_used_then_it_is_imported_on_first_use() -> None:
    assert loaded_after("import dbmigrate") == {"dbmigrate"}
    assert "dbmigrate.verify" in loaded_after("from dbmigrate import verify")
    assert sorted(dbmigrate.__all__) == sorted(dbmigrate._WHERE), "__all__ and the lazy table name the same names"
    assert all(getattr(dbmigrate, name) is not None for name in dbmigrate.__all__)


def test_given_a_submodule_named_like_its_function_when_imported_first_then_the_package_name_is_the_function() -> None:
    code = "import dbmigrate.snapshot\nfrom dbmigrate import baseline, verify\nassert callable(verify), baseline"
    assert "dbmigrate.snapshot" in loaded_after(code)
