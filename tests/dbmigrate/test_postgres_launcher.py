"""deployflow.local.postgres: the throwaway cluster the tests and the local stack run on."""

from __future__ import annotations

from pathlib import Path

import psycopg2
import pytest

from deployflow.local.postgres import ConnectionParams, PostgresCluster


def running(pid: int) -> bool:
    """Alive and not a zombie (the postmaster is re-parented to init, which reaps it when it gets to it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def test_given_a_cluster_when_started_then_password_auth_over_tcp_and_stop_removes_everything():
    cluster = PostgresCluster(password="it's a \\ pass word")
    try:
        params = cluster.start()
        base_dir = cluster.base_dir
        pid = int((cluster.data_dir / "postmaster.pid").read_text().splitlines()[0])

        with psycopg2.connect(params.dsn()) as conn, conn.cursor() as cur:
            cur.execute("SHOW fsync")
            assert cur.fetchone() == ("off",)
            cur.execute("SHOW unix_socket_directories")
            assert cur.fetchone() == (str(cluster.socket_dir),)
            cur.execute("SELECT inet_server_addr()::text, current_user")
            assert cur.fetchone() == ("127.0.0.1/32", "postgres")
        conn.close()
        with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
            ConnectionParams(params.host, params.port, params.user, "wrong", params.dbname).connect()
    finally:
        cluster.stop()

    assert not base_dir.exists(), "stop() removes the data directory"
    assert not running(pid), f"postmaster {pid} still running after stop()"
    cluster.stop()  # idempotent


def test_given_context_manager_when_databases_created_then_usable_and_dropped_even_with_open_sessions():
    with PostgresCluster() as cluster:
        params = cluster.create_database("scratch")
        assert params.as_env()["DB_NAME"] == "scratch"
        lingering = params.connect()  # a session a test forgot to close must not block the drop
        cluster.drop_database("scratch")
        with cluster.connect() as conn, conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM pg_database WHERE datname = 'scratch'")
            assert cur.fetchone() == (0,)
        conn.close()
        lingering.close()
    assert not cluster.running
