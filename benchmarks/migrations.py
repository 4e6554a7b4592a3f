"""Prints how long the migration runner takes: apply sql/ to an empty database, rerun at head, verify the schema,
plan (read-only), and the lint (squawk) and parse (pglast) cost per file.

Run: .venv/bin/python benchmarks/migrations.py [--repeat N]. Uses a throwaway PostgreSQL (deployflow.local.postgres).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.dont_write_bytecode = True  # the in-process imports below leave no __pycache__ in the work tree either
REPO_ROOT = Path(__file__).resolve().parents[1]
for path in (REPO_ROOT / "functions", REPO_ROOT):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from dbmigrate import Settings, load_expected_schema, migrate, verify  # noqa: E402
from dbmigrate.files import discover_migrations, parse_migration  # noqa: E402
from dbmigrate.lint import lint_migrations  # noqa: E402
from dbmigrate.plan import build_plan  # noqa: E402

from benchmarks.results import save  # noqa: E402
from deployflow.local.postgres import ConnectionParams, PostgresCluster  # noqa: E402


def settings_for(params: ConnectionParams) -> Settings:
    return Settings(
        host=params.host,
        port=params.port,
        dbname=params.dbname,
        user=params.user,
        password=params.password,
        sslmode=params.sslmode,
        migrations_dir=REPO_ROOT / "sql",
        applied_by="benchmark",
    )


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return (time.perf_counter() - started) * 1000


def report(label: str, samples: list[float]) -> None:
    print(
        f"{label:<58} median {statistics.median(samples):8.1f} ms   "
        f"min {min(samples):8.1f}   max {max(samples):8.1f}   n={len(samples)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=7)
    repeat = parser.parse_args().repeat

    started = time.perf_counter()
    # The whole process is timed as the migration container runs it: bytecode cached as in the image (which compiles
    # at build time), but under a temporary prefix, so measuring writes nothing into the work tree.
    with PostgresCluster() as cluster, tempfile.TemporaryDirectory(prefix="deployflow-bench-pyc-") as pycache:
        print(f"PostgreSQL cluster started in {(time.perf_counter() - started) * 1000:.0f} ms (initdb + pg_ctl start)")

        apply_samples: list[float] = []
        for run in range(repeat):
            fresh = settings_for(cluster.create_database(f"bench_apply_{run}"))
            apply_samples.append(timed(lambda: migrate(fresh)))  # noqa: B023 (called at once, inside the iteration)
            cluster.drop_database(fresh.dbname)
        report("apply all migrations to an empty database", apply_samples)

        params = cluster.create_database("bench_head")
        settings = settings_for(params)
        migrate(settings)
        report("rerun at head (no-op, no lock)", [timed(lambda: migrate(settings)) for _ in range(repeat * 3)])

        expected = load_expected_schema()
        with contextlib.closing(params.connect()) as conn:
            conn.autocommit = True
            result = verify(conn, expected)
            assert result.ok, result.render()
            report("verify (open connection)", [timed(lambda: verify(conn, expected)) for _ in range(repeat * 3)])

        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "functions"), str(REPO_ROOT)]),
            "PYTHONPYCACHEPREFIX": pycache,
            **params.as_env(),
        }
        command = [sys.executable, "-m", "dbmigrate"]
        # As the migration image runs it: its site-packages holds the runner's few wheels and no .pth start-up hooks,
        # where this virtualenv's (the editable install's finder, setuptools' distutils shim) cost every process
        # about 30 ms before any dbmigrate code. So: no site, the same packages on PYTHONPATH.
        image_env = {**env, "PYTHONPATH": os.pathsep.join([env["PYTHONPATH"], sysconfig.get_path("purelib")])}
        image_command = [sys.executable, "-S", "-m", "dbmigrate"]
        for warm_up, warm_env in ((command, env), (image_command, image_env)):  # fills the bytecode cache
            subprocess.run(warm_up, env=warm_env, check=True, capture_output=True)
        image_samples: list[float] = []
        venv_samples: list[float] = []
        for _ in range(repeat * 3):  # interleaved
            image_samples.append(
                timed(lambda: subprocess.run(image_command, env=image_env, check=True, capture_output=True))
            )
            venv_samples.append(timed(lambda: subprocess.run(command, env=env, check=True, capture_output=True)))
        report("`python -m dbmigrate` at head (whole process, image layout)", image_samples)
        report("`python -m dbmigrate` at head (whole process, dev venv)", venv_samples)
        empty_process = [
            timed(lambda: subprocess.run([sys.executable, "-S", "-c", "pass"], check=True, capture_output=True))
            for _ in range(repeat * 3)
        ]
        report("`python -S -c pass` (the interpreter alone)", empty_process)
        save("migrations", {"dbmigrate_at_head_seconds": round(statistics.median(image_samples) / 1000, 3)})

        files = discover_migrations(REPO_ROOT / "sql")
        for migration in files:
            raw = (REPO_ROOT / "sql" / migration.filename).read_bytes()
            parse = [timed(lambda: parse_migration(migration.filename, raw)) for _ in range(repeat * 3)]  # noqa: B023
            report(f"parse + split {migration.filename} (pglast, {len(migration.statements)} stmts)", parse)
            lint = [timed(lambda: lint_migrations([migration])) for _ in range(repeat * 3)]  # noqa: B023
            report(f"lint {migration.filename} (one squawk process)", lint)
        empty = settings_for(cluster.create_database("bench_plan_empty"))
        report(
            f"plan, {len(files)} file(s) pending (read-only, with lint)",
            [timed(lambda: build_plan(empty)) for _ in range(repeat * 3)],
        )
        report("plan at head (read-only)", [timed(lambda: build_plan(settings)) for _ in range(repeat * 3)])
        plan_command = [*command, "plan"]
        plan_env = {**env, "DB_NAME": empty.dbname}
        report(
            "`python -m dbmigrate plan` (process start)",
            [
                timed(lambda: subprocess.run(plan_command, env=plan_env, check=True, capture_output=True))
                for _ in range(repeat)
            ],
        )


if __name__ == "__main__":
    main()
