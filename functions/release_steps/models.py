"""Typed inputs and outputs of the steps: the contract between the states of the workflow.

The state document grows as the execution advances: ``request`` and ``execution`` (from the first step), then
``image``, ``migration``, ``schema``, ``topics``, ``rollout`` and ``record`` (each step's ``ResultPath``), and
``failure`` when a step's error is caught. JSON keys are camelCase, as operators type them in the console.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

import msgspec
from msgspec import Meta, UnsetType, field

C = TypeVar("C", bound="Codec")


class Codec:
    """``load`` and ``to_json`` of a msgspec Struct, the one pair every model of functions/ uses.

    Validation happens in ``load`` (msgspec.convert, strict: a JSON ``"off"`` is not a boolean); the constructor
    checks nothing but ``__post_init__``, as the code that calls it builds values it already holds typed. A mixin,
    not a base Struct, so that a frozen Struct can have it too (a frozen Struct cannot inherit a mutable one). A
    model with a type msgspec does not know (``kafka_topics.SecretStr``) overrides ``decode_hook`` and
    ``encode_hook``."""

    __slots__ = ()

    @staticmethod
    def decode_hook(type_: type, value: Any) -> Any:
        """msgspec's ``dec_hook``: a value of a type it does not know (none here)."""
        raise TypeError(f"{type_!r} is not supported")

    @staticmethod
    def encode_hook(value: Any) -> Any:
        """msgspec's ``enc_hook``: a value of a type it does not know (none here)."""
        raise TypeError(f"{type(value).__name__} cannot be encoded")

    @classmethod
    def load(cls: type[C], document: Any) -> C:
        """``document`` (decoded JSON) validated into this model; raises ``msgspec.ValidationError`` naming the
        first field that is wrong."""
        return msgspec.convert(document, cls, dec_hook=cls.decode_hook)

    def to_json(self) -> dict[str, Any]:
        """The JSON-ready document Step Functions passes on."""
        document: dict[str, Any] = msgspec.to_builtins(self, enc_hook=self.encode_hook)
        return document


class Model(msgspec.Struct, Codec, rename="camel", kw_only=True):
    """Base of the state's models: camelCase JSON, snake_case Python; unknown keys in the state are ignored by a
    step's input model.

    msgspec Structs, not pydantic: a class costs microseconds to define and msgspec a few ms to import, where
    pydantic's import and 26 model classes were most of every step's cold start (benchmarks/cold_start.py). A
    subclass with a required field after a defaulted one repeats ``kw_only=True``: neither msgspec nor mypy
    inherits it."""


# --- the execution input and the first step ---------------------------------------------------------------------

IMAGE_TAG_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"


class ReleaseInput(Model, forbid_unknown_fields=True):
    """The execution input as typed by an operator or a pipeline; only ``imageTag`` is required."""

    image_tag: Annotated[str, Meta(pattern=IMAGE_TAG_PATTERN)]
    services: Annotated[list[str], Meta(min_length=1)] | None = None
    # Strict (msgspec's default): JSON true/false only. Lax parsing would read "off" and "0" as false (a real
    # release) and "yes" or 1 as true; an operator who typed either meant something else and must be told.
    dry_run: bool = False
    idempotency_key: Annotated[str, Meta(max_length=80)] | None = None


class ExecutionContext(Model):
    """Who is running: taken from the Step Functions context object by the first state's Parameters."""

    id: str
    name: str
    start_time: str
    state_machine_arn: str


class PrepareEvent(Model, kw_only=True):
    """Input of the first step: the raw execution input (any JSON value: the first state wraps it) and the context
    object."""

    input: Any = None
    execution: ExecutionContext


class ReleaseRequest(Model):
    """The validated request with defaults applied: what every later step reads."""

    image_tag: str
    services: list[str]
    dry_run: bool
    warnings: list[str] = field(default_factory=list)


class PollSettings(Model):
    """The poll loops' ceilings (MigrationPollSeconds, ServicesPollSeconds): the longest wait between two checks."""

    migration_seconds: int
    services_seconds: int


class ReleaseState(Model):
    """The part of the state every step after the first receives."""

    request: ReleaseRequest
    execution: ExecutionContext
    poll: PollSettings


# --- Check migration image ----------------------------------------------------------------------------------------


class ImageResult(Model):
    """The migration image, pinned by digest."""

    repository: str
    tag: str
    digest: str
    image_uri: str
    scan_status: str
    finding_counts: dict[str, int] = field(default_factory=dict)


class ImageStepInput(ReleaseState):
    """Input of the steps that need the checked image."""

    image: ImageResult


# --- Run migration task / Check migration task -------------------------------------------------------------------

TaskStatus = Literal["PENDING", "RUNNING", "STOPPED", "SKIPPED"]


class PlannedStatement(Model):
    """One statement of a pending file and the table lock it takes (the runner's ``plan_file`` event)."""

    number: int
    line: int
    kind: str
    excerpt: str
    lock: str | None = None
    locks: str | None = None
    notes: list[str] = field(default_factory=list)


class LintFinding(Model):
    """A squawk finding; ``waived`` is the reason of the file's ``-- deployflow:allow`` line for that rule."""

    rule: str
    line: int
    message: str
    waived: str | None = None


class PlannedMigration(Model, kw_only=True):
    """One pending migration file as the runner described it before applying (or, in a dry run, instead)."""

    file: str
    checksum: str
    transactional: bool
    lock: str | None = None
    lint: Literal["pass", "fail"]
    findings: list[LintFinding] = field(default_factory=list)
    statements: list[PlannedStatement] = field(default_factory=list)
    statements_total: int = 0
    applied: bool = False
    duration_ms: int | None = None


class MigrationTask(Model, kw_only=True):
    """The migration ECS task and, once it stopped, its verdict. ``done`` drives the ASL's wait loop and
    ``next_wait_seconds`` (set by each check) its Wait state."""

    cluster: str
    task_definition_arn: str
    registered_new_revision: bool
    task_arn: str | None = None
    status: TaskStatus
    done: bool
    started_at: str | None = None
    stopped_at: str | None = None
    deadline: str
    exit_code: int | None = None
    stop_code: str | None = None
    stopped_reason: str | None = None
    duration_seconds: float | None = None
    checks: int = 0
    next_wait_seconds: Annotated[int, Meta(ge=1, le=3600)] = 1
    dry_run_note: str | None = None
    plan: list[PlannedMigration] | None = None  # from the runner's log: pending files, locks, findings
    plan_note: str | None = None  # why ``plan`` is missing, when it is


class MigrationStepInput(ImageStepInput):
    """Input of Check migration task."""

    migration: MigrationTask


# --- Verify schema ------------------------------------------------------------------------------------------------


class SchemaResult(Model):
    """The live schema compared with the expected one."""

    verdict: Literal["match", "mismatch", "would-change"]
    differences: list[str] = field(default_factory=list)
    applied_versions: list[str] = field(default_factory=list)
    pending_migrations: list[str] = field(default_factory=list)


# --- Create Kafka topics ------------------------------------------------------------------------------------------


class TopicChange(Model, kw_only=True):
    """One topic and what the step did (or would do) to it."""

    name: str
    action: Literal["create", "grow", "unchanged", "over-partitioned", "configs-altered"]
    partitions_before: int | None = None
    partitions_after: int
    configs_altered: dict[str, str] = field(default_factory=dict)
    note: str | None = None


class TopicsResult(Model):
    """The topics step's report."""

    dry_run: bool
    topics: list[TopicChange]


# --- Restart services / Check services ----------------------------------------------------------------------------


class ServiceRollout(Model, kw_only=True):
    """One service's new deployment and its rollout state."""

    name: str
    service_arn: str | None = None
    deployment_id: str | None = None
    task_definition: str | None = None
    rollout_state: str
    rollout_state_reason: str | None = None
    running_count: int | None = None
    desired_count: int | None = None
    last_events: list[str] = field(default_factory=list)


class RolloutResult(Model):
    """Every service's rollout; ``done`` drives the ASL's wait loop and ``next_wait_seconds`` its Wait state."""

    services: list[ServiceRollout]
    done: bool
    deadline: str
    checks: int = 0
    next_wait_seconds: Annotated[int, Meta(ge=1, le=3600)] = 1
    dry_run: bool = False


class RolloutStepInput(ReleaseState):
    """Input of Check services."""

    rollout: RolloutResult


# --- Build deployment record --------------------------------------------------------------------------------------


class FailureInfo(Model):
    """What a Catch put in the state: Step Functions' own keys are capitalised."""

    error: str = field(name="Error")
    cause: str | None = field(default=None, name="Cause")


class RecordStepInput(Model):
    """Input of Build deployment record / Summarize failure: whatever the state holds so far."""

    request: ReleaseRequest | None = None
    execution: ExecutionContext | None = None
    image: ImageResult | None = None
    migration: MigrationTask | None = None
    schema_: SchemaResult | None = field(default=None, name="schema")
    topics: TopicsResult | None = None
    rollout: RolloutResult | None = None
    failure: FailureInfo | None = None
    raw_input: Any | UnsetType = msgspec.UNSET  # UNSET: the state has no rawInput (None: it holds null)


class FailedState(Model):
    """Written by the ASL's Pass after each Catch: the state that failed and the part of the state it writes."""

    state: Annotated[str, Meta(min_length=1, max_length=120)]
    result_path: Annotated[str, Meta(max_length=120)]

    @property
    def section(self) -> str:
        """The state section the failed state writes (``$`` is the first step's: the request)."""
        return self.result_path.removeprefix("$.") if self.result_path != "$" else "request"


class SummarizeFailureInput(Model):
    """Input of Summarize failure: the state as a Catch left it, the failed state (named by the ASL's Pass after the
    Catch), the caught error and the execution's identity from the context object (never from input)."""

    state: dict[str, Any]
    failed: FailedState
    failure: FailureInfo
    context: ExecutionContext


Outcome = Literal["succeeded", "failed", "dry-run"]


class DeploymentRecord(Model, kw_only=True):
    """The execution's output: one document an operator or CodePipeline keeps."""

    outcome: Outcome
    execution_arn: str | None
    execution_name: str | None
    image_tag: str | None
    image_uri: str | None
    image_digest: str | None
    dry_run: bool
    migration: MigrationTask | None
    schema_: SchemaResult | None = field(name="schema")
    topics: TopicsResult | None
    services: list[ServiceRollout]
    failed_step: str | None = None
    error: str | None = None
    cause: str | None = None
    started_at: str | None
    finished_at: str
    duration_seconds: float | None


class RecordResult(Model):
    """The record and its one-paragraph summary (the SNS message, pasteable into an incident channel)."""

    subject: str
    summary: str
    record: DeploymentRecord
