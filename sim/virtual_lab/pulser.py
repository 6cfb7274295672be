"""The virtual pulse generator: an Agilent 81110A or Keysight 81160A."""

from __future__ import annotations

import time
from typing import NamedTuple

from dwlab.sim.virtual_lab.command_sets import PULSERS
from dwlab.sim.virtual_lab.scpi import SETTINGS_CONFLICT, ScpiInstrument, format_number

from dwlab.core.types import PULL, PUSH, PulseShape


class Burst(NamedTuple):
    """``pulses`` pulses of one ``shape`` and ``polarity`` (PUSH or PULL) from one trigger.

    (Not ``count``: that would hide ``tuple.count``.)"""

    polarity: int
    pulses: int
    shape: PulseShape


class VirtualPulser(ScpiInstrument):
    """An Agilent 81110A or Keysight 81160A: ``*TRG`` starts a burst on every channel whose
    output is on. A burst lasts its pulses times the pulse period; the pulses reach the
    devices the matrix connects while they leave the output (``VirtualLab.settle``)."""

    command_sets = PULSERS

    def output_on(self) -> bool:
        return self.flag("output1") or self.flag("output2")

    def _key(self, name: str, ch: str) -> str:
        """The state entry of ``name`` for channel ``ch``: the 81110A has one burst counter
        and one period for both channels."""
        if self.driver == "agilent81110a" and name in ("count", "period"):
            return "count1" if name == "count" else "period"
        return f"{name}{ch}"

    def trigger(self) -> None:
        for ch in ("1", "2"):
            if self.flag(f"output{ch}"):
                self.fire(ch)

    def fire(self, ch: str) -> None:
        count = int(self.number(self._key("count", ch), 1))
        period = self.number(self._key("period", ch), 1e-6)
        amplitude = self.number(f"high{ch}") - self.number(f"low{ch}")
        width = self.number(f"width{ch}", 1e-7)
        polarity = PULL if self.state.get(f"polarity{ch}", "NORM") == "INV" else PUSH
        start = max(time.monotonic(), self.busy_until)
        self.busy_until = start + count * period
        if amplitude > 0 and width > 0 and count >= 1:
            self.lab.emit(Burst(polarity, count, PulseShape(amplitude, width)), start, period)

    def output(self, ch: str, value: str | None) -> str | None:
        """Switching an output off (or ``*RST``) ends the burst under way."""
        if value is None:
            return self.state.get(f"output{ch}", "0")
        if value == "0":
            self.lab.cut_bursts()
        return None

    def reset(self) -> None:
        self.lab.cut_bursts()
        self.busy_until = 0.0
        super().reset()

    def amplitude(self, ch: str, value: str | None) -> str | None:
        high, low = self.number(f"high{ch}"), self.number(f"low{ch}")
        if value is None:
            return format_number(high - low)
        self._levels(ch, (high + low) / 2, float(value))
        return None

    def offset(self, ch: str, value: str | None) -> str | None:
        high, low = self.number(f"high{ch}"), self.number(f"low{ch}")
        if value is None:
            return format_number((high + low) / 2)
        self._levels(ch, float(value), high - low)
        return None

    def _levels(self, ch: str, offset: float, amplitude: float) -> None:
        high, low = offset + amplitude / 2, offset - amplitude / 2
        if not -10.0 <= low <= high <= 10.0:
            self.error(SETTINGS_CONFLICT, f"levels {low:g} V to {high:g} V")
            return
        self.state[f"high{ch}"], self.state[f"low{ch}"] = format_number(high), format_number(low)

    # -- the 81160A's waveform memory and APPLy ---------------------------------------

    def free_slots(self, ch: str, value: str | None) -> str:
        return "4"

    def catalog(self, ch: str, value: str | None) -> str:
        return '"VOLATILE"'

    def delete_waveform(self, ch: str, value: str) -> None:
        self.error((-256, "File name not found"), value)

    def apply_function(self, ch: str, value: str) -> None:
        """``:APPLy:<shape> frequency, amplitude, offset`` (DEF keeps a value)."""
        values = [v.strip().upper() for v in value.split(",")] if value else []
        for action, text in zip((None, self.amplitude, self.offset), values[:3], strict=False):
            if text in ("", "DEF", "DEFAULT"):
                continue
            try:
                number = float(text)
            except ValueError:
                self.error((-104, "Data type error"), value)
                return
            if action is None:
                self.state[f"frequency{ch}"] = format_number(number)
            else:
                action(ch, format_number(number))
        self.state[f"output{ch}"] = "1"  # APPLy switches the output on
