"""The one secret reader of functions/: Secrets Manager GetSecretValue, cached per ARN for warm starts.

The migration runner (``DB_SECRET_ARN``), Verify schema (``DB_SECRET_ARN``, a CA bundle in ``DB_SSLROOTCERT``) and
Create Kafka topics (``KAFKA_SECRET_ARN``) read their secrets here. The client is made in the region the ARN names,
on first use: boto3 is imported only then, so a runner given ``DB_PASSWORD`` never loads it. The SDK's errors
(``ClientError``, ``BotoCoreError``) reach the caller unchanged: each names its own variable and decides what a
throttling error is.
"""

from __future__ import annotations

import time
from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

_cache: dict[str, tuple[float, str]] = {}


def read_secret(arn: str, *, max_age: float = 0.0, force_fetch: bool = False) -> str:
    """The secret's value (``SecretString``, or ``SecretBinary`` as UTF-8); reused for ``max_age`` seconds.

    ``force_fetch`` reads it afresh. A binary secret that is not UTF-8 is a ValueError.
    """
    now = time.monotonic()
    cached = _cache.get(arn)
    if cached is not None and not force_fetch and now - cached[0] < max_age:
        return cached[1]
    response = _client(region_of(arn)).get_secret_value(SecretId=arn)
    value = response.get("SecretString")
    if value is None:
        value = response.get("SecretBinary", b"").decode("utf-8")
    _cache[arn] = (now, value)
    return value


def forget(arn: str | None = None) -> None:
    """Drop one cached secret, or all of them: a fixed or rotated secret is read afresh."""
    if arn is None:
        _cache.clear()
    else:
        _cache.pop(arn, None)


def reset() -> None:
    """Drop the cached secrets and clients (tests and the local stack switch endpoints or credentials)."""
    forget()
    _client.cache_clear()


def region_of(arn: str) -> str | None:
    """The region an ARN names (``arn:aws:secretsmanager:<region>:...``); None for a bare name."""
    parts = arn.split(":")
    return parts[3] if arn.startswith("arn:") and len(parts) > 3 and parts[3] else None


@cache
def _client(region: str | None) -> SecretsManagerClient:
    import boto3

    return boto3.client("secretsmanager", region_name=region)
