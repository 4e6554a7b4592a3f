"""AWS clients, created lazily on first use and cached for warm starts (tests get moto's).

One accessor per service, typed with the mypy-boto3 stubs (``deployflow[dev]``): the stub types are imported only
under ``TYPE_CHECKING``, so the Lambda package needs nothing beyond the runtime's boto3.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

import boto3
from botocore.config import Config

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_ecr import ECRClient
    from mypy_boto3_ecs import ECSClient
    from mypy_boto3_logs import CloudWatchLogsClient
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_stepfunctions import SFNClient

_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=5, read_timeout=30)


@cache
def dynamodb() -> DynamoDBClient:
    """The cached DynamoDB client (the one-release lock)."""
    return boto3.client("dynamodb", config=_CONFIG)


@cache
def ecr() -> ECRClient:
    """The cached ECR client."""
    return boto3.client("ecr", config=_CONFIG)


@cache
def ecs() -> ECSClient:
    """The cached ECS client."""
    return boto3.client("ecs", config=_CONFIG)


@cache
def logs() -> CloudWatchLogsClient:
    """The cached CloudWatch Logs client."""
    return boto3.client("logs", config=_CONFIG)


@cache
def stepfunctions() -> SFNClient:
    """The cached Step Functions client."""
    return boto3.client("stepfunctions", config=_CONFIG)


@cache
def sns() -> SNSClient:
    """The cached SNS client."""
    return boto3.client("sns", config=_CONFIG)


def reset() -> None:
    """Drop cached clients (tests and the local stack switch endpoints or credentials)."""
    for accessor in (dynamodb, ecr, ecs, logs, stepfunctions, sns):
        accessor.cache_clear()
