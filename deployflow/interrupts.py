"""Ctrl-C and SIGTERM as a KeyboardInterrupt that a poll loop cannot lose.

Python turns SIGINT into a KeyboardInterrupt raised wherever the main thread is. When that is a finalizer (a
socket's ``__del__`` run by the garbage collector in the middle of an API call), Python prints "Exception ignored"
and goes on: a watcher would then poll for an hour. The handler here also records the signal, and the loops that
wait (``sleep``) raise it again at their next turn.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

_received = threading.Event()


def install() -> None:
    """Handle SIGINT and SIGTERM (main thread only): each raises KeyboardInterrupt and is remembered."""
    signal.signal(signal.SIGINT, _handle)
    signal.signal(signal.SIGTERM, _handle)


def _handle(signum: int, frame: FrameType | None) -> None:
    _received.set()
    raise KeyboardInterrupt


def checkpoint() -> None:
    """Raise KeyboardInterrupt if a signal came since ``install`` (even one whose exception was swallowed)."""
    if _received.is_set():
        raise KeyboardInterrupt


def sleep(seconds: float) -> None:
    """``time.sleep`` that ends early, with KeyboardInterrupt, when a signal came or comes."""
    checkpoint()
    _received.wait(seconds)
    checkpoint()
