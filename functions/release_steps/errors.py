"""The error contract: Step Functions sees only the exception class name, so these names are the ASL's vocabulary.

Every name is unique across the app and ends in ``Error``. Transient errors are retried by the state machine
(backoff, jitter, bounded attempts); when the attempts run out they are not caught, so the execution fails at the
step and a redrive resumes there. Terminal errors are caught, summarized, notified and end the execution in
``Release failed`` (fix, then start a new release). A test proves every name the ASL mentions exists here, every
terminal error is caught, and no transient error is.
"""

from __future__ import annotations

from typing import ClassVar


class DeployflowError(Exception):
    """Base of every error a step raises on purpose; the message is one line an operator can act on."""

    transient: ClassVar[bool] = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class TransientError(DeployflowError):
    """Retried by the state machine: the condition is expected to clear by itself."""

    transient = True


class TerminalError(DeployflowError):
    """Caught by the state machine: retrying cannot help; the release fails and is notified."""


# --- transient ---------------------------------------------------------------------------------------------------


class AwsThrottlingError(TransientError):
    """An AWS API throttled the request after the SDK's own retries."""


class ImageScanPendingError(TransientError):
    """The ECR image scan has not finished yet."""


class EcsCapacityError(TransientError):
    """ECS could not place the migration task now (capacity, AGENT, resource shortage)."""


class DatabaseUnreachableError(TransientError):
    """The database did not accept a connection within the bound."""


class KafkaUnreachableError(TransientError):
    """No Kafka broker answered within the bound."""


# --- terminal ----------------------------------------------------------------------------------------------------


class InvalidInputError(TerminalError):
    """The execution input (or a step's input) is malformed; the message names the field."""


class ConfigurationError(TerminalError):
    """The stack's configuration (an environment variable of the function) is missing or invalid."""


class DeploymentInProgressError(TerminalError):
    """Another release holds the one-release lock (running, or failed at a step awaiting its redrive)."""


class ImageNotFoundError(TerminalError):
    """The migration image tag does not exist in the ECR repository."""


class ImageScanFailedError(TerminalError):
    """ECR could not scan the image (scan status FAILED or UNSUPPORTED_IMAGE)."""


class ImageVulnerableError(TerminalError):
    """The image scan found vulnerabilities at or above the configured severity threshold."""


class MigrationTaskDefinitionError(TerminalError):
    """The migration task definition family or its named container does not exist."""


class MigrationTaskStartError(TerminalError):
    """ECS refused to start the migration task for a reason that retrying cannot fix."""


class MigrationFailedError(TerminalError):
    """The migration container stopped with a non-zero exit code or without exiting normally."""


class MigrationTimeoutError(TerminalError):
    """The migration task did not stop before its deadline (it is stopped)."""


class DatabaseAuthError(TerminalError):
    """The database refused the credentials from the secret."""


class SchemaMismatchError(TerminalError):
    """The live schema differs from the expected schema; the message is the readable diff."""


class KafkaAuthError(TerminalError):
    """The Kafka brokers refused the credentials."""


class TopicConflictError(TerminalError):
    """A topic cannot be reconciled (replication factor differs, or the broker refuses the wanted settings)."""


class ServiceNotFoundError(TerminalError):
    """A service to restart does not exist (or is not ACTIVE) in the cluster."""


class UnsupportedDeploymentControllerError(TerminalError):
    """A service to restart uses a deployment controller other than ECS (CODE_DEPLOY, EXTERNAL): a forced new
    deployment cannot roll it out, so the release refuses it before anything changes."""


class ServiceDeploymentFailedError(TerminalError):
    """A service's new deployment FAILED, was rolled back, or disappeared."""


class ServiceRolloutTimeoutError(TerminalError):
    """A service's new deployment did not complete before the deadline."""


def transient_error_names() -> list[str]:
    """Names of the errors the state machine retries."""
    return sorted(cls.__name__ for cls in _all_errors() if cls.transient)


def terminal_error_names() -> list[str]:
    """Names of the errors the state machine catches and fails on."""
    return sorted(cls.__name__ for cls in _all_errors() if not cls.transient)


def _all_errors() -> list[type[DeployflowError]]:
    found: list[type[DeployflowError]] = []
    pending: list[type[DeployflowError]] = [TransientError, TerminalError]
    while pending:
        cls = pending.pop()
        for sub in cls.__subclasses__():
            found.append(sub)
            pending.append(sub)
    return found
