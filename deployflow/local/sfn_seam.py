"""Step Functions seam: fixes to moto 5.2.5's interpreter where it differs from AWS in ways the release ASL meets.

Each fix is checked by tests/canary/test_sfn_asl.py (with the seam) and tests/canary/test_moto_native.py (the bug
without it - when that one fails after a moto upgrade, the fix can go):

- StartExecution without ``name``: moto names the execution ``None`` (a second nameless start fails with
  ExecutionAlreadyExists). AWS generates a UUID; so does the seam.
- ``$$.Execution.StartTime`` is a ``datetime`` in moto's context object: selecting it makes the state's output
  unserializable and DescribeExecution answers HTTP 500. AWS gives an ISO-8601 string; so does the seam.
- ``$$.State.EnteredTime`` is ``isoformat()`` in moto (``...T14:59:35.301226+00:00``); AWS writes
  ``...T14:59:35.301Z``. The seam writes AWS's format.
- Choice ``Timestamp*`` rules parse only ``%Y-%m-%dT%H:%M:%SZ`` in moto, so comparing with
  ``$$.State.EnteredTime`` (fractional seconds) is a ``States.Runtime`` error. AWS accepts RFC 3339 with fractional
  seconds and offsets; the seam's parser does too.
- A Wait ``Timestamp`` / ``TimestampPath`` is measured against the machine's local time in moto; the seam measures
  it against UTC, as the timestamp is.
- A Lambda *service* error (throttling, service exception: a ClientError from Invoke) on a Task whose Resource is the
  plain function ARN is reported as ``Exception`` by moto, so the standard ``Lambda.ServiceException`` /
  ``Lambda.TooManyRequestsException`` ... retry block never matches. AWS reports ``Lambda.<code>`` for both Resource
  forms; the seam does what moto already does for ``arn:aws:states:::lambda:invoke``.
- GetExecutionHistory ignores ``maxResults``, ``nextToken`` and ``reverseOrder`` in moto: every event, oldest first,
  in one answer. AWS pages (``maxResults`` 1-1000, 0 or absent: 100; a ``nextToken`` while more remain) and
  ``reverseOrder`` lists newest first; so does the seam (notify_stopped reads an execution's end backwards).
- DescribeExecution of a TIMED_OUT execution has no ``stopDate`` in moto (it adds one for SUCCEEDED, FAILED and
  ABORTED only, though its execution has one). AWS gives it for every ended execution; so does the seam.
"""

from __future__ import annotations

import datetime
import re
import threading
import time
import uuid
from typing import Any

from deployflow.local._patching import AttributePatch, PatchSet, Seam

HISTORY_DEFAULT_PAGE = 100  # GetExecutionHistory's page when maxResults is 0 or absent (API reference)
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


def aws_timestamp(moment: datetime.datetime) -> str:
    """A moment as Step Functions writes it in the context object: ``2026-11-25T14:59:35.301Z``."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(datetime.UTC).replace(tzinfo=None)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_timestamp(value: str) -> datetime.datetime | None:
    """An RFC 3339 timestamp (``Z`` or an offset, optional fractional seconds) as naive UTC; None if it is not one."""
    if not isinstance(value, str) or not _RFC3339.match(value):
        return None
    try:
        parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.astimezone(datetime.UTC).replace(tzinfo=None)


class InterpreterFixes(Seam):
    """Installs the fixes listed in the module docstring."""

    def install(self) -> None:
        from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import FailureEventException
        from moto.stepfunctions.parser.asl.component.state import state
        from moto.stepfunctions.parser.asl.component.state.choice.comparison.operator.implementations import (
            is_operator,
        )
        from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_lambda import (
            StateTaskServiceLambda,
        )
        from moto.stepfunctions.parser.asl.component.state.exec.state_task.state_task_lambda import StateTaskLambda
        from moto.stepfunctions.parser.asl.component.state.wait.wait_function import timestamp
        from moto.stepfunctions.parser.backend import execution_worker
        from moto.stepfunctions.parser.models import StepFunctionsParserBackend

        original_start: Any = StepFunctionsParserBackend.start_execution
        # Names the modules import (not their own): patched where they are looked up, at call time.
        original_state_data: Any = vars(state)["StateData"]
        original_execution_data: Any = vars(execution_worker)["ExecutionData"]

        def start_execution(
            backend: Any,
            state_machine_arn: str,
            name: str | None = None,
            execution_input: str | None = None,
            trace_header: str | None = None,
        ) -> Any:
            return original_start(backend, state_machine_arn, name or str(uuid.uuid4()), execution_input, trace_header)

        def state_data(**fields: Any) -> Any:
            entered = fields.get("EnteredTime")
            if isinstance(entered, str):
                moment = parse_timestamp(entered)
                if moment is not None:
                    fields["EnteredTime"] = aws_timestamp(moment)
            return original_state_data(**fields)

        def execution_data(**fields: Any) -> Any:
            start = fields.get("StartTime")
            if isinstance(start, datetime.datetime):
                fields["StartTime"] = aws_timestamp(start)
            return original_execution_data(**fields)

        original_from_error: Any = StateTaskLambda._from_error

        def lambda_from_error(task: Any, env: Any, ex: Exception) -> Any:
            from botocore.exceptions import ClientError
            from moto.stepfunctions.parser.api import HistoryEventType
            from moto.stepfunctions.parser.asl.component.common.error_name.custom_error_name import CustomErrorName
            from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import FailureEvent

            if not isinstance(ex, ClientError):
                return original_from_error(task, env, ex)
            error, cause = StateTaskServiceLambda._error_cause_from_client_error(ex)
            details: Any = {"lambdaFunctionFailedEventDetails": {"error": error, "cause": cause}}  # EventDetails
            return FailureEvent(
                env=env,
                error_name=CustomErrorName(error),
                event_type=HistoryEventType.LambdaFunctionFailed,
                event_details=details,
            )

        def string_to_timestamp(value: str) -> datetime.datetime | None:
            return parse_timestamp(value)

        def get_wait_seconds(wait: Any, env: Any) -> int:
            wait.string.eval(env=env)
            timestamp_str: str = env.stack.pop()
            moment = wait._from_timestamp_string(timestamp=timestamp_str)
            if moment is None:
                raise FailureEventException(wait._create_failure_event(env, timestamp_str))
            now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
            return int((moment - now).total_seconds())

        from moto.core.responses import ActionResult
        from moto.stepfunctions.exceptions import InvalidToken
        from moto.stepfunctions.responses import StepFunctionResponse

        def get_execution_history(response: Any) -> Any:
            history = response.stepfunction_backend.get_execution_history(response._get_param("executionArn"))
            events = list(history["events"])
            if response._get_param("reverseOrder"):
                events.reverse()
            size = response._get_int_param("maxResults") or HISTORY_DEFAULT_PAGE
            token = response._get_param("nextToken")
            if token is not None and not str(token).isdigit():
                raise InvalidToken(f"Invalid token: {token}")
            start = int(token or 0)
            page: dict[str, Any] = {"events": events[start : start + size]}
            if start + size < len(events):
                page["nextToken"] = str(start + size)
            return ActionResult(page)

        original_describe: Any = StepFunctionResponse.describe_execution

        def describe_execution(response: Any) -> Any:
            answer = original_describe(response)
            execution = response.stepfunction_backend.describe_execution(response._get_param("executionArn"))
            result = answer.result
            if isinstance(result, dict) and "stopDate" not in result and execution.status == "TIMED_OUT":
                result["stopDate"] = execution.stop_date
            return answer

        patches = PatchSet(
            "sfn-fixes",
            [
                AttributePatch(StepFunctionsParserBackend, "start_execution", start_execution),
                AttributePatch(state, "StateData", state_data),
                AttributePatch(execution_worker, "ExecutionData", execution_data),
                AttributePatch(is_operator.IsTimestamp, "string_to_timestamp", staticmethod(string_to_timestamp)),
                AttributePatch(timestamp.Timestamp, "_get_wait_seconds", get_wait_seconds),
                AttributePatch(StateTaskLambda, "_from_error", lambda_from_error),
                AttributePatch(StepFunctionResponse, "get_execution_history", get_execution_history),
                AttributePatch(StepFunctionResponse, "describe_execution", describe_execution),
            ],
        )
        self._apply_patches(patches)


def stop_running_executions(timeout: float = 10.0) -> int:
    """Stop every RUNNING execution in moto's interpreter and wait (bounded) for their threads to end.

    An execution runs in a daemon thread that outlives a test's moto state; left running it would go on calling
    Lambdas in the next test's backends. Returns how many executions were stopped.
    """
    from moto.core.utils import utcnow
    from moto.stepfunctions.parser.models import stepfunctions_parser_backends
    from moto.stepfunctions.parser.utils import TMP_THREADS

    stopped = 0
    for account in list(stepfunctions_parser_backends.values()):
        for backend in list(account.values()):
            for machine in list(backend.state_machines):
                for execution in list(machine.executions):
                    if execution.status == "RUNNING":
                        execution.stop(stop_date=utcnow(), error=None, cause=None)
                        stopped += 1
    deadline = time.monotonic() + timeout
    current = threading.current_thread()
    for thread in list(TMP_THREADS):
        if thread is not current and thread.is_alive():
            thread.join(max(0.0, deadline - time.monotonic()))
    # moto never prunes its list of execution threads; drop the finished ones so it does not grow per test.
    TMP_THREADS[:] = [t for t in TMP_THREADS if t.is_alive()]
    return stopped
