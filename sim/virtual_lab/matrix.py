"""The virtual switch matrix: a Keithley 707B speaking its TSP subset
(:data:`~dwlab.sim.virtual_lab.command_sets.KEITHLEY_707B`)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from dwlab.sim.virtual_lab.command_sets import KEITHLEY_707B
from dwlab.sim.virtual_lab.instrument import VirtualInstrument

from dwlab.core.crosspoint import CROSSPOINT

if TYPE_CHECKING:
    from dwlab.sim.virtual_lab.lab import VirtualLab

_IDENTITY, *_STATEMENTS = KEITHLEY_707B
_TSP = re.compile("|".join(f"(?P<{action}_{i}>{pattern})"
                           for i, (pattern, action) in enumerate(_STATEMENTS)))


def _tsp_number(value: float) -> str:
    return f"{value:.5e}"


class VirtualMatrix(VirtualInstrument):
    """A Keithley 707B (TSP): crosspoints close and open; queries print."""

    def __init__(self, lab: VirtualLab, role: str, serial: str = "VIRTUAL"):
        super().__init__(lab, role)
        self.idn = f"{_IDENTITY[0]},{_IDENTITY[1]},{serial},dwlab-virtual"
        self.closed: set[str] = set()

    def handle(self, message: str) -> str | None:
        out: list[str] = []
        text = message.strip()
        matches = list(_TSP.finditer(text))
        covered = "".join(text[m.start():m.end()] for m in matches)
        if not matches or covered.replace(" ", "") != text.replace(" ", ""):
            self.push_error(-285, f"TSP Syntax error; {text}")
            return None
        for m in matches:
            name = next(k for k, v in m.groupdict().items() if v is not None and "_" in k
                        and k.rsplit("_", 1)[1].isdigit())
            reply = getattr(self, name.rsplit("_", 1)[0])(m)
            if reply is not None:
                out.append(reply)
        return "\n".join(out) if out else None

    # -- statements ------------------------------------------------------------------

    def switch(self, m: re.Match[str]) -> None:
        op, chans = m.group("op"), m.group("chans")
        names = [c.strip() for c in chans.split(",") if c.strip()]
        self.lab.settle()  # pulses already sent went through the old routing
        if names == ["allslots"] and op == "open":
            self.closed.clear()
            return
        bad = [c for c in names if not CROSSPOINT.match(c)]
        if bad:  # the 707B changes nothing when any channel is invalid
            self.push_error(1115, f"Parameter error invalid channel {bad[0]}")
            return
        if op == "close":
            self.closed.update(names)
        elif op == "open":
            self.closed.difference_update(names)
        else:
            self.closed = set(names)

    def print_closed(self, m: re.Match[str]) -> str:
        return ";".join(sorted(self.closed)) if self.closed else "nil"

    def print_error_count(self, m: re.Match[str]) -> str:
        return _tsp_number(len(self.error_queue))

    def print_next_error(self, m: re.Match[str]) -> str:
        code, text = self.error_queue.popleft() if self.error_queue else (0, "")
        return f"{_tsp_number(code)}\t{text}"

    def clear_errors(self, m: re.Match[str]) -> None:
        self.error_queue.clear()

    def reset(self, m: re.Match[str]) -> None:
        """``reset()`` / ``*RST``: every crosspoint open."""
        self.lab.settle()
        self.closed.clear()

    def nothing(self, m: re.Match[str]) -> None:
        """Operations complete at once (relays settle before the next statement runs)."""

    def print_one(self, m: re.Match[str]) -> str:
        return "1"

    def print_number(self, m: re.Match[str]) -> str:
        return _tsp_number(float(m.group("number")))

    def print_idn(self, m: re.Match[str]) -> str:
        return self.idn
