"""Conductance-meter adapters: a source-measure unit biased in voltage, current measured."""

from __future__ import annotations

from typing import Any

from dwlab.drivers.adapters import RoleAdapter


class VoltageBiasMeter(RoleAdapter):
    """Conductance meter on a source-measure unit: voltage bias, current measured; a
    subclass selects 2- or 4-wire sensing."""

    def _select_sensing(self, smu: Any, wires: int) -> None:
        raise NotImplementedError

    def configure(self, bias_volts: float, compliance_amps: float, wires: int,
                  nplc: float) -> None:
        def setup(smu: Any) -> None:
            smu.source_mode = "voltage"
            smu.compliance_current = compliance_amps  # before the output is ever on
            smu.source_voltage = bias_volts
            self._select_sensing(smu, wires)
            smu.current_nplc = nplc

        self.call("configuring the read-out", setup)

    def measure_current(self) -> float:
        return float(self.call("measuring", lambda smu: float(smu.current), idempotent=True))


class Keithley2450Meter(VoltageBiasMeter):
    """Conductance meter on a Keithley 2450."""

    def _select_sensing(self, smu: Any, wires: int) -> None:
        smu.write(':SENS:FUNC "CURR"')
        smu.write(f":SENS:CURR:RSEN {'ON' if wires == 4 else 'OFF'}")

    def output_on(self) -> None:
        self.call("switching the output on", lambda smu: smu.enable_source())

    def output_off(self) -> None:
        self.shutdown_call("switching the output off", lambda smu: smu.disable_source(),
                           lambda smu: smu.ask("OUTPUT?").strip() in ("0", "OFF"))


class Keithley2400Meter(VoltageBiasMeter):
    """Conductance meter on a Keithley 2400 (pymeasure's stock driver)."""

    def _select_sensing(self, smu: Any, wires: int) -> None:
        smu.wires = wires

    def output_on(self) -> None:
        self.call("switching the output on", lambda smu: setattr(smu, "source_enabled", True))

    def output_off(self) -> None:
        self.shutdown_call("switching the output off",
                           lambda smu: setattr(smu, "source_enabled", False),
                           lambda smu: smu.source_enabled is False)
