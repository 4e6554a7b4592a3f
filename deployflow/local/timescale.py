"""Time scale for moto's Step Functions interpreter: Wait states and Retry intervals sleep ``factor`` times as long.

moto sleeps for real: ``WaitFunction._wait_interval`` waits on the execution's state event for a Wait state's
seconds, and ``RetrierDecl._eval_body`` calls ``time.sleep`` for a retry interval (after BackoffRate,
MaxDelaySeconds and JitterStrategy are applied). The seam scales only the real sleep: every value the ASL computes
(the Wait's seconds, the retry interval and its backoff, attempt counts) is unchanged, so attempt budgets hold
exactly and in the same order as on AWS, only faster.

Not scaled, on purpose:
- ``Timestamp`` / ``TimestampPath`` waits: they name an instant on the real clock, which ``$$.State.EnteredTime``,
  handlers and Choice rules also read; waking early would let the state machine see "not yet" and diverge from AWS.
- the clocks themselves (context object times, handlers' ``datetime.now``): a deadline carried in the state holds in
  real time, so tests that exercise a deadline give it a short stack parameter.
"""

from __future__ import annotations

import threading
import time
import types
from dataclasses import dataclass
from typing import Any, Literal

from deployflow.local._patching import AttributePatch, PatchSet, Seam

DelayKind = Literal["wait", "wait-timestamp", "retry"]


@dataclass(frozen=True)
class ScaledDelay:
    """One sleep the interpreter asked for: what the ASL computed and what the seam really slept."""

    kind: DelayKind
    requested_seconds: float
    slept_seconds: float


class TimeScale(Seam):
    """Scales moto's Wait and Retry sleeps by ``factor`` while installed; records every delay it scaled."""

    def __init__(self, factor: float = 1.0) -> None:
        self.factor = factor
        self._delays: list[ScaledDelay] = []
        self._lock = threading.Lock()

    @property
    def factor(self) -> float:
        return self._factor

    @factor.setter
    def factor(self, value: float) -> None:
        if not value > 0:
            raise ValueError(f"time scale factor must be > 0, got {value!r}")
        self._factor = float(value)

    @property
    def delays(self) -> list[ScaledDelay]:
        """The delays scaled so far, in order (a copy)."""
        with self._lock:
            return list(self._delays)

    def clear(self) -> None:
        with self._lock:
            self._delays.clear()

    def _record(self, kind: DelayKind, requested: float, slept: float) -> None:
        with self._lock:
            self._delays.append(ScaledDelay(kind=kind, requested_seconds=requested, slept_seconds=slept))

    def install(self) -> None:
        from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl
        from moto.stepfunctions.parser.asl.component.state.wait.wait_function import timestamp, wait_function

        scale = self

        def _wait_interval(wait_fn: Any, env: Any, wait_seconds: int) -> None:
            # Replaces WaitFunction._wait_interval: same contract (return early when the execution stops).
            if isinstance(wait_fn, timestamp.Timestamp):
                kind: DelayKind = "wait-timestamp"
                seconds = float(wait_seconds)
            else:
                kind = "wait"
                seconds = wait_seconds * scale.factor
            scale._record(kind, float(wait_seconds), max(seconds, 0.0))
            deadline = time.monotonic() + seconds
            remaining = seconds
            # The state event is pulsed (set, then cleared) on stop and on other state changes: re-check and go on.
            while remaining > 0 and env.is_running():
                env.program_state_event.wait(remaining)
                remaining = deadline - time.monotonic()

        def _sleep(seconds: float) -> None:
            scaled = seconds * scale.factor
            scale._record("retry", float(seconds), scaled)
            time.sleep(scaled)

        # retrier_decl uses its module global ``time`` only for ``time.sleep(interval_seconds)``.
        scaled_time = types.SimpleNamespace(sleep=_sleep)
        patches = PatchSet(
            "timescale",
            [
                AttributePatch(wait_function.WaitFunction, "_wait_interval", _wait_interval),
                AttributePatch(retrier_decl, "time", scaled_time),
            ],
        )
        self._apply_patches(patches)
