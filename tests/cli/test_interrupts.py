"""A Ctrl-C is never lost: one whose KeyboardInterrupt Python swallowed (raised in a finalizer) still ends the
next wait of a poll loop, so ``deployflow watch`` and ``deployflow local up`` stop as asked."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.cli.conftest import REPO_ROOT

SWALLOWED_THEN_WAITED = textwrap.dedent(
    """
    import os, signal, sys, time
    from deployflow import interrupts

    class Finalizer:
        def __del__(self):  # the signal lands here: Python prints "Exception ignored" and goes on
            os.kill(os.getpid(), signal.{signal})
            time.sleep(0.5)

    interrupts.install()
    finalizer = Finalizer()
    del finalizer
    print("went on after the swallowed interrupt", flush=True)
    try:
        interrupts.sleep(5)
    except KeyboardInterrupt:
        sys.exit(130)
    sys.exit(0)
    """
)


def _run(signal_name: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", SWALLOWED_THEN_WAITED.replace("{signal}", signal_name)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )


def test_given_an_interrupt_swallowed_by_a_finalizer_when_the_loop_waits_next_then_it_ends_at_once() -> None:
    for signal_name in ("SIGINT", "SIGTERM"):
        done = _run(signal_name)

        assert "Exception ignored" in done.stderr, f"{signal_name}: the interrupt was not swallowed: {done}"
        assert "KeyboardInterrupt" in done.stderr, done
        assert "went on after the swallowed interrupt" in done.stdout, done
        assert done.returncode == 130, f"{signal_name}: the wait after a swallowed interrupt did not end: {done}"
