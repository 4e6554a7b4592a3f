"""Translation of botocore errors into the error contract: throttling becomes the transient ``AwsThrottlingError``.

The SDK already retries throttled calls (standard mode, see clients.py); what reaches a step has exhausted those
retries, so the state machine's backoff takes over. Every other ``ClientError`` is left to the step, which knows
which resource it was asking about and names it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from botocore.exceptions import ClientError

from release_steps.errors import AwsThrottlingError

# The codes AWS services use for "slow down" (the four of the issue plus the variants botocore itself retries on).
THROTTLING_ERROR_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "SlowDown",
        "EC2ThrottledException",
        "ProvisionedThroughputExceededException",
    }
)


def error_code(error: ClientError) -> str:
    """The AWS error code of a ``ClientError`` (empty when the response has none)."""
    return str(error.response.get("Error", {}).get("Code", ""))


def error_message(error: ClientError) -> str:
    """The AWS error message of a ``ClientError``, on one line."""
    message = str(error.response.get("Error", {}).get("Message", "")) or str(error)
    return " ".join(message.split())


def is_throttling(error: BaseException) -> bool:
    """Whether an exception is an AWS throttling response."""
    return isinstance(error, ClientError) and error_code(error) in THROTTLING_ERROR_CODES


def throttling_error(error: ClientError, operation: str) -> AwsThrottlingError:
    """The transient error for a throttled call, naming the operation (e.g. ``ecs:RunTask``)."""
    return AwsThrottlingError(f"{operation} was throttled by AWS ({error_code(error)}: {error_message(error)})")


@contextmanager
def translate_throttling(operation: str) -> Iterator[None]:
    """Run AWS calls; a throttling ``ClientError`` is re-raised as ``AwsThrottlingError`` naming ``operation``."""
    try:
        yield
    except ClientError as e:
        if is_throttling(e):
            raise throttling_error(e, operation) from e
        raise
