"""Fixtures for the execution-path tests: a fresh local stack per test, and the SNS topic read through SQS."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from deployflow.local.stack import LocalStack, StackOptions
from tests.workflow.support import Inbox


@pytest.fixture
def stack_options(tmp_path: Path) -> StackOptions:
    """The local stack's defaults (Wait/Retry delays scaled by 0.02); the functions' log is kept in tmp_path."""
    return StackOptions(log_dir=tmp_path / "stack-logs")


@pytest.fixture
def stack(stack_options: StackOptions) -> Iterator[LocalStack]:
    """A fresh local stack (PostgreSQL, Kafka, moto server) for one test; stopped when the test ends, pass or fail."""
    with LocalStack(stack_options) as started:
        yield started


@pytest.fixture
def inbox(stack: LocalStack) -> Inbox:
    """An SQS queue subscribed to the stack's notification topic before anything runs."""
    sqs = stack.client("sqs")
    queue_url = sqs.create_queue(QueueName="release-notifications")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    stack.client("sns").subscribe(TopicArn=stack.topic_arn, Protocol="sqs", Endpoint=queue_arn)
    return Inbox(sqs, queue_url)
