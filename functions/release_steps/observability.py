"""Logging, tracing and metrics shared by every step, and the decorator that gives each handler the same shape.

Each handler is wrapped by ``step(...)``: the event is parsed into its typed model (a malformed event is an
``InvalidInputError`` naming the field, never a stack trace), the execution id becomes the log correlation id,
and the step's duration is a metric. Which step failed is the state machine's fact (the Pass after each Catch
names it), never written into a message.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any, TypeVar

from aws_lambda_powertools import Logger, Tracer, single_metric
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from msgspec import ValidationError

from release_steps.errors import DeployflowError, InvalidInputError
from release_steps.messages import describe_validation_error, json_type
from release_steps.models import Model

logger = Logger(service="deployflow")
# No auto-patching: Tracer() would patch every library X-Ray supports (requests, sqlite3, httpx ...) into every
# handler's cold start. Each step patches what it uses (``step(patch=...)``): botocore everywhere.
tracer = Tracer(service="deployflow", auto_patch=False)
PATCH_BOTOCORE: tuple[str, ...] = ("botocore",)
METRICS_NAMESPACE = "Deployflow"

M = TypeVar("M", bound=Model)
Handler = Callable[[dict[str, Any], LambdaContext], dict[str, Any]]


def parse_event(model: type[M], event: Any, what: str = "step input") -> M:
    """Parse an event into its model; a validation failure is an ``InvalidInputError`` naming the fields.

    The model's own validation (msgspec, strict), not Powertools' parser: that one is pydantic's, whose import and
    model classes would be most of every step's cold start."""
    if not isinstance(event, dict):
        raise InvalidInputError(f"invalid {what}: expected a JSON object, got {json_type(event)}")
    try:
        return model.load(event)
    except ValidationError as e:
        raise InvalidInputError(describe_validation_error(e, what)) from e


def _execution_id(event: Any) -> str | None:
    if isinstance(event, dict):
        execution = event.get("execution")
        if isinstance(execution, dict) and isinstance(execution.get("id"), str):
            return str(execution["id"])
    return None


def step(name: str, patch: tuple[str, ...] = PATCH_BOTOCORE) -> Callable[[Handler], Handler]:
    """Decorate a step's ``lambda_handler``: correlation id, duration metric, step name on errors; the libraries in
    ``patch`` are traced (patched once, when the step's module is imported: the cold start)."""
    tracer.patch(modules=patch)

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        def wrapper(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
            logger.set_correlation_id(_execution_id(event))
            logger.append_keys(step=name)
            started = time.perf_counter()
            outcome = "succeeded"
            try:
                with tracer.provider.in_subsegment(f"## {name}"):
                    return handler(event, context)
            except DeployflowError as e:
                outcome = type(e).__name__
                logger.warning("step failed", extra={"error": type(e).__name__, "reason": e.message})
                raise
            except Exception:
                outcome = "unexpected"
                logger.exception("step failed unexpectedly")
                raise
            finally:
                # One EMF document per invocation, with its own dimension: warm invocations of other steps in the
                # same process (the local stack) never inherit it.
                with single_metric(
                    name="StepDuration",
                    unit=MetricUnit.Milliseconds,
                    value=(time.perf_counter() - started) * 1000,
                    namespace=METRICS_NAMESPACE,
                ) as metric:
                    metric.add_dimension(name="step", value=name)
                    metric.add_metadata(key="outcome", value=outcome)

        return wrapper

    return decorate
