"""Faults injected into one instrument's conversation."""

from __future__ import annotations

from dataclasses import dataclass

FAULT_KINDS = ("timeout", "drop", "error", "garble", "kill")
"""timeout: a query gets no reply; drop: the connection closes; error: an entry goes into
the error queue; garble: a query gets an unparsable reply; kill: the server dies (stops
listening and hangs up; the instrument keeps its outputs and switches as they were)."""

GARBLED = "#?@!~\x7f~"


def is_query(message: str) -> bool:
    """Whether ``message`` asks for a reply (SCPI ``?`` or a TSP ``print``)."""
    return "?" in message or "print(" in message


@dataclass
class Fault:
    kind: str  # one of FAULT_KINDS
    after: int = 0
    times: int = 1
    match: str | None = None
    seen: int = 0

    def applies(self, message: str) -> bool:
        """Count ``message`` and say whether the fault fires on it."""
        if self.times <= 0:
            return False
        if self.match is not None and self.match not in message:
            return False
        if self.kind in ("timeout", "garble") and not is_query(message):
            return False  # only a reply can be withheld or garbled
        self.seen += 1
        if self.seen <= self.after:
            return False
        self.times -= 1
        return True
