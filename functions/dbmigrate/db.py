"""Connecting: wait for the database with exponential backoff, bounded; fail fast when the server refuses us."""

from __future__ import annotations

import math
import select
import time
from collections.abc import Callable
from typing import Any

import psycopg2
import psycopg2.extensions

from dbmigrate.errors import DbConnectionRejectedError, DbUnreachableError
from dbmigrate.events import EventSink, discard
from dbmigrate.settings import Settings

Connection = psycopg2.extensions.connection

_FIRST_DELAY_SECONDS = 0.1
_MAX_DELAY_SECONDS = 5.0
_MAX_ATTEMPT_SECONDS = 10
# The server answered and said no: waiting longer changes nothing (a wrong password, database or sslmode).
_REJECTIONS = (
    "password authentication failed",
    "authentication failed",
    "no pg_hba.conf entry",
    "does not exist",
    "permission denied",
    "server does not support ssl",
    "no password supplied",
    "certificate",
)


def connect(
    settings: Settings,
    *,
    log: EventSink = discard,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Connection:
    """A connection to the settings' database, waiting up to settings.connect_timeout_seconds for it to accept one.

    Raises DbUnreachableError when the bound is spent, DbConnectionRejectedError at once when the server refuses.
    """
    started = clock()
    deadline = started + settings.connect_timeout_seconds
    delay = _FIRST_DELAY_SECONDS
    attempt = 0
    while True:
        attempt += 1
        # libpq's connect_timeout is whole seconds, at least 2; the last attempt may overrun the bound by that much.
        attempt_timeout = max(2, min(_MAX_ATTEMPT_SECONDS, math.ceil(deadline - clock())))
        try:
            conn: Connection = psycopg2.connect(**connect_kwargs(settings, attempt_timeout))
        except psycopg2.OperationalError as e:
            message = one_line(str(e))
            if any(marker in message.lower() for marker in _REJECTIONS):
                raise DbConnectionRejectedError(f"database {settings.target} refused the connection: {message}") from e
            remaining = deadline - clock()
            if remaining <= 0:
                raise DbUnreachableError(
                    f"database {settings.target} unreachable: {attempt} attempt(s) in {clock() - started:.1f}s "
                    f"(bound DB_CONNECT_TIMEOUT_SECONDS={settings.connect_timeout_seconds:g}): {message}"
                ) from e
            wait = min(delay, remaining)
            log(
                "database_waiting",
                target=settings.target,
                attempt=attempt,
                retry_in_ms=round(wait * 1000),
                error=message,
            )
            sleep(wait)
            delay = min(delay * 2, _MAX_DELAY_SECONDS)
            continue
        log("database_connected", target=settings.target, attempts=attempt, waited_ms=round((clock() - started) * 1000))
        return conn


def connect_kwargs(settings: Settings, connect_timeout: int) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "dbname": settings.dbname,
        "user": settings.user,
        "password": settings.password,
        "sslmode": settings.sslmode,
        "connect_timeout": connect_timeout,
        "application_name": settings.application_name,
    }
    if settings.sslrootcert:
        kwargs["sslrootcert"] = settings.sslrootcert
    return kwargs


def one_line(text: str) -> str:
    return " ".join(text.split())


def wait_select(conn: Connection) -> None:
    """psycopg2's wait callback (``set_wait_callback``): wait in ``select()``, so a signal interrupts the wait, and on
    KeyboardInterrupt cancel the statement on the server and go on waiting for its error (SQLSTATE 57014).

    ``psycopg2.extras.wait_select`` does the same; importing psycopg2.extras loads ``logging`` (7-10 ms of a migrate at
    head), which the runner does not otherwise use.
    """
    while True:
        try:
            state = conn.poll()
            if state == psycopg2.extensions.POLL_OK:
                return
            if state == psycopg2.extensions.POLL_READ:
                select.select([conn.fileno()], [], [])
            elif state == psycopg2.extensions.POLL_WRITE:
                select.select([], [conn.fileno()], [])
            else:
                raise psycopg2.OperationalError(f"bad state from poll: {state}")
        except KeyboardInterrupt:
            conn.cancel()  # the server answers the cancel with an error, which ends the loop
