"""Connection and runner settings, parsed once from the environment into a typed, immutable object."""

from __future__ import annotations

import getpass
import json
import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dbmigrate.errors import DbConfigurationError

SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


def _default_migrations_dir() -> Path:
    """sql/ beside the package (the migration image: /app/dbmigrate + /app/sql) or at the repository root."""
    package_dir = Path(__file__).resolve().parent
    for candidate in (package_dir.parent / "sql", package_dir.parent.parent / "sql"):
        if candidate.is_dir():
            return candidate
    return package_dir.parent.parent / "sql"


def _default_applied_by() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # a container user without a passwd entry
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


DEFAULT_MIGRATIONS_DIR = _default_migrations_dir()


@dataclass(frozen=True)
class Settings:
    """Everything the runner needs. Build it with `Settings.from_env()` or directly (tests, the local stack)."""

    host: str
    dbname: str
    user: str
    password: str = field(default="", repr=False)
    port: int = 5432
    sslmode: str = "require"
    sslrootcert: str | None = None
    migrations_dir: Path = DEFAULT_MIGRATIONS_DIR
    # Total time to wait for the database to accept a connection (exponential backoff between attempts).
    connect_timeout_seconds: float = 60.0
    # Total time to wait for the migration advisory lock while another runner holds it.
    lock_wait_seconds: float = 120.0
    # PostgreSQL lock_timeout / statement_timeout for every migration statement (0 disables, as in PostgreSQL).
    lock_timeout_ms: int = 10_000
    statement_timeout_ms: int = 900_000
    # PostgreSQL 14+ client_connection_check_interval of the runner's session: a backend whose client died (runner
    # killed by OOM, host loss, a stop past its grace period) notices within this interval, cancels its statement and
    # releases its table and advisory locks, instead of holding them until statement_timeout (0 disables).
    client_check_interval_ms: int = 2_000
    applied_by: str = field(default_factory=_default_applied_by)
    application_name: str = "deployflow-dbmigrate"

    @property
    def target(self) -> str:
        """user@host:port/dbname — what the logs name (never the password)."""
        return f"{self.user}@{self.host}:{self.port}/{self.dbname}"

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str] | None = None,
        *,
        secret_reader: Callable[[str], str] | None = None,
        migrations_dir: Path | None = None,
    ) -> Settings:
        """Parse the environment (see README.md). Raises DbConfigurationError naming the variable at fault.

        migrations_dir (the CLI's --migrations-dir) overrides MIGRATIONS_DIR.
        """
        env = os.environ if env is None else env

        def get(name: str) -> str | None:
            value = env.get(name)
            return value if value not in (None, "") else None

        secret: dict[str, Any] = {}
        secret_arn = get("DB_SECRET_ARN")
        if secret_arn is not None:
            secret = _load_secret(secret_arn, secret_reader or _read_secret_string)

        def required(name: str, secret_key: str) -> str:
            value = get(name)
            if value is None and secret.get(secret_key) not in (None, ""):
                value = str(secret[secret_key])
            if value is None:
                hint = f" (nor key '{secret_key}' in the DB_SECRET_ARN secret)" if secret_arn else ""
                raise DbConfigurationError(name, f"is not set{hint}")
            return value

        local = get("DEPLOYFLOW_LOCAL") == "1"
        host = required("DB_HOST", "host")
        dbname = required("DB_NAME", "dbname")
        user = required("DB_USER", "username")
        password = get("DB_PASSWORD")
        if password is None and secret.get("password") is not None:
            password = str(secret["password"])
        if password is None and not local:
            raise DbConfigurationError("DB_PASSWORD", "is not set (set it, or DB_SECRET_ARN)")

        port_text = get("DB_PORT") or (str(secret["port"]) if secret.get("port") not in (None, "") else "5432")
        port = _parse_int("DB_PORT", port_text, minimum=1, maximum=65535)

        sslmode = get("DB_SSLMODE") or ("disable" if local else "require")
        if sslmode not in SSL_MODES:
            raise DbConfigurationError("DB_SSLMODE", f"must be one of {', '.join(SSL_MODES)} (got {sslmode!r})")

        source = "--migrations-dir" if migrations_dir is not None else "MIGRATIONS_DIR"
        migrations_dir = migrations_dir or Path(get("MIGRATIONS_DIR") or DEFAULT_MIGRATIONS_DIR)
        if not migrations_dir.is_dir():
            raise DbConfigurationError(source, f"is not a directory: {migrations_dir}")

        defaults = cls(host=host, dbname=dbname, user=user)
        return cls(
            host=host,
            dbname=dbname,
            user=user,
            password=password or "",
            port=port,
            sslmode=sslmode,
            sslrootcert=get("DB_SSLROOTCERT"),
            migrations_dir=migrations_dir,
            connect_timeout_seconds=_parse_float(
                "DB_CONNECT_TIMEOUT_SECONDS", get("DB_CONNECT_TIMEOUT_SECONDS"), defaults.connect_timeout_seconds
            ),
            lock_wait_seconds=_parse_float(
                "DB_LOCK_WAIT_SECONDS", get("DB_LOCK_WAIT_SECONDS"), defaults.lock_wait_seconds
            ),
            lock_timeout_ms=_parse_int(
                "DB_LOCK_TIMEOUT_MS", get("DB_LOCK_TIMEOUT_MS") or str(defaults.lock_timeout_ms), minimum=0
            ),
            statement_timeout_ms=_parse_int(
                "DB_STATEMENT_TIMEOUT_MS",
                get("DB_STATEMENT_TIMEOUT_MS") or str(defaults.statement_timeout_ms),
                minimum=0,
            ),
            client_check_interval_ms=_parse_int(
                "DB_CLIENT_CHECK_INTERVAL_MS",
                get("DB_CLIENT_CHECK_INTERVAL_MS") or str(defaults.client_check_interval_ms),
                minimum=0,
            ),
            applied_by=get("MIGRATION_APPLIED_BY") or defaults.applied_by,
        )


def _parse_int(name: str, text: str, *, minimum: int, maximum: int | None = None) -> int:
    try:
        value = int(text)
    except ValueError:
        raise DbConfigurationError(name, f"must be an integer (got {text!r})") from None
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
        raise DbConfigurationError(name, f"must be {bound} (got {value})")
    return value


def _parse_float(name: str, text: str | None, default: float) -> float:
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        raise DbConfigurationError(name, f"must be a number of seconds (got {text!r})") from None
    if not value >= 0:  # also refuses NaN
        raise DbConfigurationError(name, f"must be >= 0 (got {text})")
    return value


def _load_secret(arn: str, reader: Callable[[str], str]) -> dict[str, Any]:
    try:
        text = reader(arn)
    except DbConfigurationError:
        raise
    except Exception as e:  # any SDK / network failure: the message says which and names the variable
        raise DbConfigurationError("DB_SECRET_ARN", f"could not be read ({type(e).__name__}: {e})") from e
    try:
        value = json.loads(text)
    except ValueError:
        raise DbConfigurationError("DB_SECRET_ARN", "secret is not JSON (expected the RDS secret format)") from None
    if not isinstance(value, dict):
        raise DbConfigurationError("DB_SECRET_ARN", "secret is not a JSON object (expected the RDS secret format)")
    return value


def _read_secret_string(arn: str) -> str:
    """Secrets Manager GetSecretValue; boto3 is imported only here, so plain DB_* settings never need it."""
    try:
        import boto3
    except ImportError as e:
        raise DbConfigurationError("DB_SECRET_ARN", "is set but boto3 is not installed") from e
    parts = arn.split(":")
    region = parts[3] if arn.startswith("arn:") and len(parts) > 3 and parts[3] else None
    client = boto3.client("secretsmanager", region_name=region)
    response = client.get_secret_value(SecretId=arn)
    secret_string = response.get("SecretString")
    if not isinstance(secret_string, str):
        raise DbConfigurationError("DB_SECRET_ARN", "secret has no SecretString")
    return secret_string
