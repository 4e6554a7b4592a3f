"""Verify schema: the live PostgreSQL catalog and migration history compared with the expected schema (dbmigrate).

Credentials come from the stack's Secrets Manager secret in the RDS format (``host``, ``port``, ``username``,
``password``, ``dbname``; ``engine`` is ignored), read by ``dbmigrate.aws_secrets`` and merged with the function's
``DB_*`` settings by the runner's own ``Settings.from_secret``. The session is read-only, its connection wait and
its catalog queries are bounded. A dry run happens before the migration ran, so pending migrations explain a
difference: it reports ``would-change`` instead of failing. After a real migration any difference, a pending
migration included, is a ``SchemaMismatchError`` whose message is the diff.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import tempfile
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any, Literal

import psycopg2
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import BotoCoreError, ClientError
from dbmigrate import ExpectedSchema, Settings, connect, load_expected_schema, pending_migrations, verify
from dbmigrate import history as migration_history
from dbmigrate.aws_secrets import read_secret
from dbmigrate.db import Connection
from dbmigrate.errors import DbConfigurationError, DbConnectionRejectedError, DbUnreachableError
from dbmigrate.settings import load_rds_secret

from release_steps import config
from release_steps.aws_errors import is_throttling, throttling_error
from release_steps.config import DatabaseSettings
from release_steps.errors import (
    ConfigurationError,
    DatabaseAuthError,
    DatabaseUnreachableError,
    SchemaMismatchError,
)
from release_steps.models import ReleaseRequest, ReleaseState, SchemaResult
from release_steps.observability import PATCH_BOTOCORE, logger, parse_event, step

STEP_NAME = "Verify schema"
APPLICATION_NAME = "deployflow-verify-schema"
# The message becomes the Step Functions cause (at most 32,768 characters) inside the Lambda error envelope
# (errorType, requestId, stackTrace), JSON-escaped: the budget counts the escaped text and leaves room for the rest.
MESSAGE_BUDGET = 24_000
# The same budget bounds the differences listed in a dry run's result (the state document holds 256 KB in all).
LINE_MAX = 1_000
LOG_BUDGET = 8 * MESSAGE_BUDGET
# Catalog queries wait behind nothing in normal operation; a lock held by a running DDL must not eat the
# function's timeout.
STATEMENT_TIMEOUT_MS = 20_000
_COUNT_LINE_RESERVE = 100
_SQLSTATE_QUERY_CANCELED = "57014"
_SQLSTATE_INSUFFICIENT_PRIVILEGE = "42501"
# libpq's words when the TLS negotiation, not the credentials, is what failed (the host name is in the message too,
# so bare "ssl" would misread a host called db-ssl).
_TLS_MARKERS = ("does not support ssl", "ssl error", "ssl syscall", "ssl connection", "certificate", "sslmode")
# The root of the functions' code asset (Lambda's /var/task): DB_SSLROOTCERT paths are relative to it.
ASSET_ROOT = Path(__file__).resolve().parents[1]
PEM_CERTIFICATE = "-----BEGIN CERTIFICATE-----"
Verdict = Literal["match", "mismatch", "would-change"]


@cache
def expected_schema() -> ExpectedSchema:
    """The expected schema shipped with dbmigrate (loaded once per container)."""
    return load_expected_schema()


# --- credentials ----------------------------------------------------------------------------------------------------


def read_database_secret(settings: DatabaseSettings, *, force_fetch: bool = False) -> dict[str, Any]:
    """The secret's JSON object, cached for ``DB_SECRET_MAX_AGE_SECONDS`` (unless ``force_fetch``)."""
    try:
        return load_rds_secret(
            settings.secret_arn,
            lambda arn: read_secret(arn, max_age=settings.secret_max_age_seconds, force_fetch=force_fetch),
        )
    except DbConfigurationError as e:
        raise _secret_error(e.__cause__, f"database secret {settings.secret_arn} (DB_SECRET_ARN) {e.problem}") from e


def _secret_error(sdk_error: BaseException | None, message: str) -> Exception:
    """A throttled read is transient (retried by the ASL); anything else is the stack's configuration."""
    if isinstance(sdk_error, ClientError) and is_throttling(sdk_error):
        return throttling_error(sdk_error, "secretsmanager:GetSecretValue")
    return ConfigurationError(_one_line(message))


def ca_bundle_path(settings: DatabaseSettings) -> str | None:
    """The file libpq reads as ``sslrootcert``: DB_SSLROOTCERT's file in the asset, or its secret's PEM in /tmp."""
    value = settings.sslrootcert
    if not value:
        return None
    where = f"CA bundle {value} (DB_SSLROOTCERT)"
    if value.startswith("arn:"):
        try:
            text = read_secret(value, max_age=settings.secret_max_age_seconds)
        except (ClientError, BotoCoreError, ValueError) as e:
            raise _secret_error(e, f"{where} could not be read ({type(e).__name__}: {e})") from e
        if PEM_CERTIFICATE not in text:
            raise ConfigurationError(f"{where}: the secret's value holds no PEM certificate ({PEM_CERTIFICATE})")
        path = Path(tempfile.gettempdir()) / f"deployflow-db-ca-{hashlib.sha256(text.encode()).hexdigest()[:16]}.pem"
        if not path.exists():
            path.write_text(text, encoding="utf-8")
        return str(path)
    path = Path(value) if Path(value).is_absolute() else ASSET_ROOT / value
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        raise ConfigurationError(
            f"{where}: {path} cannot be read ({e.strerror}); put the PEM file under functions/ before sam build"
        ) from e
    if PEM_CERTIFICATE not in text:
        raise ConfigurationError(f"{where}: {path} holds no PEM certificate ({PEM_CERTIFICATE})")
    return str(path)


def connection_settings(secret: Mapping[str, Any], settings: DatabaseSettings) -> Settings:
    """dbmigrate connection settings from the secret's keys and the function's TLS / timeout settings."""
    try:
        return Settings.from_secret(
            secret,
            host=settings.host,
            port=settings.port,
            dbname=settings.dbname,
            sslmode=settings.sslmode,
            sslrootcert=ca_bundle_path(settings),
            connect_timeout_seconds=settings.connect_timeout_seconds,
            application_name=APPLICATION_NAME,
            applied_by=APPLICATION_NAME,
        )
    except DbConfigurationError as e:
        raise ConfigurationError(f"database secret {settings.secret_arn} (DB_SECRET_ARN) {e.problem}") from e


def database_target(settings: DatabaseSettings, *, force_fetch: bool = False) -> Settings:
    """Where and how to connect: the secret read, its keys checked."""
    return connection_settings(read_database_secret(settings, force_fetch=force_fetch), settings)


# --- the comparison -------------------------------------------------------------------------------------------------


def verify_schema(
    request: ReleaseRequest, conn_params: Settings, expected: ExpectedSchema | None = None
) -> SchemaResult:
    """Compare the database of ``conn_params`` with the expected schema; a real run raises on any difference."""
    expected = expected or expected_schema()
    conn = _connect(conn_params)
    with contextlib.closing(conn), _database_errors(conn_params):
        conn.set_session(readonly=True, autocommit=True)
        with conn.cursor() as cur:
            cur.execute("SELECT set_config('statement_timeout', %s, false)", (str(STATEMENT_TIMEOUT_MS),))
        result = verify(conn, expected)
        pending = [migration.filename for migration in pending_migrations(conn, expected)]
        applied = [f"V{row.version:04d}" for row in migration_history.read_history(conn) or []]
    differences = result.lines()
    logger.info(
        "schema compared",
        extra={
            "target": conn_params.target,
            "differences": len(differences),
            "applied_versions": applied,
            "pending_migrations": pending,
            "dry_run": request.dry_run,
        },
    )
    if differences:
        logger.warning(
            "schema differs",
            # A CloudWatch log event holds 256 KB: the log shows more than the message, not without bound.
            extra={"target": conn_params.target, "difference_lines": clip_lines(differences, LOG_BUDGET)},
        )
    if request.dry_run:
        return SchemaResult(
            verdict=dry_run_verdict(differences, pending),
            differences=clip_lines(differences, MESSAGE_BUDGET),
            applied_versions=applied,
            pending_migrations=pending,
        )
    if differences or pending:
        raise SchemaMismatchError(mismatch_message(conn_params.target, differences, pending, applied))
    return SchemaResult(verdict="match", applied_versions=applied)


def dry_run_verdict(differences: list[str], pending: list[str]) -> Verdict:
    """``match``; ``would-change`` when migrations are pending (they explain the diff); else ``mismatch``.

    A difference with nothing pending is drift no migration of this release removes: the real run would fail.
    """
    if not differences and not pending:
        return "match"
    return "would-change" if pending else "mismatch"


def mismatch_message(target: str, differences: list[str], pending: list[str], applied: list[str]) -> str:
    """The readable diff: a summary line, the pending migrations if any, then one line per difference (clipped)."""
    head = (
        f"schema of {target} differs from the expected schema in {len(differences)} place(s) "
        f"(applied migrations: {', '.join(applied) or 'none'})"
    )
    lines = [head]
    if pending:
        lines.append(
            f"  {len(pending)} migration(s) still pending after the migration task succeeded: {', '.join(pending)} "
            "(did the task run an older image, or against another database than this secret names?)"
        )
    budget = MESSAGE_BUDGET - _escaped_length("\n".join(lines))
    lines.extend(clip_lines(differences, budget, indent="  "))
    return "\n".join(lines)


def clip_lines(lines: list[str], budget: int, indent: str = "") -> list[str]:
    """The lines (indented, clipped to LINE_MAX) whose JSON-escaped total fits the budget, then a count of the rest.

    Each line is charged its escaped length plus two: the ``\\n`` that joins it to the next one, once JSON-escaped.
    """
    clipped = [line if len(line) <= LINE_MAX else line[: LINE_MAX - 14] + " ... (clipped)" for line in lines]
    shown = [f"{indent}{line}" for line in clipped]
    costs = [_escaped_length(line) + 2 for line in shown]
    if sum(costs) <= budget:
        return shown
    kept: list[str] = []
    used = 0
    for line, cost in zip(shown, costs, strict=True):
        if used + cost > budget - _COUNT_LINE_RESERVE:
            break
        kept.append(line)
        used += cost
    kept.append(
        f"{indent}... and {len(lines) - len(kept)} more difference(s), {len(lines)} in all (see the function log)"
    )
    return kept


def _escaped_length(text: str) -> int:
    return len(json.dumps(text)) - 2


# --- connection and error mapping -----------------------------------------------------------------------------------


def _connect(conn_params: Settings) -> Connection:
    try:
        return connect(conn_params)
    except DbUnreachableError as e:
        raise DatabaseUnreachableError(str(e)) from e
    except DbConnectionRejectedError as e:
        message = str(e)
        if _tls_refusal(message.lower(), conn_params.sslmode):
            raise ConfigurationError(
                f"{message} (the function connects with DB_SSLMODE={conn_params.sslmode}: the server's TLS "
                "setting disagrees)"
            ) from e
        raise DatabaseAuthError(message) from e


def _tls_refusal(message: str, sslmode: str) -> bool:
    if any(marker in message for marker in _TLS_MARKERS):
        return True
    # pg_hba.conf with hostssl only (RDS rds.force_ssl=1) refuses a plaintext session: "... no encryption".
    return sslmode in ("disable", "allow") and "no pg_hba.conf entry" in message and "no encryption" in message


@contextlib.contextmanager
def _database_errors(conn_params: Settings) -> Iterator[None]:
    """A lost connection or a timed-out catalog query is transient; a missing privilege is the secret's role."""
    try:
        yield
    except psycopg2.Error as e:
        detail = _one_line(str(e))
        code = e.pgcode or ""
        if code == _SQLSTATE_QUERY_CANCELED:
            raise DatabaseUnreachableError(
                f"catalog query on {conn_params.target} exceeded statement_timeout ({STATEMENT_TIMEOUT_MS} ms; "
                f"a lock held by a running DDL?): {detail}"
            ) from e
        if code == _SQLSTATE_INSUFFICIENT_PRIVILEGE:
            raise DatabaseAuthError(
                f"role of {conn_params.target} may not read the catalog or the migration history: {detail}"
            ) from e
        if isinstance(e, psycopg2.InterfaceError) or (
            isinstance(e, psycopg2.OperationalError) and (not code or code.startswith(("08", "57P")))
        ):
            raise DatabaseUnreachableError(f"connection to {conn_params.target} lost: {detail}") from e
        raise


def _one_line(text: str) -> str:
    return " ".join(text.split())


@step(STEP_NAME, patch=(*PATCH_BOTOCORE, "psycopg2"))
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Verify schema."""
    state = parse_event(ReleaseState, event)
    settings = config.database_settings()
    try:
        return verify_schema(state.request, database_target(settings)).to_json()
    except DatabaseAuthError:
        # The cached secret may predate a rotation: one more try with the secret read afresh, then the verdict.
        logger.info("credentials refused; reading the database secret afresh", extra={"secret": settings.secret_arn})
        return verify_schema(state.request, database_target(settings, force_fetch=True)).to_json()
