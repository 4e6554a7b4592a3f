"""AWS clients, created lazily on first use and cached for warm starts (tests get moto's)."""

from __future__ import annotations

from functools import cache
from typing import Any

import boto3
from botocore.config import Config

_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=5, read_timeout=30)


@cache
def client(service: str) -> Any:
    """The cached boto3 client for an AWS service (``ecr``, ``ecs``, ``logs``, ``stepfunctions``, ...)."""
    return boto3.client(service, config=_CONFIG)


def reset() -> None:
    """Drop cached clients (tests and the local stack switch endpoints or credentials)."""
    client.cache_clear()
