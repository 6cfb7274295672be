"""The virtual source-meter: a Keithley 2450 or 2400 sourcing a small voltage."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from dwlab.sim.virtual_lab.scpi import Dialect, ScpiInstrument

if TYPE_CHECKING:
    from dwlab.sim.virtual_lab.lab import VirtualLab

NO_READING = "9.91e+37"
"""What a Keithley returns where it has no valid reading."""


class VirtualSourceMeter(ScpiInstrument):
    """A Keithley 2450 or 2400 sourcing a small voltage and measuring current."""

    dialects = {
        "keithley2450": Dialect(
            "KEITHLEY INSTRUMENTS,MODEL 2450,VIRTUAL0003,dwlab-virtual",
            {"SOUR:FUNC": "function", "SOUR:VOLT:ILIM": "compliance",
             "SOUR:VOLT:LEV": "bias", "SENS:FUNC": "sense",
             "SENS:CURR:RSEN": "four_wire", "SENS:CURR:NPLC": "nplc",
             "OUTPUT": "output", "SENS:CURR:RANG:AUTO": "autorange"}),
        "keithley2400": Dialect(
            "KEITHLEY INSTRUMENTS INC.,MODEL 2400,VIRTUAL0004,dwlab-virtual",
            {"SOURCE:FUNCTION": "function", "SENSE:CURRENT:PROTECTION": "compliance",
             "SOURCE:VOLTAGE": "bias", "SYSTEM:RSENSE": "four_wire",
             "SENSE:CURRENT:NPLCYCLES": "nplc", "OUTPUT": "output",
             "FORMAT:ELEMENTS": "elements"}),
    }
    initial_state = {"output": "0", "bias": "0", "compliance": "1.05e-4"}

    def __init__(self, lab: VirtualLab, role: str, driver: str):
        super().__init__(lab, role, driver)
        self.compliance_set_while_off = False

    def output_on(self) -> bool:
        return self.flag("output")

    def command(self, command: str) -> str | None:
        head = command.partition(" ")[0].upper().lstrip(":")
        if head in ("SOUR:VOLT:ILIM", "SENSE:CURRENT:PROTECTION") and not self.output_on():
            self.compliance_set_while_off = True
        return super().command(command)

    def special(self, head: str, value: str) -> str | None | bool:
        if head == "READ?" and self.driver == "keithley2450":
            return self.reading()
        if head == "MEASURE:CURRENT?" and self.driver == "keithley2400":
            current = float(self.reading())
            bias = self.number("bias")
            ohms = bias / current if current else float(NO_READING)
            return f"{bias:e},{current:e},{ohms:e},{time.monotonic():e},0"
        return False

    def reading(self) -> str:
        if not self.output_on():
            self.push_error(-221, "Settings conflict; output is off")
            return NO_READING
        current = self.lab.current_through_read_path(self.number("bias"))
        limit = abs(self.number("compliance", 1.05e-4))
        return f"{max(-limit, min(limit, current)):e}"
