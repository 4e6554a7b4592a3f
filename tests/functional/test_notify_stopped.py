"""Notify stopped release against moto: the event it is given, what it publishes when the history cannot be read,
and the events it refuses. Real executions of the real ASL, read through their history, are in
tests/workflow/test_stopped_notification.py (and the kafka-down test of tests/workflow/test_scenarios.py)."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from release_steps import config, errors, notify_stopped

from tests.functional.release_world import REGION, load_event


@pytest.fixture
def topic_inbox(release_world: Any, release_env: pytest.MonkeyPatch) -> Any:
    """The notification topic (its ARN in the function's environment), read through an SQS subscription."""
    sns = boto3.client("sns", region_name=REGION)
    sqs = boto3.client("sqs", region_name=REGION)
    topic = sns.create_topic(Name="deployflow-notifications")["TopicArn"]
    queue = sqs.create_queue(QueueName="inbox")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    release_env.setenv("NOTIFICATION_TOPIC_ARN", topic)
    config.reset()

    def received() -> list[dict[str, Any]]:
        messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
        return [json.loads(m["Body"]) for m in messages]

    return received


def test_given_an_execution_whose_history_cannot_be_read_then_what_the_event_carries_is_published(
    topic_inbox: Any, release_context: Any
) -> None:
    # GIVEN the documented event of a failed execution that this account's history does not have
    event = load_event("notify_stopped")
    arn = event["detail"]["executionArn"]

    # WHEN the rule's target is invoked
    answer = notify_stopped.lambda_handler(event, release_context)

    # THEN a poorer notification, never none: status, duration, error, cause, the redrive command, why no state
    [published] = topic_inbox()
    lines = published["Message"].splitlines()
    assert answer["message"] == published["Message"]
    assert answer["historyRead"] is False
    assert lines[0] == "deployflow release release-2026-11-23-4-20261123T101500Z FAILED at (unknown state) in 42.0s"
    assert lines[1] == f"execution: {arn}"
    assert lines[2].startswith("state: unknown (history not read: ExecutionDoesNotExist"), lines[2]
    assert f"aws stepfunctions get-execution-history --execution-arn {arn} --region eu-west-1" in lines[2]
    assert "error: KafkaUnreachableError" in lines
    assert "cause: Kafka not reachable at b-1.msk:9098 within 10 s" in lines, "the cause's message, not its JSON"
    assert lines[-1] == (
        "next: fix the cause, then resume at this state: aws stepfunctions redrive-execution "
        f"--execution-arn {arn} --region eu-west-1"
    ), "the region the execution runs in, from its ARN"
    assert published["Subject"] == "deployflow release-2026-11-23-4-20261123T101500Z: FAILED at unknown state"


def test_given_an_abort_without_error_or_dates_then_the_notification_says_so_instead_of_none(
    topic_inbox: Any, release_context: Any
) -> None:
    event = load_event("notify_stopped")
    detail = event["detail"]
    detail.update(status="ABORTED", error=None, cause=None, stopDate=None, futureField={"x": 1})

    notify_stopped.lambda_handler(event, release_context)

    [published] = topic_inbox()
    text = published["Message"]
    assert text.splitlines()[0].endswith("ABORTED at (unknown state)"), text
    assert "error: (none given)" in text
    assert "None" not in text.replace("(none given)", ""), text
    assert "cause:" not in text, "no cause line without a cause"


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda e: e["detail"].pop("executionArn"), "detail.executionArn"),
        (lambda e: e["detail"].update(executionArn="arn:aws:sns:eu-west-1:123456789012:x"), "detail.executionArn"),
        (lambda e: e.pop("detail"), "detail"),
    ],
    ids=["no-execution", "not-an-execution-arn", "no-detail"],
)
def test_given_an_event_that_is_not_a_status_change_then_it_is_refused_naming_the_field_and_nothing_is_published(
    topic_inbox: Any, release_context: Any, change: Any, named: str
) -> None:
    event = load_event("notify_stopped")
    change(event)

    with pytest.raises(errors.InvalidInputError) as refused:
        notify_stopped.lambda_handler(event, release_context)

    assert named in str(refused.value)
    assert topic_inbox() == []
