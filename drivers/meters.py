"""Conductance-meter adapters: a source-measure unit biased in voltage, current measured."""

from __future__ import annotations

from dwlab.drivers.adapters import RoleAdapter


class VoltageBiasMeter(RoleAdapter):
    """Conductance meter on a source-measure unit: voltage bias, current measured; a
    subclass selects 2- or 4-wire sensing."""

    def _select_sensing(self, wires: int) -> None:
        raise NotImplementedError

    def configure(self, bias_volts: float, compliance_amps: float, wires: int,
                  nplc: float) -> None:
        def setup() -> None:
            smu = self.instrument
            smu.source_mode = "voltage"
            smu.compliance_current = compliance_amps  # before the output is ever on
            smu.source_voltage = bias_volts
            self._select_sensing(wires)
            smu.current_nplc = nplc

        self.call("configuring the read-out", setup)

    def measure_current(self) -> float:
        return float(self.call("measuring", lambda: float(self.instrument.current),
                               idempotent=True))


class Keithley2450Meter(VoltageBiasMeter):
    """Conductance meter on a Keithley 2450."""

    def _select_sensing(self, wires: int) -> None:
        self.instrument.write(':SENS:FUNC "CURR"')
        self.instrument.write(f":SENS:CURR:RSEN {'ON' if wires == 4 else 'OFF'}")

    def output_on(self) -> None:
        self.call("switching the output on", self.instrument.enable_source)

    def output_off(self) -> None:
        self.shutdown_call("switching the output off", self.instrument.disable_source,
                           lambda: self.instrument.ask("OUTPUT?").strip() in ("0", "OFF"))


class Keithley2400Meter(VoltageBiasMeter):
    """Conductance meter on a Keithley 2400 (pymeasure's stock driver)."""

    def _select_sensing(self, wires: int) -> None:
        self.instrument.wires = wires

    def output_on(self) -> None:
        self.call("switching the output on", lambda: setattr(self.instrument,
                                                              "source_enabled", True))

    def output_off(self) -> None:
        self.shutdown_call("switching the output off",
                           lambda: setattr(self.instrument, "source_enabled", False),
                           lambda: self.instrument.source_enabled is False)
