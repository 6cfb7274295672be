"""How a run ends, in every run's metadata: the status vocabulary, the error as recorded
(type and message, bounded), and the Ctrl-C request that lets a run stop between steps.

Protocol runs and training runs share them, so a reader of ``metadata.json`` finds the
same ``status`` (running / completed / interrupted / failed) and ``error`` everywhere.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Literal

RunStatus = Literal["running", "completed", "interrupted", "failed"]

ERROR_CHARS = 2000
"""The longest error message a record keeps (an instrument may send megabytes)."""


def error_text(exc: BaseException, limit: int = ERROR_CHARS) -> str:
    """``Type: message`` of ``exc``, cut to ``limit`` characters (the cut is marked)."""
    text = f"{type(exc).__name__}: {exc}"
    if len(text) <= limit:
        return text
    return text[:limit] + f"... [{len(text) - limit} more characters]"


SignalHandler = Callable[[int, FrameType | None], object] | int | None


class StopRequest:
    """While entered: the first Ctrl-C asks the run to stop at its next step boundary
    (``requested``); a second one interrupts at once (``KeyboardInterrupt``).

    Outside the main thread (where Python delivers no signals) it installs nothing.
    """

    def __init__(self) -> None:
        self.requested = False
        self._previous: SignalHandler = None
        self._installed = False

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handler)
            self._installed = True
        return self

    def __exit__(self, *exc: object) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)
            self._installed = False
