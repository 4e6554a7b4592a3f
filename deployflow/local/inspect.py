"""Independent looks at the local stack's state: what the tables, the topics and ECS hold, read without the steps.

The checks at the end of a local run and the execution-path tests use these to prove side effects (or their
absence) through other clients than the code under test: psycopg2 / psql for the database, a Kafka admin client's
metadata for the topics, moto's ECS API for task definitions, tasks and deployments.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from typing import Any

import psycopg2
from confluent_kafka.admin import AdminClient

from deployflow.local.postgres import ConnectionParams

HISTORY_TABLE = "deployflow_schema_history"


@dataclass(frozen=True)
class Snapshot:
    """What a release can change, at one moment."""

    tables: tuple[str, ...]
    history: tuple[tuple[str, str], ...]
    topics: tuple[tuple[str, int], ...]
    task_definition_revisions: tuple[str, ...]
    tasks_started: int
    primary_deployments: tuple[tuple[str, str], ...]


def database_tables(db: ConnectionParams) -> tuple[str, ...]:
    """Tables in the public schema, sorted."""
    with psycopg2.connect(db.dsn()) as conn, conn.cursor() as cur:
        cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename")
        return tuple(row[0] for row in cur.fetchall())


def migration_history(db: ConnectionParams) -> tuple[tuple[str, str], ...]:
    """(version, applied_at) of every applied migration; empty when the history table does not exist."""
    with psycopg2.connect(db.dsn()) as conn, conn.cursor() as cur:
        cur.execute("SELECT to_regclass(%s)", (f"public.{HISTORY_TABLE}",))
        if cur.fetchone() == (None,):
            return ()
        cur.execute(f"SELECT version, applied_at::text FROM {HISTORY_TABLE} ORDER BY version")
        return tuple((str(v), str(t)) for v, t in cur.fetchall())


def psql_tables(db: ConnectionParams) -> list[str]:
    """The tables as psql lists them (``\\dt``): an independent client, as an operator would check."""
    psql = shutil.which("psql")
    if psql is None:
        raise RuntimeError("psql is not installed (scripts/install-system-deps.sh installs postgresql-client)")
    result = subprocess.run(
        [psql, db.dsn(), "--no-psqlrc", "--tuples-only", "--no-align", "--command", r"\dt public.*"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    # Lines look like: public|clients|table|postgres
    return sorted(line.split("|")[1] for line in result.stdout.splitlines() if line.count("|") >= 3)


def kafka_topics(bootstrap: str, timeout: float = 10.0) -> dict[str, int]:
    """User topics and their partition counts from a metadata request."""
    admin = AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": int(timeout * 1000)})
    metadata = admin.list_topics(timeout=timeout)
    return {name: len(t.partitions) for name, t in metadata.topics.items() if not name.startswith("__")}


def task_definition_revisions(ecs: Any, family: str) -> tuple[str, ...]:
    """Task definition revisions of a family (ARNs, sorted)."""
    return tuple(sorted(ecs.list_task_definitions(familyPrefix=family)["taskDefinitionArns"]))


def primary_deployments(ecs: Any, cluster: str, services: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """Each service's PRIMARY deployment id."""
    described = ecs.describe_services(cluster=cluster, services=list(services))["services"]
    return tuple(
        sorted(
            (str(s["serviceName"]), str(next((d["id"] for d in s["deployments"] if d["status"] == "PRIMARY"), "")))
            for s in described
        )
    )
