"""A throwaway PostgreSQL cluster from the machine's binaries (initdb / pg_ctl), for the tests and the local stack."""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import pwd
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import Any

import psycopg2
import psycopg2.extensions
from psycopg2 import sql

from deployflow.local.ports import free_loopback_port

SUPERUSER = "postgres"
_OS_USER = "postgres"  # initdb refuses to run as root: the server runs as this OS user when we are root
_DEFAULT_SERVER_SETTINGS: Mapping[str, str] = {
    # A scratch cluster: durability is worthless, speed is everything.
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "100",
    "shared_buffers": "32MB",
    "log_min_messages": "warning",
    "log_line_prefix": "%m [%p] %q%u@%d ",
}
_PORT_IN_USE = re.compile(r"could not bind|Address already in use|could not create any TCP/IP sockets", re.IGNORECASE)


class PostgresClusterError(RuntimeError):
    """The temporary PostgreSQL cluster could not be created, started or stopped."""


class PostgresBinariesNotFoundError(PostgresClusterError):
    """initdb / pg_ctl were not found on PATH nor under /usr/lib/postgresql/*/bin."""


@dataclass(frozen=True)
class ConnectionParams:
    """Where and how to connect: the typed form handed to tests, the local stack and the migration runner."""

    host: str
    port: int
    user: str
    password: str
    dbname: str
    sslmode: str = "disable"

    def dsn(self) -> str:
        """libpq keyword/value connection string (values quoted)."""
        parts = {
            "host": self.host,
            "port": str(self.port),
            "user": self.user,
            "password": self.password,
            "dbname": self.dbname,
            "sslmode": self.sslmode,
        }
        return " ".join(f"{key}={_quote_libpq(value)}" for key, value in parts.items())

    def with_dbname(self, dbname: str) -> ConnectionParams:
        return replace(self, dbname=dbname)

    def connect(self, **kwargs: Any) -> psycopg2.extensions.connection:
        """A new psycopg2 connection over TCP with password authentication."""
        conn: psycopg2.extensions.connection = psycopg2.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            dbname=self.dbname,
            sslmode=self.sslmode,
            **kwargs,
        )
        return conn

    def as_env(self) -> dict[str, str]:
        """The environment the migration runner (`python -m dbmigrate`) reads."""
        return {
            "DB_HOST": self.host,
            "DB_PORT": str(self.port),
            "DB_NAME": self.dbname,
            "DB_USER": self.user,
            "DB_PASSWORD": self.password,
            "DB_SSLMODE": self.sslmode,
        }


def _quote_libpq(value: str) -> str:
    if value and not re.search(r"[\s'\\]", value):
        return value
    escaped = value.replace("\\", "\\\\").replace("'", "\\'")
    return f"'{escaped}'"


def find_postgres_bin_dir() -> Path:
    """The directory holding initdb, pg_ctl and postgres: PATH first, else the newest /usr/lib/postgresql/*/bin."""
    on_path = shutil.which("initdb")
    candidates: list[Path] = []
    if on_path:
        candidates.append(Path(on_path).resolve().parent)

    def major(path: str) -> int:
        match = re.search(r"/postgresql/(\d+)/bin$", path)
        return int(match.group(1)) if match else 0

    candidates.extend(Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=major, reverse=True))
    for candidate in candidates:
        if all((candidate / tool).is_file() for tool in ("initdb", "pg_ctl", "postgres")):
            return candidate
    raise PostgresBinariesNotFoundError(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found on PATH nor in /usr/lib/postgresql/*/bin; "
        "run scripts/install-system-deps.sh"
    )


class PostgresCluster:
    """A temporary PostgreSQL cluster: `with PostgresCluster() as pg: pg.params.connect()`.

    The data directory, the unix socket and the server log live in one temporary directory that stop() removes.
    Local (unix socket) connections are trusted; TCP connections on 127.0.0.1 need the superuser's password
    (scram-sha-256), which is what the code under test uses.
    """

    def __init__(
        self,
        *,
        bin_dir: Path | None = None,
        base_dir: Path | None = None,
        password: str | None = None,
        settings: Mapping[str, str] | None = None,
        start_timeout_seconds: int = 60,
        keep_files: bool = False,
    ) -> None:
        self._bin_dir = bin_dir
        self._requested_base_dir = base_dir
        self.password = password if password is not None else secrets.token_urlsafe(18)
        self._settings = {**_DEFAULT_SERVER_SETTINGS, **(settings or {})}
        self._start_timeout = start_timeout_seconds
        self._keep_files = keep_files
        self._base_dir: Path | None = None
        self._owns_base_dir = False
        self._port: int | None = None
        self._running = False

    # -- paths -------------------------------------------------------------------------------------------------
    @property
    def base_dir(self) -> Path:
        if self._base_dir is None:
            raise PostgresClusterError("cluster not started")
        return self._base_dir

    @property
    def data_dir(self) -> Path:
        return self.base_dir / "data"

    @property
    def socket_dir(self) -> Path:
        return self.base_dir / "socket"

    @property
    def log_file(self) -> Path:
        return self.base_dir / "postgres.log"

    @property
    def port(self) -> int:
        if self._port is None or not self._running:
            raise PostgresClusterError("cluster not started")
        return self._port

    @property
    def running(self) -> bool:
        return self._running

    # -- connection ----------------------------------------------------------------------------------------------
    @property
    def params(self) -> ConnectionParams:
        """Superuser connection parameters for the `postgres` database over TCP with password."""
        return ConnectionParams(
            host="127.0.0.1", port=self.port, user=SUPERUSER, password=self.password, dbname="postgres"
        )

    def dsn(self, dbname: str = "postgres") -> str:
        return self.params.with_dbname(dbname).dsn()

    def connect(self, dbname: str = "postgres", **kwargs: Any) -> psycopg2.extensions.connection:
        return self.params.with_dbname(dbname).connect(**kwargs)

    def create_database(self, name: str, *, template: str | None = None) -> ConnectionParams:
        """CREATE DATABASE name (optionally from a template database); returns its connection parameters."""
        statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template is not None:
            statement = sql.SQL("{} TEMPLATE {}").format(statement, sql.Identifier(template))
        with contextlib.closing(self.connect()) as conn:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(statement)
        return self.params.with_dbname(name)

    def drop_database(self, name: str) -> None:
        """DROP DATABASE ... WITH (FORCE): sessions a test left open do not keep it alive."""
        with contextlib.closing(self.connect()) as conn:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    # -- lifecycle -------------------------------------------------------------------------------------------------
    def start(self) -> ConnectionParams:
        if self._running:
            return self.params
        self._bin_dir = self._bin_dir or find_postgres_bin_dir()
        atexit.register(self.stop)
        try:
            self._prepare_base_dir()
            self._initdb()
            self._start_server()
        except BaseException:
            self.stop()
            raise
        return self.params

    def stop(self) -> None:
        """Stop the server (fast, then immediate, then SIGKILL) and remove its files. Safe to call twice."""
        atexit.unregister(self.stop)
        base_dir = self._base_dir
        if base_dir is None:
            return
        try:
            if (self.data_dir / "postmaster.pid").exists():
                self._shutdown()
        finally:
            self._running = False
            if self._owns_base_dir and not self._keep_files:
                shutil.rmtree(base_dir, ignore_errors=True)
            self._base_dir = None

    def __enter__(self) -> PostgresCluster:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_file.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    # -- internals ---------------------------------------------------------------------------------------------------
    def _run_as_server_user(self) -> bool:
        return os.geteuid() == 0

    def _prepare_base_dir(self) -> None:
        if self._requested_base_dir is not None:
            self._requested_base_dir.mkdir(parents=True, exist_ok=True)
            self._base_dir = self._requested_base_dir
        else:
            self._base_dir = Path(tempfile.mkdtemp(prefix="deployflow-pg-"))
            self._owns_base_dir = True
        self.socket_dir.mkdir(exist_ok=True)
        if self._run_as_server_user():
            try:
                account = pwd.getpwnam(_OS_USER)
            except KeyError as e:
                raise PostgresClusterError(
                    f"running as root, but there is no '{_OS_USER}' OS user to run the server as"
                ) from e
            for path in (self.base_dir, self.socket_dir):
                os.chown(path, account.pw_uid, account.pw_gid)

    def _command(self, tool: str, *args: str) -> list[str]:
        assert self._bin_dir is not None
        command = [str(self._bin_dir / tool), *args]
        if self._run_as_server_user():
            return ["runuser", "-u", _OS_USER, "--", *command]
        return command

    def _exec(self, command: list[str], *, timeout: float) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
        env.pop("PGDATA", None)
        return subprocess.run(
            command,
            cwd=self.base_dir,  # the server user may not be allowed into our cwd
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def _initdb(self) -> None:
        pwfile = self.base_dir / "superuser.pw"
        pwfile.write_text(self.password + "\n")
        pwfile.chmod(0o600)
        if self._run_as_server_user():
            account = pwd.getpwnam(_OS_USER)
            os.chown(pwfile, account.pw_uid, account.pw_gid)
        try:
            result = self._exec(
                self._command(
                    "initdb",
                    "-D",
                    str(self.data_dir),
                    "-U",
                    SUPERUSER,
                    f"--pwfile={pwfile}",
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    "--encoding=UTF8",
                    "--locale=C",
                    "--no-sync",
                ),
                timeout=120,
            )
        finally:
            pwfile.unlink(missing_ok=True)
        if result.returncode != 0:
            raise PostgresClusterError(f"initdb failed (exit {result.returncode}): {result.stderr.strip()}")

    def _start_server(self) -> None:
        last_error = ""
        for _attempt in range(5):
            port = free_loopback_port()
            options = {
                **self._settings,
                "port": str(port),
                "listen_addresses": "127.0.0.1",
                "unix_socket_directories": str(self.socket_dir),
            }
            option_string = " ".join(f"-c {shlex.quote(f'{key}={value}')}" for key, value in options.items())
            result = self._exec(
                self._command(
                    "pg_ctl",
                    "-D",
                    str(self.data_dir),
                    "-l",
                    str(self.log_file),
                    "-w",
                    "-t",
                    str(self._start_timeout),
                    "-o",
                    option_string,
                    "start",
                ),
                timeout=self._start_timeout + 30,
            )
            if result.returncode == 0:
                self._port = port
                self._running = True
                return
            last_error = f"{result.stderr.strip()} {self.log_tail(5)}".strip()
            if not _PORT_IN_USE.search(last_error):
                break
            self._shutdown()  # a half-started postmaster must not keep the data directory
        raise PostgresClusterError(f"pg_ctl start failed: {last_error}")

    def _shutdown(self) -> None:
        for mode, timeout in (("fast", 20), ("immediate", 10)):
            try:
                result = self._exec(
                    self._command("pg_ctl", "-D", str(self.data_dir), "-m", mode, "-w", "-t", str(timeout), "stop"),
                    timeout=timeout + 10,
                )
            except subprocess.TimeoutExpired:
                continue
            if result.returncode == 0 or not self._postmaster_alive():
                return
        pid = self._postmaster_pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while self._postmaster_alive() and time.monotonic() < deadline:
                time.sleep(0.05)

    def _postmaster_pid(self) -> int | None:
        try:
            first_line = (self.data_dir / "postmaster.pid").read_text().splitlines()[0]
            return int(first_line.strip())
        except (OSError, IndexError, ValueError):
            return None

    def _postmaster_alive(self) -> bool:
        pid = self._postmaster_pid()
        if pid is None:
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
