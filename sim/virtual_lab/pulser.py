"""The virtual pulse generator: an Agilent 81110A or Keysight 81160A."""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from dwlab.sim.virtual_lab.scpi import Dialect, ScpiInstrument, channel_headers

from dwlab.core.types import PULL, PUSH, PulseShape

if TYPE_CHECKING:
    from dwlab.sim.virtual_lab.lab import VirtualLab


class Burst(NamedTuple):
    """``pulses`` pulses of one ``shape`` and ``polarity`` (PUSH or PULL) from one trigger.

    (Not ``count``: that would hide ``tuple.count``.)"""

    polarity: int
    pulses: int
    shape: PulseShape


_CHANNEL_HEADERS = {
    "VOLT{ch}:HIGH": "high{ch}", "VOLT{ch}:LOW": "low{ch}",
    "PULS:WIDT{ch}": "width{ch}", "PULS:PER{ch}": "period{ch}",
    "OUTP{ch}:POL": "polarity{ch}", "OUTP{ch}": "output{ch}",
    "ARM:SOUR{ch}": "arm{ch}", "FUNC{ch}": "function{ch}",
}


class VirtualPulser(ScpiInstrument):
    """An Agilent 81110A or Keysight 81160A: bursts on ``*TRG`` while the output is on."""

    dialects = {
        "agilent81110a": Dialect(
            "Agilent Technologies,81110A,VIRTUAL0001,dwlab-virtual",
            # one burst counter for the mainframe
            channel_headers({**_CHANNEL_HEADERS, "TRIG:COUN": "count1"})),
        "keysight81160a": Dialect(
            "Agilent Technologies,81160A,VIRTUAL0002,dwlab-virtual",
            channel_headers({**_CHANNEL_HEADERS, "TRIG{ch}:COUN": "count{ch}"})),
    }
    initial_state = {"output1": "0", "output2": "0", "polarity1": "NORM",
                     "polarity2": "NORM", "count1": "1", "count2": "1",
                     "high1": "0", "high2": "0", "low1": "0", "low2": "0",
                     "width1": "1e-8", "width2": "1e-8"}

    def __init__(self, lab: VirtualLab, role: str, driver: str):
        super().__init__(lab, role, driver)
        self.bursts_fired = 0
        self._pending: list[Burst] = []

    def output_on(self) -> bool:
        return self.flag("output1") or self.flag("output2")

    def special(self, head: str, value: str) -> str | None | bool:
        if head == "*TRG":
            for ch in ("1", "2"):
                if self.flag(f"output{ch}"):
                    self.fire(ch)
            return None
        return False

    def fire(self, ch: str) -> None:
        count = self.number("count1" if self.driver == "agilent81110a" else f"count{ch}", 1)
        amplitude = self.number(f"high{ch}") - self.number(f"low{ch}")
        width = self.number(f"width{ch}", 1e-8)
        self.bursts_fired += 1
        if amplitude <= 0 or width <= 0 or count < 1:
            return
        polarity = PULL if self.state.get(f"polarity{ch}", "NORM").upper().startswith("INV") \
            else PUSH
        self._pending.append(Burst(polarity, int(count), PulseShape(amplitude, width)))

    def handle(self, message: str) -> str | None:
        """Bursts of one message go out back to back; the twin receives them together
        (the routing cannot change within a message: the lab lock is held)."""
        self._pending = []
        reply = super().handle(message)
        self.lab.deliver(self._pending)
        return reply
