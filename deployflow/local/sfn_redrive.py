"""Step Functions seam: RedriveExecution, which moto 5.2.5 does not implement, with AWS's semantics.

What AWS documents (Step Functions API Reference, ``RedriveExecution`` and ``DescribeExecution``; developer guide,
"Restarting state machine executions with redrive") and what the seam does:

- An execution that did not succeed (FAILED, TIMED_OUT, ABORTED) continues from the state it stopped in, with the
  input that state received; the states that succeeded are not rerun. The seam reads that state and its input from
  the execution's own history (its last top-level ``*StateEntered`` event without a matching ``*StateExited``) and
  runs moto's interpreter from there (the definition's ``StartAt`` rewritten, the state's input as the first input).
- Same state machine definition (the snapshot moto took at StartExecution, not the machine's current one), same
  execution ARN, same ``$$.Execution`` context (input, start time); the state machine's ``TimeoutSeconds`` counts
  from the redrive.
- One history: the events continue the existing list (ids go on), an ``ExecutionRedriven`` event with its
  ``redriveCount`` first, then the state's events.
- DescribeExecution gains ``redriveCount`` (0 until redriven), ``redriveDate``, ``redriveStatus`` and, when not
  redrivable, ``redriveStatusReason`` with the documented reasons; ListExecutions' items gain ``redriveCount`` /
  ``redriveDate`` and it honours ``redriveFilter``.
- Refused with ``ExecutionNotRedrivable`` (its message the documented ``redriveStatusReason``): RUNNING, SUCCEEDED,
  stopped more than 14 days ago, open more than a year, 24,999 history events or more. ``ExecutionDoesNotExist`` /
  ``InvalidArn`` as DescribeExecution raises them.
- ``clientToken``: a token already used for a successful redrive of the execution (the last 10 are kept) answers
  that redrive's ``redriveDate`` again and redrives nothing.

Not emulated: ``ExecutionLimitExceeded`` (an account quota of open executions), redrives that resume inside a
Parallel or Map state (AWS reruns only the failed branches or iterations; the seam refuses, naming it - the release
ASL has neither), EXPRESS state machines (moto runs the release machine as STANDARD).

tests/canary/test_sfn_redrive.py checks the behaviour in both modes; tests/canary/test_moto_native.py fails when moto
implements RedriveExecution itself (this seam then refuses to install: _patching.AttributeAddition).
"""

from __future__ import annotations

import datetime
import json
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from moto.core.exceptions import AWSError

from deployflow.local._patching import AttributeAddition, AttributePatch, PatchSet, Seam

REDRIVABLE_PERIOD = datetime.timedelta(days=14)
MAX_OPEN_TIME = datetime.timedelta(days=365)
HISTORY_EVENT_LIMIT = 24_999  # "less than 24,999 events": room for ExecutionRedriven and one more event
CLIENT_TOKENS_KEPT = 10

# The documented redriveStatusReason texts (DescribeExecution) that apply to a STANDARD execution here.
RUNNING_REASON = "Execution is RUNNING and cannot be redriven."
SUCCEEDED_REASON = "Execution is SUCCEEDED and cannot be redriven."
PERIOD_REASON = "Execution redrivable period exceeded."
OPEN_TIME_REASON = "Execution has exceeded the max execution time."
EVENT_LIMIT_REASON = "Execution history event limit exceeded."

_lock = threading.Lock()


class ExecutionNotRedrivable(AWSError):
    """AWS's error for a RedriveExecution of an execution that cannot be redriven."""

    TYPE = "ExecutionNotRedrivable"
    STATUS = 400


@dataclass
class RedriveRecord:
    """What AWS keeps about an execution's redrives; held on moto's Execution object (reset with its backend)."""

    count: int = 0
    date: datetime.datetime | None = None
    tokens: OrderedDict[str, datetime.datetime] = field(default_factory=OrderedDict)


@dataclass(frozen=True)
class ResumePoint:
    """Where a redrive continues: the state the execution stopped in and the input it received there."""

    state: str
    input: Any


def record_of(execution: Any) -> RedriveRecord:
    record = getattr(execution, "_deployflow_redrive", None)
    if record is None:
        record = RedriveRecord()
        execution._deployflow_redrive = record
    return record


def _aware(moment: datetime.datetime | None) -> datetime.datetime | None:
    if moment is None:
        return None
    return moment.replace(tzinfo=datetime.UTC) if moment.tzinfo is None else moment


def _history(execution: Any) -> list[dict[str, Any]]:
    env = getattr(getattr(execution, "exec_worker", None), "env", None)
    return list(env.event_manager.get_event_history()) if env is not None else []


def redrive_status(execution: Any, now: datetime.datetime | None = None) -> tuple[str, str | None]:
    """``(redriveStatus, redriveStatusReason)`` of an execution, as DescribeExecution reports them."""
    now = now or datetime.datetime.now(datetime.UTC)
    status = str(execution.status)
    if status == "RUNNING":
        return "NOT_REDRIVABLE", RUNNING_REASON
    if status == "SUCCEEDED":
        return "NOT_REDRIVABLE", SUCCEEDED_REASON
    start, stop = _aware(execution.start_date), _aware(execution.stop_date)
    if start is not None and now - start > MAX_OPEN_TIME:
        return "NOT_REDRIVABLE", OPEN_TIME_REASON
    if stop is not None and now - stop > REDRIVABLE_PERIOD:
        return "NOT_REDRIVABLE", PERIOD_REASON
    if len(_history(execution)) >= HISTORY_EVENT_LIMIT:
        return "NOT_REDRIVABLE", EVENT_LIMIT_REASON
    return "REDRIVABLE", None


def redrive_fields(execution: Any) -> dict[str, Any]:
    """The redrive members of DescribeExecution's answer."""
    record = record_of(execution)
    status, reason = redrive_status(execution)
    fields: dict[str, Any] = {"redriveCount": record.count, "redriveStatus": status}
    if record.date is not None:
        fields["redriveDate"] = record.date
    if reason is not None:
        fields["redriveStatusReason"] = reason
    return fields


def resume_point(
    definition: Mapping[str, Any], events: Sequence[Mapping[str, Any]], execution_input: Any
) -> ResumePoint:
    """The top-level state an execution stopped in (entered, never exited) and its input; StartAt with the execution's
    input when it stopped before entering any state."""
    states: Mapping[str, Any] = definition["States"]
    open_state: Mapping[str, Any] | None = None
    for event in events:
        etype = str(event.get("type", ""))
        if etype.endswith("StateEntered"):
            details = event.get("stateEnteredEventDetails") or {}
            if details.get("name") in states:
                open_state = details
        elif etype.endswith("StateExited") and open_state is not None:
            exited = (event.get("stateExitedEventDetails") or {}).get("name")
            open_state = None if exited == open_state.get("name") else open_state
    if open_state is None:
        return ResumePoint(str(definition["StartAt"]), execution_input)
    name = str(open_state["name"])
    if states[name].get("Type") in {"Parallel", "Map"}:
        raise ExecutionNotRedrivable(
            f"the local stack cannot redrive into the {states[name]['Type']} state {name!r}: AWS reruns only its "
            "failed branches or iterations, which moto's interpreter cannot resume (deployflow/local/sfn_redrive.py)"
        )
    raw = open_state.get("input")
    return ResumePoint(name, json.loads(raw) if isinstance(raw, str) and raw else {})


def redrive(backend: Any, execution_arn: str, client_token: str | None = None) -> datetime.datetime:
    """RedriveExecution on moto's interpreter backend; the redrive date."""
    from moto.stepfunctions.parser.api import ExecutionStatus

    execution = backend.describe_execution(execution_arn)  # ExecutionDoesNotExist / InvalidArn, as AWS
    with _lock:
        record = record_of(execution)
        if client_token and client_token in record.tokens:
            return record.tokens[client_token]
        status, reason = redrive_status(execution)
        if status != "REDRIVABLE":
            raise ExecutionNotRedrivable(reason or "the execution cannot be redriven")
        previous = execution.exec_worker.env
        definition = json.loads(execution.state_machine.definition)
        point = resume_point(definition, previous.event_manager.get_event_history(), execution.input_data)
        worker = _redrive_worker(execution, previous, point, record.count + 1)
        # Counted once the redrive starts ("not updated for redrives that failed to start").
        now = datetime.datetime.now(datetime.UTC)
        record.count += 1
        record.date = now
        if client_token:
            record.tokens[client_token] = now
            while len(record.tokens) > CLIENT_TOKENS_KEPT:
                record.tokens.popitem(last=False)
        execution.exec_worker = worker
        execution.exec_status = ExecutionStatus.RUNNING
        execution.stop_date = None
        execution.error = None
        execution.cause = None
        execution.output = None
        worker.start()
    return now


def _redrive_worker(execution: Any, previous: Any, point: ResumePoint, count: int) -> Any:
    """A moto ExecutionWorker that runs the execution's definition from ``point`` on the execution's own history."""
    from moto.stepfunctions.parser.api import ExecutionRedrivenEventDetails, HistoryEventType
    from moto.stepfunctions.parser.asl.eval.evaluation_details import EvaluationDetails
    from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser
    from moto.stepfunctions.parser.backend.execution_worker import ExecutionWorker

    class RedriveWorker(ExecutionWorker):
        def _get_evaluation_entrypoint(self) -> Any:
            definition = json.loads(self._evaluation_details.state_machine_details.definition)
            definition["StartAt"] = point.state
            return AmazonStateLanguageParser.parse(json.dumps(definition))[0]

        def _execution_logic(self) -> None:
            program = self._get_evaluation_entrypoint()
            program.eval(self.env)
            self._execution_communication.terminated()

    worker = RedriveWorker(
        evaluation_details=EvaluationDetails(
            aws_execution_details=execution._get_start_aws_execution_details(),
            execution_details=execution.get_start_execution_details(),
            state_machine_details=execution.get_start_state_machine_details(),
        ),
        exec_comm=execution._get_start_execution_worker_comm(),
        cloud_watch_logging_session=execution._cloud_watch_logging_session,
        activity_store=execution._activity_store,
    )
    # Built here, before the thread starts: GetExecutionHistory reads the worker's environment at any moment.
    env = worker._get_evaluation_environment()
    env.event_manager = previous.event_manager  # one history: ids continue
    env.variable_store = previous.variable_store  # type: ignore[misc]  # Final in moto; variables (Assign) as they were
    last_id = max((int(e["id"]) for e in previous.event_manager.get_event_history()), default=0)
    env.event_history_context.source_event_id = last_id
    env.event_history_context.last_published_event_id = last_id
    env.states.reset(input_value=point.input)
    # moto's EventDetails TypedDict lacks this member; the history event is a plain dict, serialized from the model.
    details: Any = {"executionRedrivenEventDetails": ExecutionRedrivenEventDetails(redriveCount=count)}
    env.event_manager.add_event(
        context=env.event_history_context, event_type=HistoryEventType.ExecutionRedriven, event_details=details
    )
    worker.env = env
    return worker


class RedriveSeam(Seam):
    """Adds RedriveExecution to moto's Step Functions API and the redrive members to Describe/ListExecutions."""

    def install(self) -> None:
        from moto.core.responses import ActionResult
        from moto.stepfunctions.exceptions import ValidationException
        from moto.stepfunctions.parser.models import StepFunctionsParserBackend
        from moto.stepfunctions.responses import StepFunctionResponse

        original_describe: Any = StepFunctionResponse.describe_execution
        original_list: Any = StepFunctionResponse.list_executions

        def redrive_execution(response: Any) -> Any:
            backend = response.stepfunction_backend
            if not isinstance(backend, StepFunctionsParserBackend):
                raise ExecutionNotRedrivable(
                    "the local stack redrives only with moto's Step Functions interpreter on "
                    '(config {"stepfunctions": {"execute_state_machine": True}})'
                )
            date = redrive(backend, response._get_param("executionArn"), response._get_param("clientToken"))
            return ActionResult({"redriveDate": date})

        def describe_execution(response: Any) -> Any:
            result = original_describe(response)
            execution = response.stepfunction_backend.describe_execution(response._get_param("executionArn"))
            result.result.update(redrive_fields(execution))
            return result

        def list_executions(response: Any) -> Any:
            wanted = response._get_param("redriveFilter")
            if wanted not in (None, "REDRIVEN", "NOT_REDRIVEN"):
                raise ValidationException(f"redriveFilter must be REDRIVEN or NOT_REDRIVEN, not {wanted!r}")
            result = original_list(response)
            backend = response.stepfunction_backend
            items = []
            for item in result.result["executions"]:
                record = record_of(backend.describe_execution(item["executionArn"]))
                if (wanted == "REDRIVEN") != (record.count > 0) and wanted is not None:
                    continue  # filtered within the page: a page may hold fewer than maxResults, as AWS allows
                item["redriveCount"] = record.count
                if record.date is not None:
                    item["redriveDate"] = record.date
                items.append(item)
            result.result["executions"] = items
            return result

        self._apply_patches(
            PatchSet(
                "sfn-redrive",
                [
                    AttributeAddition(StepFunctionResponse, "redrive_execution", redrive_execution),
                    AttributePatch(StepFunctionResponse, "describe_execution", describe_execution),
                    AttributePatch(StepFunctionResponse, "list_executions", list_executions),
                ],
            )
        )
