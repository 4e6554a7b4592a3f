"""Where the CLI's AWS calls go, resolved as the AWS CLI v2 resolves them, plus what an ARN already says.

- profile: ``--profile``, else ``AWS_PROFILE`` (botocore reads it), else the default credentials chain;
- region: ``--region``, else ``AWS_REGION``, else ``AWS_DEFAULT_REGION``, else the region of the ARN given (a state
  machine or an execution names its region), else the profile's configured region;
- endpoint: ``--endpoint-url``, else ``AWS_ENDPOINT_URL`` / ``AWS_ENDPOINT_URL_<SERVICE>`` (botocore reads them).

A target that cannot be used (an unknown profile, no region, no credentials, an endpoint that does not answer) is
a ``TargetError`` with one line to print, never a traceback.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from mypy_boto3_cloudformation import CloudFormationClient
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_stepfunctions import SFNClient
    from mypy_boto3_sts import STSClient

# arn:aws:states:<region>:<account>:stateMachine:<name> or ...:execution:<machine>:<name>
_ARN_REGION = re.compile(r"^arn:aws[a-z-]*:states:([a-z0-9-]+):")
# Bounded waits: a dead endpoint or a black-holed network fails in seconds, not after botocore's long defaults.
CONNECT_TIMEOUT_SECONDS = 5
READ_TIMEOUT_SECONDS = 30
MAX_ATTEMPTS = 3


class TargetError(Exception):
    """The deployed stack or state machine could not be found or reached."""


@dataclass(frozen=True)
class Target:
    """The options naming where to go; ``None`` leaves the choice to the environment and the AWS config."""

    region: str | None = None
    profile: str | None = None
    endpoint_url: str | None = None

    def flags(self) -> str:
        """The options given, as they would be typed again (for a hint such as ``deployflow watch ARN ...``)."""
        given = [("--region", self.region), ("--profile", self.profile), ("--endpoint-url", self.endpoint_url)]
        return "".join(f" {flag} {value}" for flag, value in given if value)


def arn_region(arn: str | None) -> str | None:
    """The region a Step Functions ARN names, or None."""
    match = _ARN_REGION.match(arn or "")
    return match.group(1) if match else None


def resolve_region(
    explicit: str | None, arn: str | None, configured: str | None, environ: Mapping[str, str] | None = None
) -> str | None:
    """The region to use, in the order the module docstring gives."""
    env = os.environ if environ is None else environ
    return explicit or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or arn_region(arn) or configured


class Clients(NamedTuple):
    """The CLI's clients: Step Functions (executions), CloudFormation (the stack's outputs), DynamoDB (the
    one-release lock) and STS (who abandons a release). Creating a client calls nothing."""

    stepfunctions: SFNClient
    cloudformation: CloudFormationClient
    dynamodb: DynamoDBClient
    sts: STSClient


def clients(target: Target, *, arn: str | None = None) -> Clients:
    """The CLI's boto3 clients at the target; raises TargetError naming what is missing."""
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError

    try:
        session = boto3.Session(profile_name=target.profile)
        region = resolve_region(target.region, arn, session.region_name)
        if region is None:
            raise TargetError(
                "no AWS region: give --region, set AWS_REGION, configure one for the profile, or pass an ARN"
            )
        config = Config(
            connect_timeout=CONNECT_TIMEOUT_SECONDS,
            read_timeout=READ_TIMEOUT_SECONDS,
            retries={"mode": "standard", "max_attempts": MAX_ATTEMPTS},
        )
        endpoint = target.endpoint_url or None
        return Clients(
            session.client("stepfunctions", region_name=region, config=config, endpoint_url=endpoint),
            session.client("cloudformation", region_name=region, config=config, endpoint_url=endpoint),
            session.client("dynamodb", region_name=region, config=config, endpoint_url=endpoint),
            session.client("sts", region_name=region, config=config, endpoint_url=endpoint),
        )
    except BotoCoreError as e:  # an unknown profile, a broken config file: nothing to talk to
        raise TargetError(one_line(e)) from e


def one_line(error: BaseException) -> str:
    """An AWS error as one line: ``Code: message`` for a service error, botocore's sentence otherwise."""
    response = getattr(error, "response", None)
    if isinstance(response, dict) and isinstance(response.get("Error"), dict):
        code, message = response["Error"].get("Code", "?"), response["Error"].get("Message", "")
        return " ".join(f"{code}: {message}".split())
    return " ".join(str(error).split())
