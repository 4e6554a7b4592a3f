"""Fixtures of the AWS-facing step tests: a moto account (``release_world``) and the function's environment.

Names carry a ``release_`` prefix so they never shadow the local-stack fixtures of tests/fixtures/aws.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from botocore.config import Config
from moto import mock_aws
from moto.moto_api import state_manager
from release_steps import clients, config

from deployflow.local.dynamodb_seam import AtomicItemWrites
from tests.functional.release_world import (
    CLUSTER,
    CONTAINER,
    FAMILY,
    LOCK_TABLE,
    REGION,
    REPOSITORY,
    SERVICES,
    ReleaseWorld,
)

# Variables that would send boto3 somewhere else than moto, or make it look for a profile that does not exist.
AWS_REDIRECTS = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_ECS",
    "AWS_ENDPOINT_URL_ECR",
    "AWS_ENDPOINT_URL_LOGS",
    "AWS_ENDPOINT_URL_SFN",
    "AWS_ENDPOINT_URL_DYNAMODB",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
)
FAKE_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_METRICS_NAMESPACE": "DeployflowTest",
    "POWERTOOLS_SERVICE_NAME": "deployflow",
    "POWERTOOLS_LOG_LEVEL": "WARNING",
}


@dataclass
class FakeLambdaContext:
    """The attributes of a Lambda context object that Powertools reads."""

    function_name: str = "deployflow-steps"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = f"arn:aws:lambda:{REGION}:123456789012:function:deployflow-steps"
    aws_request_id: str = "8f5a2b7c-0d1e-4f3a-9b6c-5d4e3f2a1b0c"

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


@pytest.fixture
def release_context() -> Any:
    """A Lambda context for calling a ``lambda_handler``."""
    return FakeLambdaContext()


@pytest.fixture
def release_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """Fake credentials, region, Powertools switches; no profile or endpoint override leaks in from the machine."""
    for name in AWS_REDIRECTS:
        monkeypatch.delenv(name, raising=False)
    for name, value in FAKE_AWS_ENV.items():
        monkeypatch.setenv(name, value)
    config.reset()
    clients.reset()
    yield monkeypatch
    config.reset()
    clients.reset()


@pytest.fixture
def release_world(release_env: pytest.MonkeyPatch) -> Iterator[ReleaseWorld]:
    """A moto account with the stack's settings in the environment (cluster, repository, family... not created)."""
    # DynamoDB's conditional writes are atomic; moto's are not without the seam (deployflow/local/dynamodb_seam.py).
    with mock_aws(), AtomicItemWrites():
        world = ReleaseWorld()
        world.create_lock_table()
        settings = {
            "SERVICES": ",".join(SERVICES),
            "MIGRATION_POLL_SECONDS": "10",
            "SERVICES_POLL_SECONDS": "15",
            "ECR_REPOSITORY_NAME": REPOSITORY,
            "SCAN_SEVERITY_THRESHOLD": "HIGH",
            "REQUIRE_IMAGE_SCAN": "false",
            "ECS_CLUSTER": CLUSTER,
            "MIGRATION_TASK_FAMILY": FAMILY,
            "MIGRATION_CONTAINER_NAME": CONTAINER,
            "MIGRATION_LAUNCH_TYPE": "FARGATE",
            "MIGRATION_SUBNETS": world.subnet_id,
            "MIGRATION_SECURITY_GROUPS": world.security_group_id,
            "MIGRATION_TIMEOUT_SECONDS": "1800",
            "MIGRATION_LOG_TAIL_LINES": "5",
            "SERVICES_TIMEOUT_SECONDS": "1200",
            "LOCK_TABLE_NAME": LOCK_TABLE,
        }
        for name, value in settings.items():
            release_env.setenv(name, value)
        config.reset()
        yield world


@pytest.fixture
def release_setting(release_world: ReleaseWorld, release_env: pytest.MonkeyPatch) -> Callable[[str, str | None], None]:
    """Change one of the function's settings for a test (``None`` removes it); the step parses it afresh."""

    def change(name: str, value: str | None) -> None:
        if value is None:
            release_env.delenv(name, raising=False)
        else:
            release_env.setenv(name, value)
        config.reset()

    return change


@pytest.fixture
def no_sdk_retries(release_env: pytest.MonkeyPatch) -> None:
    """One attempt per AWS call: a throttled call reaches the step at once instead of after the SDK's backoff."""
    release_env.setattr(clients, "_CONFIG", Config(retries={"mode": "standard", "max_attempts": 1}))
    clients.reset()


@pytest.fixture
def frozen_task_lifecycle() -> Iterator[None]:
    """Tasks stay in their state: moto otherwise advances a task one lifecycle state per DescribeTasks."""
    state_manager.set_transition("ecs::task", {"progression": "manual", "times": 1_000_000})
    yield
    state_manager.unset_transition("ecs::task")
