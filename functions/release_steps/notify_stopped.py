"""Notify stopped release: the notification of an execution that stopped at its step, for the incident channel.

ReleaseStoppedAtStepRule hands in Step Functions' "Execution Status Change" event for an execution that failed
without the workflow's own failure summary (a transient error after its retries, States.Timeout, a bug), timed out
or was aborted. The event names the execution, its status, error and cause; the history names the state it stopped
at and the attempts made there: it is read backwards from the end, bounded (execution_history, the same reading the
CLI's final report makes). The message gives the real duration and the redrive command that resumes at that state.
When the history cannot be read, what the event carries is published all the same: a poorer notification beats none.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from msgspec import Meta, field

from release_steps import clients, config
from release_steps.execution_history import (
    TAIL_MAX_PAGES,
    TAIL_PAGE_EVENTS,
    ExecutionOutcome,
    HistoryTracker,
    failure_lines,
    headline,
    read_last_visit,
    region_of,
)
from release_steps.messages import clip
from release_steps.models import Model
from release_steps.observability import logger, parse_event, step

if TYPE_CHECKING:
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_stepfunctions import SFNClient

STEP_NAME = "Notify stopped release"
SUBJECT_MAX_CHARS = 100  # SNS: ASCII, no line breaks, under 100 characters


def _from_epoch_millis(millis: int | None) -> datetime | None:
    return datetime.fromtimestamp(millis / 1000, UTC) if millis is not None else None


class ExecutionStatusChange(Model, kw_only=True):
    """The ``detail`` of "Step Functions Execution Status Change" (Step Functions developer guide, "EventBridge
    events for Step Functions execution status changes"). Only the execution and its status are required: any other
    field may be absent or null, and the notification still goes out."""

    execution_arn: Annotated[str, Meta(pattern=r"^arn:aws[a-z-]*:states:[a-z0-9-]+:[0-9]{12}:execution:")]
    state_machine_arn: str | None = None
    name: str | None = None
    status: Annotated[str, Meta(min_length=1, max_length=40)]
    start_millis: int | None = field(default=None, name="startDate")  # epoch milliseconds
    stop_millis: int | None = field(default=None, name="stopDate")
    error: str | None = None
    cause: str | None = None
    redrive_count: int | None = None

    @property
    def start_date(self) -> datetime | None:
        return _from_epoch_millis(self.start_millis)

    @property
    def stop_date(self) -> datetime | None:
        return _from_epoch_millis(self.stop_millis)


class ExecutionStatusChangeEvent(Model):
    """The EventBridge envelope ("Amazon EventBridge events": the fields every event has) around that detail. Not
    Powertools' EventBridgeModel: its parser package (pydantic) would load at every cold start."""

    version: str
    id: str
    detail_type: str = field(name="detail-type")
    source: str
    account: str
    time: datetime
    region: str
    resources: list[str]
    detail: ExecutionStatusChange


def stopped_outcome(detail: ExecutionStatusChange, sfn: SFNClient) -> tuple[ExecutionOutcome, str | None]:
    """The execution as its event and the tail of its history tell it, and what could not be read (or None)."""
    problem: str | None = None
    visits = []
    try:
        events, complete = read_last_visit(sfn, detail.execution_arn)
        visits = HistoryTracker().feed_all(events).visits
        if not complete:
            problem = f"no state entered in the last {TAIL_PAGE_EVENTS * TAIL_MAX_PAGES} history events"
    except Exception as e:  # any failure to read: publish what the event carries
        logger.exception("execution history not read; notifying what the event carries")
        problem = clip(f"history not read: {type(e).__name__}: {e}", 300)
    outcome = ExecutionOutcome(
        execution_arn=detail.execution_arn,
        status=detail.status,
        output=None,
        error=detail.error,
        cause=detail.cause,
        visits=visits,
        transitions=0,
        lambda_invocations=0,
        start_date=detail.start_date,
        stop_date=detail.stop_date,
    )
    return outcome, problem


def stopped_message(detail: ExecutionStatusChange, outcome: ExecutionOutcome, problem: str | None) -> tuple[str, str]:
    """The notification's subject and text: where it stopped, attempts, error, cause, duration, the redrive command."""
    name = detail.name or detail.execution_arn.rsplit(":", 1)[-1]
    region = region_of(detail.execution_arn)
    options = ["--region", region] if region else []
    lines = [f"deployflow release {name} {headline(outcome)}", f"execution: {detail.execution_arn}"]
    if problem is not None:
        lines.append(
            f"state: unknown ({problem}); the history names it: aws stepfunctions get-execution-history "
            f"--execution-arn {detail.execution_arn} {' '.join(options)} --reverse-order --max-items 20".rstrip()
        )
    lines += failure_lines(outcome, options)
    subject = f"deployflow {name}: {outcome.status} at {outcome.failed_state or 'unknown state'}"
    subject = subject.encode("ascii", "replace").decode("ascii")
    return clip(subject, SUBJECT_MAX_CHARS - 1), "\n".join(lines)


def notify(detail: ExecutionStatusChange, sfn: SFNClient, sns: SNSClient, topic_arn: str) -> dict[str, Any]:
    """Read what the history says, publish the notification; what was published."""
    outcome, problem = stopped_outcome(detail, sfn)
    subject, message = stopped_message(detail, outcome, problem)
    published = sns.publish(TopicArn=topic_arn, Subject=subject, Message=message)
    logger.info(
        "stopped execution notified", extra={"executionArn": detail.execution_arn, "state": outcome.failed_state}
    )
    return {
        "messageId": published.get("MessageId"),
        "subject": subject,
        "message": message,
        "failedState": outcome.failed_state,
        "historyRead": problem is None,
    }


@step(STEP_NAME)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Notify an execution that stopped at its step (the target of ReleaseStoppedAtStepRule)."""
    parsed = parse_event(ExecutionStatusChangeEvent, event, "Step Functions status change event")
    settings = config.notification_settings()
    return notify(parsed.detail, clients.stepfunctions(), clients.sns(), settings.topic_arn)
