"""Build deployment record: the execution's output document and its summary for the incident channel.

The same builders serve Summarize failure (summarize_failure.py), which hands in the failed state the ASL named
and whatever the state held when the error was caught: every section is read leniently and never raises on a
partial or malformed state, since a summary that names the failed state, the error and what to do next is worth
more than a perfect one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from msgspec import UNSET, ValidationError

from release_steps.messages import cause_message, clip, describe_validation_error, json_type
from release_steps.models import (
    DeploymentRecord,
    FailureInfo,
    ImageResult,
    MigrationTask,
    Outcome,
    RecordResult,
    RecordStepInput,
    RolloutResult,
    SchemaResult,
    ServiceRollout,
    TopicsResult,
)
from release_steps.observability import logger, step
from release_steps.timeutil import to_iso, utc_now

STATE_NAME = "Build deployment record"

# What an operator does next, per error name (errors.py), one line each. The state machine catches only the terminal
# errors, and a caught error ends in Release failed, which a redrive would only re-enter: their hints say "start a new
# release", never "redrive". Anything else is not caught: the execution fails at the step that raised it, where a
# redrive resumes. The summarizer normally never sees those; should it (a hand-run summary, a changed Catch), the hint
# still says which case is which.
_RESUME = (
    "then redrive the execution, which resumes at this step (if it ended in Release failed instead, start a new "
    "release)"
)
NEXT_STEPS: dict[str, str] = {
    # terminal: caught, summarized, notified, Release failed
    "InvalidInputError": "fix the field named in the cause in the execution input and start a new release",
    "ConfigurationError": "fix the stack parameter behind the named variable (samconfig.toml), redeploy the stack, "
    "then start a new release",
    "DeploymentInProgressError": (
        "the release named in the error holds the lock: let it finish, resume it as the error says if it failed at a "
        "step, or give it up with deployflow abandon <its ARN>; then start a new release"
    ),
    "ImageNotFoundError": "push the migration image with this tag (or correct the tag) and start a new release",
    "ImageScanFailedError": "look at the image's scan in ECR (unsupported base image?), rescan it and start a new "
    "release",
    "ImageVulnerableError": "rebuild the migration image on a patched base (or raise ScanSeverityThreshold "
    "knowingly) and start a new release",
    "MigrationTaskDefinitionError": "check the MigrationTaskFamily and MigrationContainerName parameters against ECS, "
    "redeploy the stack, then start a new release",
    "MigrationTaskStartError": "fix what ECS refused (subnets, security groups, roles, image) and start a new release",
    "MigrationFailedError": "fix the migration file named in the cause (the runner's failure line above: its lint "
    "finding, or the failing statement with PostgreSQL's error) and start a new release",
    "MigrationTimeoutError": "the task was stopped: look for locks or a long-running statement in the database, raise "
    "MigrationTimeoutSeconds if the migration is legitimately long, then start a new release",
    "DatabaseAuthError": "fix the database secret (rotated?) or the database user, then start a new release (the "
    "migration already ran: it is a no-op the second time)",
    "SchemaMismatchError": "compare the diff above with sql/; add a migration that removes the drift and start a new "
    "release",
    "KafkaAuthError": "fix the Kafka credentials of the topic step (SCRAM secret or MSK IAM policy), then start a new "
    "release",
    "TopicConflictError": "reconcile the topic by hand or change the topic parameters (topics are never shrunk or "
    "deleted), then start a new release",
    "ServiceNotFoundError": "check the service names (execution input or ServiceNames) against the cluster and start "
    "a new release",
    "UnsupportedDeploymentControllerError": "a release restarts services with a forced new deployment, which needs "
    "the ECS deployment controller: drop the service from ServiceNames (or the execution's services) and deploy it "
    "with its own controller (CodeDeploy), then start a new release",
    "ServiceDeploymentFailedError": "read the service's events in the ECS console (failed or rolled back), fix the "
    "service and start a new release",
    "ServiceRolloutTimeoutError": "the deployment may still be running: check the service's events in the ECS "
    "console; once it COMPLETED nothing is left to do, otherwise fix the service (or raise ServicesTimeoutSeconds if "
    "rollouts are legitimately slow) and start a new release",
    # transient, after the state machine's retry budget ran out: not caught, the execution fails at the step
    "AwsThrottlingError": f"AWS kept throttling after every retry: wait a few minutes, {_RESUME}",
    "ImageScanPendingError": f"the ECR scan did not finish within the retry budget: once it is COMPLETE, {_RESUME}",
    "EcsCapacityError": f"ECS could not place the migration task: add capacity to the cluster, {_RESUME}",
    "DatabaseUnreachableError": "check that the database is up and that the function's subnets and security group "
    f"reach it, {_RESUME}",
    "KafkaUnreachableError": "check that the brokers are up and that the function's subnets and security group reach "
    f"them, {_RESUME}",
    # raised by Step Functions itself; not caught either
    "States.Timeout": f"the step ran past its TimeoutSeconds: read its log in the execution history, fix the cause, "
    f"{_RESUME}",
}
UNEXPECTED_HINT = (
    "an unexpected failure inside the step: read its log (linked from the execution history), fix the code or the "
    f"configuration and deploy it (the state machine invokes the functions' latest code), {_RESUME}"
)
GENERIC_HINT = (
    "read the execution history in the Step Functions console and fix the cause; an execution that ended in Release "
    "failed needs a new release, one that failed at a step can be redriven"
)

SUBJECT_MAX = 99  # SNS: "less than 100 characters", one line, no control characters
CAUSE_MAX = 4000  # in the record
SUMMARY_CAUSE_MAX = 1500  # in the summary: an SNS email or a chat message, not a log
SUMMARY_LIST_MAX = 20
STATEMENTS_SHOWN = 5  # per migration file in a summary

_SECTION_KEYS = ("request", "execution", "image", "migration", "schema", "topics", "rollout", "failure", "rawInput")
_SEVERITIES = ("CRITICAL", "HIGH", "MEDIUM", "LOW", "INFORMATIONAL", "UNDEFINED")


@step(STATE_NAME)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Build the deployment record and its summary from the state of a finished release."""
    state, unreadable = read_state(event)
    result = build_record(state, finished_at=utc_now(), unreadable=unreadable)
    logger.info("deployment record built", extra={"outcome": result.record.outcome})
    return result.to_json()


# --- reading the state ----------------------------------------------------------------------------------------------


def read_state(event: Any) -> tuple[RecordStepInput, list[str]]:
    """Parse the state section by section; an unreadable section is dropped and reported, never raised."""
    if not isinstance(event, dict):
        return RecordStepInput(), [f"the state is not a JSON object but {json_type(event)}"]
    readable: dict[str, Any] = {}
    unreadable: list[str] = []
    for key in _SECTION_KEYS:
        if key not in event or (event[key] is None and key != "rawInput"):
            continue
        try:
            RecordStepInput.load({key: event[key]})
        except ValidationError as e:
            unreadable.append(describe_validation_error(e, f"state section {key!r}"))
        else:
            readable[key] = event[key]
    if "failure" in event and "failure" not in readable:
        readable["failure"] = _coerce_failure(event["failure"]).to_json()
    return RecordStepInput.load(readable), unreadable


def _coerce_failure(raw: Any) -> FailureInfo:
    """A failure section that does not have Step Functions' shape, kept as well as it can be."""
    error = raw.get("Error") if isinstance(raw, dict) else None
    cause = raw.get("Cause") if isinstance(raw, dict) else raw
    if cause is not None and not isinstance(cause, str):
        cause = json.dumps(cause, default=str)
    return FailureInfo(error=str(error) if error else "UnknownError", cause=cause)


# --- the failure ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FailureDetails:
    """The failure as an operator reads it."""

    error: str
    message: str
    failed_step: str
    next_step: str


def describe_failure(state: RecordStepInput, failed_state: str | None) -> FailureDetails | None:
    """Which state failed (as the ASL named it), with which error and message, and what to do next; None when
    nothing failed."""
    if state.failure is None:
        return None
    error = _clip(state.failure.error, 120)
    return FailureDetails(
        error=error,
        message=cause_message(state.failure.cause),
        failed_step=_clip(failed_state, 120) if failed_state else "(state not recorded)",
        next_step=next_step_hint(error) + _migration_clause(state, error) + _services_command(state, error),
    )


# The errors of the service steps, whose Next line says whether the migration ran before them (it stays applied).
_SERVICE_ERRORS = frozenset(
    {"ServiceNotFoundError", "UnsupportedDeploymentControllerError", "ServiceDeploymentFailedError"}
)


def _migration_clause(state: RecordStepInput, error: str) -> str:
    """``; the migration already ran`` (or that it did not) for a failure about the services, as the state says."""
    if error not in _SERVICE_ERRORS:
        return ""
    migration = state.migration
    if migration is None or not migration.task_arn:
        return "; nothing was changed: the migration did not run"
    if state.request is not None and state.request.dry_run:
        return "; nothing was changed (a dry run)"
    return "; the migration already ran (it stays applied)"


def _services_command(state: RecordStepInput, error: str) -> str:
    """For a failed rollout, the AWS CLI command that shows the unfinished services' events."""
    if error not in ("ServiceDeploymentFailedError", "ServiceRolloutTimeoutError") or state.rollout is None:
        return ""
    unfinished = [s for s in state.rollout.services if s.rollout_state != "COMPLETED"][:SUMMARY_LIST_MAX]
    # arn:aws:ecs:<region>:<account>:service/<cluster>/<name>
    clusters = {s.service_arn.split("/")[-2] for s in unfinished if s.service_arn and s.service_arn.count("/") >= 2}
    if not unfinished or len(clusters) != 1:
        return ""
    names = " ".join(_clip(s.name, 255) for s in unfinished)
    return (
        f"; their events: aws ecs describe-services --cluster {clusters.pop()} --services {names} "
        "--query 'services[].{name: serviceName, deployments: deployments, events: events[:10]}'"
    )


def next_step_hint(error: str) -> str:
    """One line telling the operator what to do about ``error``."""
    if error in NEXT_STEPS:
        return NEXT_STEPS[error]
    if error.startswith(("Lambda.", "Sandbox.", "Runtime.")) or error in {"States.TaskFailed", "States.Runtime"}:
        return UNEXPECTED_HINT
    return GENERIC_HINT


# --- the record -----------------------------------------------------------------------------------------------------


def build_record(
    state: RecordStepInput,
    finished_at: datetime,
    unreadable: list[str] | None = None,
    failed_state: str | None = None,
    notes: list[str] | None = None,
    failed_section: str | None = None,
) -> RecordResult:
    """The deployment record, its SNS subject and its summary."""
    failure = describe_failure(state, failed_state)
    dry_run = state.request.dry_run if state.request else _raw(state, "dryRun") is True
    outcome: Outcome
    if failure is not None:
        outcome = "failed"
    elif dry_run:
        outcome = "dry-run"
    else:
        outcome = "succeeded"
    started = _parse_time(state.execution.start_time) if state.execution else None
    duration = round((finished_at - started).total_seconds(), 3) if started else None
    # Built from the sections as the state holds them, already validated by RecordStepInput.load.
    record = DeploymentRecord(
        outcome=outcome,
        execution_arn=state.execution.id if state.execution else None,
        execution_name=state.execution.name if state.execution else None,
        image_tag=_image_tag(state),
        image_uri=state.image.image_uri if state.image else None,
        image_digest=state.image.digest if state.image else None,
        dry_run=dry_run,
        migration=state.migration,
        schema_=state.schema_,
        topics=state.topics,
        services=list(state.rollout.services) if state.rollout else [],
        failed_step=failure.failed_step if failure else None,
        error=failure.error if failure else None,
        cause=_clip(failure.message, CAUSE_MAX) if failure else None,
        started_at=state.execution.start_time if state.execution else None,
        finished_at=to_iso(finished_at),
        duration_seconds=duration,
    )
    return RecordResult(
        subject=subject_line(record, _label(state)),
        summary=summary_text(state, record, failure, unreadable or [], notes or [], failed_section),
        record=record,
    )


def _raw(state: RecordStepInput, key: str) -> Any:
    return state.raw_input.get(key) if isinstance(state.raw_input, dict) else None


def _image_tag(state: RecordStepInput) -> str | None:
    if state.image:
        return state.image.tag
    if state.request:
        return state.request.image_tag
    raw = _raw(state, "imageTag")
    return _clip(raw, 140) if isinstance(raw, str) else None


def _label(state: RecordStepInput) -> str:
    """The stack's name from the state machine's (``<stack>-release``): it names the environment."""
    if state.execution and state.execution.state_machine_arn:
        name = state.execution.state_machine_arn.rsplit(":", 1)[-1].strip().removesuffix("-release")
        if name:
            return name
    return "deployflow"


def _parse_time(value: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def subject_line(record: DeploymentRecord, label: str) -> str:
    """The SNS subject: one ASCII line under 100 characters."""
    tag = record.image_tag or "(no image tag)"
    what = f"dry run of {tag}" if record.dry_run else f"release {tag}"
    if record.outcome == "failed":
        # The error name before the step: if anything is cut, it is the step (the summary repeats both).
        text = f"{label}: {what} FAILED: {record.error} at {record.failed_step}"
    elif record.outcome == "dry-run":
        text = f"{label}: {what} passed"
    else:
        text = f"{label}: {what} succeeded"
    text = " ".join(text.encode("ascii", "replace").decode("ascii").split())
    return text if len(text) <= SUBJECT_MAX else text[: SUBJECT_MAX - 3].rstrip() + "..."


# --- the summary ----------------------------------------------------------------------------------------------------


def summary_text(
    state: RecordStepInput,
    record: DeploymentRecord,
    failure: FailureDetails | None,
    unreadable: list[str],
    notes: list[str] | None = None,
    failed_section: str | None = None,
) -> str:
    """A short plain-text block an operator pastes into the incident channel."""
    lines: list[str] = []
    what = "dry run" if record.dry_run else "release"
    tag = record.image_tag or "(no image tag)"
    if failure is not None:
        lines.append(f"deployflow {what} of {tag} FAILED at {failure.failed_step}")
        lines.append(_field("Error", failure.error))
        lines.append(_field("Cause", _clip(failure.message, SUMMARY_CAUSE_MAX) or "(no cause given)"))
        lines.append(_field("Next", failure.next_step))
    elif record.dry_run:
        lines.append(f"deployflow dry run of {tag} passed: nothing was changed; below is what a release would do")
    else:
        lines.append(f"deployflow release of {tag} succeeded")
    for warning in (state.request.warnings if state.request else [])[:SUMMARY_LIST_MAX]:
        lines.append(_field("Warning", _clip(warning, 300)))
    lines.append(_field("Execution", _execution_line(state)))
    lines.append(_field("Request", _request_line(state)))
    sections = [
        ("Image", "image", _image_line(state.image)),
        ("Migration", "migration", _migration_line(state.migration)),
    ]
    if state.migration is not None and (state.migration.plan is not None or state.migration.plan_note):
        sections.append(("Plan" if record.dry_run else "Applied", "", _plan_text(state.migration)))
    sections += [
        ("Schema", "schema", _schema_line(state.schema_)),
        ("Topics", "topics", _topics_line(state.topics)),
        ("Services", "rollout", _services_line(state.rollout)),
    ]
    for label, section, text in sections:
        if section == failed_section and text == "not reached":
            text = f"failed here ({failure.error if failure else 'see the cause'}), no result recorded"
        lines.append(_field(label, text))
    lines.append(_field("Timings", _timings_line(record)))
    for note in notes or []:
        lines.append(_field("Note", _clip(note, 300)))
    for problem in unreadable:
        lines.append(_field("Unreadable", _clip(problem, 300)))
    return "\n".join(lines)


def _field(name: str, value: str) -> str:
    label = f"{name}:".ljust(12)
    return label + value.replace("\n", "\n" + " " * 12)


_clip = clip


def _execution_line(state: RecordStepInput) -> str:
    if state.execution is None:
        return "unknown: the request was rejected before its execution context was recorded (see the console)"
    return f"{state.execution.name} ({state.execution.id})"


def _request_line(state: RecordStepInput) -> str:
    if state.request is not None:
        dry = ", dry run" if state.request.dry_run else ""
        return f"image tag {state.request.image_tag}, services {', '.join(state.request.services)}{dry}"
    if state.raw_input is not UNSET:
        return "as received (not validated): " + _clip(json.dumps(state.raw_input, default=str, sort_keys=True), 500)
    return "not recorded"


def _image_line(image: ImageResult | None) -> str:
    if image is None:
        return "not reached"
    counts = [f"{sev} {image.finding_counts[sev]}" for sev in _SEVERITIES if image.finding_counts.get(sev)]
    counts += [f"{sev} {n}" for sev, n in sorted(image.finding_counts.items()) if sev not in _SEVERITIES and n]
    findings = ", ".join(counts) if counts else "no findings"
    return f"{image.repository}:{image.tag} @ {image.digest} (scan {image.scan_status}, {findings})"


def _migration_line(migration: MigrationTask | None) -> str:
    if migration is None:
        return "not reached"
    task = f"task {migration.task_arn}" if migration.task_arn else "no task started"
    revision = ", new task definition revision" if migration.registered_new_revision else ""
    if migration.status == "SKIPPED":
        note = f": {migration.dry_run_note}" if migration.dry_run_note else ""
        return f"skipped (dry run){note}"
    checks = f"{migration.checks} check{'' if migration.checks == 1 else 's'}"
    if migration.status == "STOPPED":
        exit_code = "none (it did not exit normally)" if migration.exit_code is None else str(migration.exit_code)
        took = f" after {_duration(migration.duration_seconds)}" if migration.duration_seconds is not None else ""
        parts = [f"stopped{took}: exit code {exit_code}", f"stop code {migration.stop_code or 'none'}"]
        if migration.exit_code != 0 and migration.stopped_reason:
            parts.append(f"stopped reason: {_clip(migration.stopped_reason, 200)}")
        parts.append(f"{checks} ({task}{revision})")
        return ", ".join(parts)
    return f"{migration.status.lower()} at the last of {checks}, deadline {migration.deadline} ({task}{revision})"


def _plan_text(migration: MigrationTask) -> str:
    """One line per migration file (its strongest lock, lint verdict, waived rules), then its locking statements."""
    if migration.plan is None:
        return migration.plan_note or "not recorded"
    if not migration.plan:
        return "no pending migration file"
    lines: list[str] = []
    for item in migration.plan:
        waived = [f"{f.rule} ({f.waived})" for f in item.findings if f.waived]
        failing = [f"{f.rule} line {f.line}" for f in item.findings if not f.waived]
        lint = f"lint {item.lint}" + (f": {', '.join(failing)}" if failing else "")
        lint += f"; waived {', '.join(waived)}" if waived else ""
        took = f", applied in {item.duration_ms} ms" if item.applied and item.duration_ms is not None else ""
        lines.append(f"{item.file}: {item.lock or 'no table lock'}; {lint}{took}")
        # A plan shows every locking statement; what was applied, only those that blocked readers and writers.
        shown = [
            st
            for st in item.statements
            if st.lock not in (None, "ACCESS SHARE") and (not item.applied or st.lock == "ACCESS EXCLUSIVE")
        ]
        for statement in shown[:STATEMENTS_SHOWN]:
            lines.append(
                f"  statement {statement.number} (line {statement.line}) {statement.locks}: {statement.excerpt}"
            )
        if len(shown) > STATEMENTS_SHOWN:
            lines.append(f"  ... and {len(shown) - STATEMENTS_SHOWN} more locking statements")
    return "\n".join(lines)


def _schema_line(schema: SchemaResult | None) -> str:
    if schema is None:
        return "not reached"
    parts: list[str] = [schema.verdict]
    if schema.pending_migrations:
        parts.append(f"pending migrations {', '.join(schema.pending_migrations)}")
    if schema.applied_versions:
        parts.append(f"applied so far {', '.join(schema.applied_versions[-5:])}")
    text = "; ".join(parts)
    shown = schema.differences[:SUMMARY_LIST_MAX]
    for difference in shown:
        text += f"\n- {difference}"
    if len(schema.differences) > len(shown):
        text += f"\n- ... and {len(schema.differences) - len(shown)} more differences"
    return text


def _topics_line(topics: TopicsResult | None) -> str:
    if topics is None:
        return "not reached"
    groups: dict[str, list[str]] = {}
    for change in topics.topics:
        if change.action == "grow":
            item = f"{change.name} ({change.partitions_before} -> {change.partitions_after} partitions)"
        elif change.action == "over-partitioned":
            item = f"{change.name} ({change.partitions_before} partitions, more than wanted; left as is)"
        elif change.action == "configs-altered":
            item = f"{change.name} ({', '.join(f'{k}={v}' for k, v in sorted(change.configs_altered.items()))})"
        else:
            item = change.name
        groups.setdefault(change.action, []).append(item)
    labels = {
        "create": "created",
        "grow": "grown",
        "configs-altered": "configs altered",
        "unchanged": "unchanged",
        "over-partitioned": "over-partitioned",
    }
    text = "; ".join(f"{labels[action]} {', '.join(groups[action])}" for action in labels if action in groups)
    if not text:
        text = "none"
    return f"would have: {text}" if topics.dry_run else text


def _services_line(rollout: RolloutResult | None) -> str:
    if rollout is None:
        return "not reached"
    if not rollout.services:
        return "none restarted"
    lines = [_service_line(s) for s in rollout.services[:SUMMARY_LIST_MAX]]
    if len(rollout.services) > SUMMARY_LIST_MAX:
        lines.append(f"... and {len(rollout.services) - SUMMARY_LIST_MAX} more services")
    prefix = "would restart: " if rollout.dry_run else ""
    failed = [s.name for s in rollout.services if s.rollout_state.startswith("FAILED")]
    if rollout.done:
        suffix = ""
    elif failed:
        suffix = f"\n(rollout ended at check {rollout.checks}: {', '.join(failed)} failed)"
    else:
        suffix = f"\n(rollout not finished after {rollout.checks} checks, deadline {rollout.deadline})"
    return prefix + "\n".join(lines) + suffix


def _service_line(service: ServiceRollout) -> str:
    reason = f" ({service.rollout_state_reason})" if service.rollout_state_reason else ""
    deployment = f", deployment {service.deployment_id}" if service.deployment_id else ", no new deployment"
    counts = (
        f", {service.running_count}/{service.desired_count} running"
        if service.running_count is not None and service.desired_count is not None
        else ""
    )
    events = "".join(f"\n  event: {_clip(e, 300)}" for e in service.last_events)
    return f"{service.name}: {service.rollout_state}{reason}{deployment}{counts}{events}"


def _timings_line(record: DeploymentRecord) -> str:
    started = record.started_at or "unknown"
    total = f", {_duration(record.duration_seconds)} in all" if record.duration_seconds is not None else ""
    migration = ""
    if record.migration is not None and record.migration.duration_seconds is not None:
        migration = f"; migration task {_duration(record.migration.duration_seconds)}"
    return f"started {started}, finished {record.finished_at}{total}{migration}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    whole = max(0, round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m {secs:02d}s"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"
