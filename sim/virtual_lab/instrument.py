"""What every virtual instrument shares: a command log, an error queue and faults, all
bounded as on a real instrument (a fuzzing client cannot make the lab grow without end)."""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Literal

from dwlab.sim.virtual_lab.faults import GARBLED, Fault

if TYPE_CHECKING:
    from dwlab.sim.virtual_lab.lab import VirtualLab

LOG_MESSAGES = 10_000
"""Messages the command log keeps (the most recent)."""
LOG_CHARS = 256
"""Characters of each message the log keeps."""
QUEUE_ENTRIES = 32
"""Entries the error queue holds; on overflow the newest becomes -350 (SCPI-99 21.8)."""
ERROR_CHARS = 255
"""Characters of an error description (SCPI-99 21.8.2: at most 255)."""
QUEUE_OVERFLOW = (-350, "Queue overflow")

Action = Literal["reply", "drop", "kill"]


class VirtualInstrument:
    """Command log, error queue and faults; subclasses interpret the messages."""

    idn = "dwlab,virtual,0,1.0"

    def __init__(self, lab: VirtualLab, role: str):
        self.lab = lab
        self.role = role
        self.log: deque[str] = deque(maxlen=LOG_MESSAGES)
        self.messages = 0  # every message received, also those the log no longer keeps
        self.error_queue: deque[tuple[int, str]] = deque()
        self.errors_raised: deque[int] = deque(maxlen=LOG_MESSAGES)
        """The code of every error raised, also those a client has read (tests)."""
        self.faults: list[Fault] = []

    def push_error(self, code: int, text: str) -> None:
        """Queue an error; a full queue keeps its oldest entries and marks the overflow."""
        self.errors_raised.append(code)
        if len(self.error_queue) >= QUEUE_ENTRIES:
            self.error_queue[-1] = QUEUE_OVERFLOW
            return
        self.error_queue.append((code, text[:ERROR_CHARS]))

    def since(self, count: int) -> list[str]:
        """The messages received after the first ``count`` (those the log still keeps)."""
        new = self.messages - count
        return list(self.log)[-new:] if new > 0 else []

    def receive(self, message: str) -> None:
        with self.lab.lock:
            self.log.append(message[:LOG_CHARS])
            self.messages += 1

    def overrun(self) -> None:
        """A message longer than the input buffer: discarded, and an error queued."""
        self.receive("<input buffer overrun>")
        with self.lab.lock:
            self.push_error(-363, "Input buffer overrun")

    def respond(self, message: str) -> tuple[Action, str | None]:
        """(action, reply) for one received message: 'reply' (``None``: no reply), or the
        connection is to 'drop', or the server to be killed."""
        self.receive(message)
        fault = next((f for f in self.faults if f.applies(message)), None)
        if fault is not None and fault.kind == "drop":
            return "drop", None
        if fault is not None and fault.kind == "kill":
            return "kill", None
        if fault is not None and fault.kind == "timeout":
            return "reply", None  # hung: the message is neither executed nor answered
        reply = self.execute(message)
        if fault is not None and fault.kind == "error":
            with self.lab.lock:
                self.push_error(-300, "Device-specific error; injected by the virtual lab")
        if fault is not None and fault.kind == "garble":
            reply = GARBLED
        return "reply", reply

    def execute(self, message: str) -> str | None:
        """Execute one message (under the lab's lock; a model that waits for pending
        operations releases it while it waits)."""
        with self.lab.lock:
            return self.handle(message)

    def handle(self, message: str) -> str | None:  # pragma: no cover - overridden
        raise NotImplementedError
