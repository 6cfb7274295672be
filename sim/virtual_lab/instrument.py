"""What every virtual instrument shares: a command log, an error queue and faults."""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Literal

from dwlab.sim.virtual_lab.faults import GARBLED, Fault

if TYPE_CHECKING:
    from dwlab.sim.virtual_lab.lab import VirtualLab


class VirtualInstrument:
    """Command log, error queue and faults; subclasses interpret the messages."""

    idn = "dwlab,virtual,0,1.0"

    def __init__(self, lab: VirtualLab, role: str):
        self.lab = lab
        self.role = role
        self.log: list[str] = []
        self.error_queue: deque[tuple[int, str]] = deque()
        self.faults: list[Fault] = []

    def push_error(self, code: int, text: str) -> None:
        self.error_queue.append((code, text))

    def respond(self, message: str) -> tuple[Literal["reply", "drop"], str | None]:
        """(action, reply) for one received message; action is 'reply' or 'drop'."""
        self.log.append(message)
        fault = next((f for f in self.faults if f.applies(message)), None)
        if fault is not None and fault.kind == "drop":
            return "drop", None
        if fault is not None and fault.kind == "timeout":
            return "reply", None  # hung: the message is neither executed nor answered
        with self.lab.lock:
            reply = self.handle(message)
        if fault is not None and fault.kind == "error":
            self.push_error(-300, "Device-specific error; injected by the virtual lab")
        if fault is not None and fault.kind == "garble":
            reply = GARBLED
        return "reply", reply

    def handle(self, message: str) -> str | None:  # pragma: no cover - overridden
        raise NotImplementedError
