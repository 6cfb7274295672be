"""The virtual source-meter: a Keithley 2450 or 2400 sourcing voltage (or current) into the
devices the matrix's read path connects."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from dwlab.sim.virtual_lab.command_sets import SOURCE_METERS
from dwlab.sim.virtual_lab.scpi import SETTINGS_CONFLICT, Command, ScpiInstrument

if TYPE_CHECKING:
    from dwlab.sim.virtual_lab.lab import VirtualLab

NO_READING = 9.91e37
"""What a Keithley returns where it has no valid reading."""
_ELEMENTS = ("VOLT", "CURR", "RES", "TIME", "STAT")


class VirtualSourceMeter(ScpiInstrument):
    """A Keithley 2450 or 2400. Readings follow the sense function (current, voltage or
    resistance) and the source function, clamped at the compliance limit."""

    command_sets = SOURCE_METERS

    def __init__(self, lab: VirtualLab, role: str, driver: str, serial: str = "VIRTUAL"):
        super().__init__(lab, role, driver, serial)
        self.compliance_set_while_off = False
        self.buffer: list[tuple[float, float, float]] = []

    def output_on(self) -> bool:
        return self.flag("output")

    def run(self, command: Command, ch: str, query: bool, value: str, unit: str
            ) -> str | None:
        if not query and command.key in ("volt_limit",) and not self.output_on():
            self.compliance_set_while_off = True
        return super().run(command, ch, query, value, unit)

    def output(self, ch: str, value: str | None) -> str | None:
        return self.state.get("output", "0") if value is None else None

    def output_off(self, ch: str, value: str) -> None:
        self.state["output"] = "0"

    # -- measuring -------------------------------------------------------------------

    def sample(self) -> tuple[float, float, float] | None:
        """(volts, amps, ohms) now, or None (and -221 queued) with the output off."""
        if not self.output_on():
            self.error(SETTINGS_CONFLICT, "output is off")
            return None
        lab = self.lab
        if self.state.get("source") == "CURR":
            amps = self.number("curr_level")
            siemens = lab.current_through_read_path(1.0)
            limit = abs(self.number("curr_limit", 21.0))
            volts = max(-limit, min(limit, amps / siemens if siemens > 0 else
                                    (limit if amps > 0 else -limit)))
        else:
            volts = self.number("volt_level")
            limit = abs(self.number("volt_limit", 1.05e-4))
            amps = max(-limit, min(limit, lab.current_through_read_path(volts)))
        ohms = volts / amps if amps else NO_READING
        return volts, amps, ohms

    def _reading(self, what: str) -> str:
        sample = self.sample()
        if sample is None:
            return f"{NO_READING:e}"
        index = {"VOLT": 0, "CURR": 1, "RES": 2}[what]
        if self.driver == "keithley2450":
            return f"{sample[index]:e}"
        values = {"VOLT": sample[0], "CURR": sample[1], "RES": sample[2],
                  "TIME": time.monotonic(), "STAT": 0.0}
        elements = [e.strip()[:4].upper() for e in self.state.get("elements", "").split(",")]
        return ",".join(f"{values[e]:e}" for e in elements if e in values) or f"{sample[1]:e}"

    def read(self, ch: str, value: str) -> str:
        return self._reading(self.state.get("sense", "CURR"))

    def measure_current(self, ch: str, value: str) -> str:
        self.state["sense"] = "CURR"
        return self._reading("CURR")

    def measure_voltage(self, ch: str, value: str) -> str:
        self.state["sense"] = "VOLT"
        return self._reading("VOLT")

    def measure_resistance(self, ch: str, value: str) -> str:
        self.state["sense"] = "RES"
        return self._reading("RES")

    def sense_all(self, ch: str, value: str) -> None:
        self.state["sense"] = "CURR"

    # -- the reading buffer ----------------------------------------------------------

    def clear_buffer(self, ch: str, value: str) -> None:
        self.buffer = []

    def initiate(self, ch: str, value: str) -> None:
        """Fill the buffer (the trigger model runs at once)."""
        if self.driver == "keithley2400" and self.state.get("feed_control") != "NEXT":
            return
        points = int(self.number("buffer_points", 100))
        while len(self.buffer) < points:
            sample = self.sample()
            if sample is None:
                return
            self.buffer.append(sample)

    def buffer_full(self) -> bool:
        return bool(self.buffer) and len(self.buffer) >= int(self.number("buffer_points"))

    def status_byte(self) -> int:
        """Bit 0 (measurement summary) once the buffer is full and that event is enabled."""
        stb = super().status_byte()
        if self.buffer_full() and int(self.number("measurement_enable")) & 512:
            stb |= 1 | (64 if self.sre & 1 else 0)
        return stb

    def buffer_data(self, ch: str, value: str) -> str:
        return ",".join(f"{x:e}" for sample in self.buffer for x in sample)

    def _statistic(self, kind: str) -> str:
        if not self.buffer:
            self.error(SETTINGS_CONFLICT, "the buffer is empty")
            return f"{NO_READING:e}"
        columns = list(zip(*self.buffer, strict=True))
        out = []
        for column in columns:
            mean = sum(column) / len(column)
            if kind == "MEAN":
                out.append(mean)
            elif kind == "MAX":
                out.append(max(column))
            elif kind == "MIN":
                out.append(min(column))
            elif kind == "PKPK":
                out.append(max(column) - min(column))
            else:
                out.append((sum((x - mean) ** 2 for x in column) / max(len(column) - 1, 1))
                           ** 0.5)
        return ",".join(f"{x:e}" for x in out)

    def buffer_mean(self, ch: str, value: str) -> str:
        return self._statistic("MEAN")

    def buffer_max(self, ch: str, value: str) -> str:
        return self._statistic("MAX")

    def buffer_min(self, ch: str, value: str) -> str:
        return self._statistic("MIN")

    def buffer_std(self, ch: str, value: str) -> str:
        return self._statistic("SDEV")

    def statistic_data(self, ch: str, value: str) -> str:
        return self._statistic(self.state.get("statistic", "MEAN"))

    def reset(self) -> None:
        super().reset()
        self.buffer = []
