"""Lambda seam: moto's Lambda Invoke runs the function in a real Lambda runtime (default) or in-process, not in Docker.

``runtime="emulator"`` (what the local stack uses): each invocation goes to the function's runtime process, the
Runtime Interface Emulator with ``awslambdaric`` (``deployflow.local.lambda_runtime``), started on first use and
kept warm, with the function's Handler, environment, Timeout and MemorySize; the emulator's reply is translated into
what the Lambda Invoke API returns. The rest of this docstring describes ``runtime="in-process"``, which only the
in-process moto mode (``mock_aws``, whose interception another process cannot reach) uses.

Every Lambda invocation in moto, including the ones the Step Functions interpreter makes for a Task state (both the
plain function-ARN ``Resource`` and ``arn:aws:states:::lambda:invoke``), goes through ``LambdaBackend.invoke``. The
seam replaces it: it imports the function's ``Handler`` (``release_steps.check_image.lambda_handler``), applies the
function's ``Environment`` variables (plus the Lambda runtime's own and the local stack's) for the duration of the
call, calls the handler with a Lambda-like context and returns what the Python runtime returns:

- success: the handler's result as JSON;
- an exception: header ``x-amz-function-error: Unhandled`` and payload
  ``{"errorMessage", "errorType": <exception class name>, "requestId", "stackTrace"}``, so the state machine's
  Retry/Catch ``ErrorEquals`` match Python class names as on AWS;
- import / handler-name / result-marshalling failures: the runtime's ``Runtime.*`` error types.

Invocations are serialized by a process-wide lock because environment variables are process-global; a handler must
therefore not invoke another Lambda synchronously (it would wait for the lock held by its caller in server mode).
The function's ``Timeout`` is reported by ``get_remaining_time_in_millis`` but not enforced; when a Task state's
``TimeoutSeconds`` expires, moto abandons the thread running the handler, which goes on to its end (holding that
lock). An ``Event`` (asynchronous) invocation runs synchronously inside the Invoke call; ``DryRun`` runs nothing.
No log tail is captured (``LogResult`` is empty) and nothing is written to ``/aws/lambda/<name>``.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import sys
import threading
import time
import traceback
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from deployflow.local._patching import AttributePatch, PatchSet, Seam
from deployflow.local.lambda_runtime import RuntimePool, function_config, log_result

logger = logging.getLogger(__name__)

Handler = Callable[[Any, Any], Any]


@dataclass
class LocalLambdaContext:
    """What the Python runtime hands a handler as ``context`` (the attributes Powertools' LambdaContext types)."""

    function_name: str
    function_version: str
    invoked_function_arn: str
    memory_limit_in_mb: int
    aws_request_id: str
    log_group_name: str
    log_stream_name: str
    timeout_seconds: float
    started_at: float
    identity: Any = None
    client_context: Any = None
    tenant_id: str | None = None

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.started_at + self.timeout_seconds - time.monotonic()) * 1000))


@dataclass(frozen=True)
class Invocation:
    """One in-process invocation, as the seam saw it (for tests and diagnostics)."""

    function_name: str
    request_id: str
    event: Any
    result: Any
    error_type: str | None
    error_message: str | None

    @property
    def failed(self) -> bool:
        return self.error_type is not None


class _RuntimeFailure(Exception):
    """A failure the Lambda runtime reports with its own ``Runtime.*`` error type."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type


@dataclass
class _InjectedServiceError:
    code: str
    message: str
    remaining: int


def _header(headers: Any, name: str) -> str | None:
    if headers is None:
        return None
    for key, value in headers.items():
        if str(key).lower() == name.lower():
            return str(value)
    return None


@contextmanager
def _overlaid_environ(overlay: Mapping[str, str | None]) -> Iterator[None]:
    """Set (or, for ``None``, unset) variables for the duration of the block, then restore exactly."""
    saved = {key: os.environ.get(key) for key in overlay}
    try:
        for key, value in overlay.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


def resolve_handler(handler: str) -> Handler:
    """Import ``package.module.function`` (or ``package/module.function``) like the Python runtime does."""
    module_name, _, function_name = handler.replace("/", ".").rpartition(".")
    if not module_name or not function_name:
        raise _RuntimeFailure("Runtime.MalformedHandlerName", f"Bad handler '{handler}': not enough values to unpack")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise _RuntimeFailure("Runtime.ImportModuleError", f"Unable to import module '{module_name}': {e}") from e
    function = getattr(module, function_name, None)
    if not callable(function):
        raise _RuntimeFailure("Runtime.HandlerNotFound", f"Handler '{function_name}' missing on module '{module_name}'")
    return function  # type: ignore[no-any-return]


def error_payload(error_type: str, message: str, request_id: str, stack_trace: list[str]) -> dict[str, Any]:
    """The Python runtime's payload for an unhandled error."""
    return {"errorMessage": message, "errorType": error_type, "requestId": request_id, "stackTrace": stack_trace}


class LambdaSeam(Seam):
    """Runs moto's Lambda functions' handlers in-process while installed.

    ``environment``: variables added to every invocation, over the function's own (e.g. ``AWS_ENDPOINT_URL`` and fake
    credentials in server mode; ``None`` unsets a variable). ``code_paths``: directories put on ``sys.path`` while
    installed so handlers import (``functions/``). ``before_invoke``: callables run before every invocation, inside
    the function's environment (e.g. clear cached settings and clients, as a fresh container would have none).
    """

    def __init__(
        self,
        *,
        environment: Mapping[str, str | None] | None = None,
        code_paths: Sequence[Path | str] = (),
        before_invoke: Sequence[Callable[[], None]] = (),
        history: int = 1000,
        runtime: Literal["in-process", "emulator"] = "in-process",
        log_dir: Path | None = None,
    ) -> None:
        self.runtime = runtime
        self.pool: RuntimePool | None = RuntimePool(log_dir=log_dir) if runtime == "emulator" else None
        self.environment: dict[str, str | None] = dict(environment or {})
        self.code_paths = [str(Path(p).resolve()) for p in code_paths]
        self.before_invoke = list(before_invoke)
        self._invocations: deque[Invocation] = deque(maxlen=history)
        self._injected: dict[str, list[_InjectedServiceError]] = {}
        self._invoke_lock = threading.RLock()
        self._state_lock = threading.Lock()
        self._added_paths: list[str] = []

    # -- observation and fault injection ---------------------------------------------------------------------------

    @property
    def invocations(self) -> list[Invocation]:
        """The invocations so far, oldest first (a copy)."""
        with self._state_lock:
            return list(self._invocations)

    def clear(self) -> None:
        if self.pool is not None:
            self.pool.reset()
        with self._state_lock:
            self._invocations.clear()
            self._injected.clear()

    def inject_service_error(
        self, function_name: str, code: str = "TooManyRequestsException", *, times: int = 1, message: str = ""
    ) -> None:
        """Make the next ``times`` Invoke calls of a function fail as the Lambda *service* would (a ClientError with
        ``code``, e.g. ``TooManyRequestsException``, ``ServiceException``), without running the handler."""
        with self._state_lock:
            self._injected.setdefault(function_name, []).append(
                _InjectedServiceError(
                    code=code, message=message or f"injected by the local stack: {code}", remaining=times
                )
            )

    def _take_injected(self, function_name: str) -> _InjectedServiceError | None:
        with self._state_lock:
            queue = self._injected.get(function_name, [])
            while queue and queue[0].remaining <= 0:
                queue.pop(0)
            if not queue:
                return None
            queue[0].remaining -= 1
            return queue[0]

    # -- the invocation --------------------------------------------------------------------------------------------

    def invoke(self, function: Any, body: Any, headers: Any, response_headers: dict[str, str]) -> bytes:
        """Run one invocation of a moto ``LambdaFunction``; fills ``response_headers`` like the Lambda service."""
        injected = self._take_injected(function.function_name)
        if injected is not None:
            from moto.awslambda.exceptions import LambdaClientError

            error = LambdaClientError(injected.code, injected.message)
            error.code = 429 if injected.code == "TooManyRequestsException" else 500
            raise error

        if _header(headers, "x-amz-invocation-type") == "DryRun":
            return b""
        if self.pool is not None:
            return self._invoke_in_runtime(self.pool, function, body, headers, response_headers)

        request_id = str(uuid.uuid4())
        raw = body.decode("utf-8") if isinstance(body, bytes) else (body or "")
        result: Any = None
        failure: tuple[str, str, list[str]] | None = None
        event: Any = None
        try:
            event = json.loads(raw) if raw.strip() else {}
        except ValueError as e:
            failure = ("Runtime.UnmarshalError", f"Unable to unmarshal input: {e}", [])

        if failure is None:
            result, failure = self._call_handler(function, event, request_id)

        payload: bytes
        if failure is None:
            try:
                payload = json.dumps(result).encode("utf-8")
            except (TypeError, ValueError) as e:
                failure = ("Runtime.MarshalError", f"Unable to marshal response: {e}", [])
        if failure is not None:
            error_type, message, stack = failure
            response_headers["x-amz-function-error"] = "Unhandled"
            payload = json.dumps(error_payload(error_type, message, request_id, stack)).encode("utf-8")
            logger.info("Lambda %s failed: %s: %s", function.function_name, error_type, message)

        response_headers["x-amz-executed-version"] = "$LATEST"
        with self._state_lock:
            self._invocations.append(
                Invocation(
                    function_name=function.function_name,
                    request_id=request_id,
                    event=event,
                    result=result if failure is None else None,
                    error_type=failure[0] if failure else None,
                    error_message=failure[1] if failure else None,
                )
            )
        return payload

    def _invoke_in_runtime(
        self, pool: RuntimePool, function: Any, body: Any, headers: Any, response_headers: dict[str, str]
    ) -> bytes:
        raw = body if isinstance(body, bytes) else str(body or "").encode("utf-8")
        config = function_config(function, self.environment, self.code_paths)
        reply = pool.invoke(config, raw if raw.strip() else b"{}")
        if reply.function_error:
            response_headers["x-amz-function-error"] = "Unhandled"
            logger.info("Lambda %s failed: %s: %s", function.function_name, reply.error_type, reply.error_message)
        response_headers["x-amz-executed-version"] = "$LATEST"
        if (_header(headers, "x-amz-log-type") or "").lower() == "tail":
            response_headers["x-amz-log-result"] = log_result(reply.log_tail)
        event: Any = None
        with suppress(ValueError):
            event = json.loads(raw) if raw.strip() else {}
        with self._state_lock:
            self._invocations.append(
                Invocation(
                    function_name=function.function_name,
                    request_id=reply.request_id,
                    event=event,
                    result=reply.result,
                    error_type=reply.error_type,
                    error_message=reply.error_message,
                )
            )
        return reply.payload

    def _runtime_environment(self, function: Any, request_id: str) -> dict[str, str | None]:
        region = str(function.region)
        overlay: dict[str, str | None] = {str(k): str(v) for k, v in (function.environment_vars or {}).items()}
        overlay.update(
            {
                # Reserved variables the runtime sets (functions cannot override them on AWS).
                "AWS_REGION": region,
                "AWS_DEFAULT_REGION": region,
                "AWS_LAMBDA_FUNCTION_NAME": function.function_name,
                "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(function.memory_size),
                "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{function.function_name}",
                "AWS_LAMBDA_LOG_STREAM_NAME": f"local/[$LATEST]{request_id.replace('-', '')}",
                # What `sam local invoke` sets: Powertools' Tracer turns itself off, as it should without X-Ray.
                "AWS_SAM_LOCAL": "true",
            }
        )
        overlay.update(self.environment)
        return overlay

    def _call_handler(
        self, function: Any, event: Any, request_id: str
    ) -> tuple[Any, tuple[str, str, list[str]] | None]:
        with self._invoke_lock, _overlaid_environ(self._runtime_environment(function, request_id)):
            try:
                for hook in self.before_invoke:
                    hook()
                handler = resolve_handler(str(function.handler or ""))
            except _RuntimeFailure as e:
                return None, (e.error_type, str(e), [])
            context = LocalLambdaContext(
                function_name=function.function_name,
                function_version="$LATEST",
                invoked_function_arn=function.function_arn,
                memory_limit_in_mb=int(function.memory_size),
                aws_request_id=request_id,
                log_group_name=f"/aws/lambda/{function.function_name}",
                log_stream_name=os.environ["AWS_LAMBDA_LOG_STREAM_NAME"],
                timeout_seconds=float(function.timeout),
                started_at=time.monotonic(),
            )
            try:
                return handler(event, context), None
            except SystemExit as e:
                return None, ("Runtime.ExitError", f"RequestId: {request_id} Error: Runtime exited ({e.code})", [])
            except Exception as e:
                frames = traceback.extract_tb(e.__traceback__)[1:]  # drop this frame, as the runtime drops its own
                return None, (type(e).__name__, str(e), traceback.format_list(frames))

    # -- installation ----------------------------------------------------------------------------------------------

    def install(self) -> None:
        from moto.awslambda.models import LambdaBackend
        from moto.awslambda_simple.models import LambdaSimpleBackend

        if self.pool is not None:
            self.pool.open()
        seam = self

        def invoke(
            backend: Any, function_name: str, qualifier: str | None, body: Any, headers: Any, response_headers: Any
        ) -> bytes:
            function = backend.get_function(function_name, qualifier)
            payload = seam.invoke(function, body, headers, response_headers)
            response_headers["Content-Length"] = str(len(payload))
            return payload

        patches = PatchSet(
            "lambda",
            [
                AttributePatch(LambdaBackend, "invoke", invoke),
                # moto serves this subclass instead when config lambda.use_docker is False; same seam either way.
                AttributePatch(LambdaSimpleBackend, "invoke", invoke),
            ],
        )
        self._apply_patches(patches)
        for path in self.code_paths:
            if path not in sys.path:
                sys.path.insert(0, path)
                self._added_paths.append(path)

    def uninstall(self) -> None:
        self._revert_patches()
        if self.pool is not None:
            self.pool.stop()
        for path in self._added_paths:
            if path in sys.path:
                sys.path.remove(path)
        self._added_paths.clear()
