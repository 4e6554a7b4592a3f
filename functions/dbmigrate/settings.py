"""Connection and runner settings, parsed once from the environment into a typed, immutable object.

The variables are declared once, as ``dbmigrate.envsettings`` models (the settings system functions/ shares):
``DbEnvironment`` is what the environment says, ``Settings`` what the runner uses, the ``DB_SECRET_ARN`` secret
(read by ``dbmigrate.aws_secrets``) filling in what the variables leave out. Verify schema reads the same
``DB_*`` declarations (``release_steps.config.DatabaseSettings``) and builds its ``Settings`` with
``Settings.from_secret``.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from dbmigrate import aws_secrets
from dbmigrate.envsettings import EnvModel, SettingError, Variable, choice, integer, number, setting, text
from dbmigrate.errors import DbConfigurationError

SslMode = Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]
SSL_MODES: tuple[str, ...] = get_args(SslMode)

# Read by the runner and by Verify schema (release_steps.config.DatabaseSettings): declared once, here.
DB_SECRET_ARN = Variable("DB_SECRET_ARN", text())
DB_HOST = Variable("DB_HOST", text())
DB_PORT = Variable("DB_PORT", integer(1, 65535))
DB_NAME = Variable("DB_NAME", text())
DB_USER = Variable("DB_USER", text())
DB_PASSWORD = Variable("DB_PASSWORD", text())
DB_SSLMODE = Variable[SslMode]("DB_SSLMODE", choice(*SSL_MODES))
DB_SSLROOTCERT = Variable("DB_SSLROOTCERT", text())
DB_CONNECT_TIMEOUT_SECONDS = Variable("DB_CONNECT_TIMEOUT_SECONDS", number(minimum=0))


def _default_migrations_dir() -> Path:
    """sql/ beside the package (the migration image: /app/dbmigrate + /app/sql) or at the repository root."""
    package_dir = Path(__file__).resolve().parent
    for candidate in (package_dir.parent / "sql", package_dir.parent.parent / "sql"):
        if candidate.is_dir():
            return candidate
    return package_dir.parent.parent / "sql"


def _default_applied_by() -> str:
    import getpass
    import socket

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
        environment = DbEnvironment.from_environ(env)
        secret = None
        if environment.secret_arn is not None:
            secret = load_rds_secret(environment.secret_arn, secret_reader or aws_secrets.read_secret)
        connection = rds_connection(
            secret,
            {
                "host": environment.host,
                "port": environment.port,
                "dbname": environment.dbname,
                "username": environment.user,
                "password": environment.password,
            },
            {"host": DB_HOST, "port": DB_PORT, "dbname": DB_NAME, "username": DB_USER, "password": DB_PASSWORD},
            password_required=not environment.local,
        )
        source = "--migrations-dir" if migrations_dir is not None else "MIGRATIONS_DIR"
        directory = migrations_dir or Path(environment.migrations_dir or DEFAULT_MIGRATIONS_DIR)
        if not directory.is_dir():
            raise DbConfigurationError(source, f"is not a directory: {directory}")
        given = {
            name: value
            for name, value in dataclasses.asdict(environment).items()
            if value is not None and name in _RUNNER_FIELDS
        }
        return cls(
            **connection,
            sslmode=environment.sslmode or ("disable" if environment.local else "require"),
            migrations_dir=directory,
            **given,
        )

    @classmethod
    def from_secret(cls, secret: Mapping[str, Any], **settings: Any) -> Settings:
        """Settings from an RDS-format secret and explicit values (Verify schema); the values win over its keys."""
        connection = rds_connection(
            secret,
            {key: settings.pop(key, None) for key in ("host", "port", "dbname")},
            {"host": DB_HOST, "port": DB_PORT, "dbname": DB_NAME},
        )
        return cls(**connection, **settings)


def _is_one(raw: str) -> bool:
    return raw == "1"


class DbEnvironment(EnvModel):
    """What the runner's environment says; unset is None (the secret or Settings' defaults fill in)."""

    secret_arn: str | None = setting(DB_SECRET_ARN, default=None)
    host: str | None = setting(DB_HOST, default=None)
    port: int | None = setting(DB_PORT, default=None)
    dbname: str | None = setting(DB_NAME, default=None)
    user: str | None = setting(DB_USER, default=None)
    password: str | None = setting(DB_PASSWORD, default=None, repr=False)
    sslmode: SslMode | None = setting(DB_SSLMODE, default=None)
    sslrootcert: str | None = setting(DB_SSLROOTCERT, default=None)
    connect_timeout_seconds: float | None = setting(DB_CONNECT_TIMEOUT_SECONDS, default=None)
    lock_wait_seconds: float | None = setting("DB_LOCK_WAIT_SECONDS", number(minimum=0), default=None)
    lock_timeout_ms: int | None = setting("DB_LOCK_TIMEOUT_MS", integer(minimum=0), default=None)
    statement_timeout_ms: int | None = setting("DB_STATEMENT_TIMEOUT_MS", integer(minimum=0), default=None)
    client_check_interval_ms: int | None = setting("DB_CLIENT_CHECK_INTERVAL_MS", integer(minimum=0), default=None)
    applied_by: str | None = setting("MIGRATION_APPLIED_BY", text(), default=None)
    migrations_dir: str | None = setting("MIGRATIONS_DIR", text(), default=None)
    # The local stack: TLS off by default and a password optional (trust authentication).
    local: bool = setting("DEPLOYFLOW_LOCAL", _is_one, default=False)

    @classmethod
    def configuration_error(cls, error: SettingError) -> Exception:
        return DbConfigurationError(error.variable, error.problem)


# Settings' fields a variable of DbEnvironment may set as it is (the connection is merged with the secret first).
_RUNNER_FIELDS = frozenset(
    {
        "sslrootcert",
        "connect_timeout_seconds",
        "lock_wait_seconds",
        "lock_timeout_ms",
        "statement_timeout_ms",
        "client_check_interval_ms",
        "applied_by",
    }
)
RDS_SECRET_KEYS = ("host", "port", "username", "password", "dbname")
DEFAULT_PORT = 5432


def load_rds_secret(arn: str, reader: Callable[[str], str]) -> dict[str, Any]:
    """The secret's JSON object (the RDS format); DbConfigurationError naming DB_SECRET_ARN otherwise.

    A failed read keeps the SDK's error as ``__cause__`` (Verify schema retries a throttled one).
    """
    try:
        text = reader(arn)
    except Exception as e:  # any SDK / network failure: the message says which and names the variable
        raise DbConfigurationError(DB_SECRET_ARN.name, f"could not be read ({type(e).__name__}: {e})") from e
    try:
        value = json.loads(text)
    except ValueError:
        raise DbConfigurationError(DB_SECRET_ARN.name, "is not JSON (expected the RDS secret format)") from None
    if not isinstance(value, dict):
        raise DbConfigurationError(DB_SECRET_ARN.name, "is not a JSON object (expected the RDS secret format)")
    return value


def rds_connection(
    secret: Mapping[str, Any] | None,
    given: Mapping[str, Any],
    variables: Mapping[str, Variable[Any]],
    *,
    password_required: bool = True,
) -> dict[str, Any]:
    """host, port, dbname, user and password: the ``given`` values (from ``variables``) win over the secret's keys.

    Without a secret a missing value is its variable's error; with one, the error lists every key the secret lacks
    and the variables that could stand in for them.
    """
    merged = {key: value for key, value in (secret or {}).items() if key in RDS_SECRET_KEYS and value not in (None, "")}
    merged.update({key: value for key, value in given.items() if value not in (None, "")})
    required = ["host", "dbname", "username"] + (["password"] if password_required else [])
    missing = [key for key in required if key not in merged]
    if missing and secret is None:
        hint = " (set it, or DB_SECRET_ARN)" if missing[0] == "password" else ""
        raise DbConfigurationError(variables[missing[0]].name, f"is not set{hint}")
    if missing:
        keys = ", ".join(f"'{key}'" for key in missing)
        standing_in = [variables[key].name for key in missing if key in variables]
        alternative = (
            f"; and {', '.join(standing_in)} {'is' if len(standing_in) == 1 else 'are'} not set" if standing_in else ""
        )
        raise DbConfigurationError(
            DB_SECRET_ARN.name,
            f"has no {keys} key{'s' if len(missing) > 1 else ''} (expected the RDS secret format: "
            f"{', '.join(RDS_SECRET_KEYS)}){alternative}",
        )
    try:  # a given port passed DB_PORT's parser already: only the secret's can fail here
        port = DB_PORT.parse(str(merged.get("port", DEFAULT_PORT)))
    except ValueError:
        raise DbConfigurationError(
            DB_SECRET_ARN.name, f"has an invalid 'port' key: {merged.get('port')!r} is not a TCP port"
        ) from None
    return {
        "host": str(merged["host"]),
        "port": port,
        "dbname": str(merged["dbname"]),
        "user": str(merged["username"]),
        "password": str(merged.get("password", "")),
    }
