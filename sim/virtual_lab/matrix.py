"""The virtual switch matrix: a Keithley 707B speaking TSP."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from dwlab.sim.virtual_lab.instrument import VirtualInstrument

from dwlab.core.crosspoint import CROSSPOINT

if TYPE_CHECKING:
    from dwlab.sim.virtual_lab.lab import VirtualLab

# The TSP statements the 707B driver sends; anything else is a syntax error.
_TSP = re.compile(
    r'channel\.(?P<op>close|open|exclusiveclose)\("(?P<chans>[^"]*)"\)'
    r'|(?P<getclose>print\(channel\.getclose\("allslots"\)\))'
    r'|(?P<count>print\(errorqueue\.count\))'
    r'|(?P<next>errorcode, message = errorqueue\.next\(\) print\(errorcode, message\))'
    r'|print\((?P<number>-?\d+(?:\.\d*)?)\)'
    r'|(?P<idn>\*IDN\?)'
)


def _tsp_number(value: float) -> str:
    return f"{value:.5e}"


class VirtualMatrix(VirtualInstrument):
    """A Keithley 707B (TSP): crosspoints close and open; queries print."""

    idn = "Keithley Instruments Inc.,Model 707B,VIRTUAL0005,dwlab-virtual"

    def __init__(self, lab: VirtualLab, role: str):
        super().__init__(lab, role)
        self.closed: set[str] = set()

    def handle(self, message: str) -> str | None:
        out = []
        text = message.strip()
        matches = list(_TSP.finditer(text))
        covered = "".join(text[m.start():m.end()] for m in matches)
        if not matches or covered.replace(" ", "") != text.replace(" ", ""):
            self.push_error(-285, f"TSP Syntax error; {text}")
            return None
        for m in matches:
            if m.group("op"):
                self.switch(m.group("op"), m.group("chans"))
            elif m.group("getclose"):
                out.append(";".join(sorted(self.closed)) if self.closed else "nil")
            elif m.group("count"):
                out.append(_tsp_number(len(self.error_queue)))
            elif m.group("next"):
                code, text_ = self.error_queue.popleft() if self.error_queue else (0, "")
                out.append(f"{_tsp_number(code)}\t{text_}")
            elif m.group("number") is not None:
                out.append(_tsp_number(float(m.group("number"))))
            elif m.group("idn"):
                out.append(self.idn)
        return "\n".join(out) if out else None

    def switch(self, op: str, chans: str) -> None:
        names = [c.strip() for c in chans.split(",") if c.strip()]
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
