"""A hardware array: instruments by role, switch-matrix wiring, read-out and pulsing."""

from __future__ import annotations

import math
from typing import Annotated, Literal

from annotated_types import Ge, Gt, Interval, Le
from pydantic import Field, field_validator, model_validator

from dwlab.config.convert import Schema
from dwlab.config.problems import KeyProblem
from dwlab.config.quantities import Amps, Finite, Ohms, Seconds, Siemens, Volts
from dwlab.core.crosspoint import (
    MATRIX_ROWS,
    MATRIX_SLOTS,
    Route,
    crossbar_paths,
    device_paths,
)
from dwlab.core.instruments import ROLES, drivers_for

Positive = Gt(0)
AtMost1S = Le(1.0)
VISA_BACKENDS = ("py", "ivi", "ni", "sim")


class InstrumentConfig(Schema):
    """One instrument: driver registry name, VISA resource and driver settings."""

    driver: str
    resource: str
    """e.g. ``GPIB0::10::INSTR`` or ``TCPIP::127.0.0.1::50301::SOCKET`` (virtual lab)."""
    timeout_seconds: Annotated[Seconds, Positive, Le(600.0)] = 2.0
    channel: Literal[1, 2] = 1
    """Output channel (pulse generators)."""
    visa_library: str = "@py"
    """PyVISA backend: '@py' (pyvisa-py), '' (the system VISA, e.g. NI-VISA), '@ivi',
    '@sim' (pyvisa-sim), or a VISA library file, optionally followed by '@backend'."""

    @field_validator("visa_library")
    @classmethod
    def _known_backend(cls, library: str) -> str:
        if "@" in library and library.rpartition("@")[2] not in VISA_BACKENDS:
            raise ValueError(f"unknown VISA backend in {library!r}; known: "
                             f"{', '.join('@' + b for b in VISA_BACKENDS)}")
        return library


class InstrumentsConfig(Schema):
    """The three roles of a hardware array."""

    pulser: InstrumentConfig
    meter: InstrumentConfig
    router: InstrumentConfig

    @model_validator(mode="after")
    def _drivers_fit_roles(self) -> InstrumentsConfig:
        for role in ROLES:
            allowed = drivers_for(role)
            driver = getattr(self, role).driver
            if driver not in allowed:
                raise ValueError(f"{role}.driver '{driver}' is not one of {', '.join(allowed)}")
        return self


class DeviceWiringConfig(Schema):
    """Crosspoints (e.g. ``1A01``) closed to pulse a device and to read it."""

    write: list[str]
    read: list[str]


class CrossbarWiringConfig(Schema):
    """Generated wiring of a crossbar chip on a switch matrix.

    The array is viewed as rows x columns (the last axis is the column; leading axes are
    flattened into rows). Word line ``r`` and bit line ``c`` each occupy one matrix column,
    assigned in order: word lines first, then bit lines, filling ``columns_per_slot``
    columns per card from ``first_slot`` on. Device (r, c) is pulsed by closing
    ``write_rows[0]`` on its word line and ``write_rows[1]`` on its bit line, and read
    through ``read_rows`` likewise.
    """

    first_slot: Annotated[int, Field(ge=1, le=MATRIX_SLOTS)] = 1
    write_rows: list[str] = Field(default_factory=lambda: ["A", "B"])
    read_rows: list[str] = Field(default_factory=lambda: ["C", "D"])

    @field_validator("write_rows", "read_rows")
    @classmethod
    def _two_matrix_rows(cls, rows: list[str]) -> list[str]:
        if len(rows) != 2 or any(r not in MATRIX_ROWS for r in rows):
            raise ValueError(f"must be two matrix rows out of {MATRIX_ROWS}")
        return rows


class WiringConfig(Schema):
    """Device address (flat index) to write and read crosspoints.

    ``devices`` entries (keys are flat indices) override the generated ``crossbar`` wiring.
    ``shared_path``: write and read paths may be closed together (a bias tee joins pulser
    and meter at the device), so one routing serves a pulse and its read-back.
    """

    crossbar: CrossbarWiringConfig | None = None
    devices: dict[int, DeviceWiringConfig] = Field(default_factory=dict)
    shared_path: bool = False

    def paths(self, shape: tuple[int, ...]) -> list[tuple[Route, Route]]:
        """(write crosspoints, read crosspoints) per flat device index."""
        generated = None
        if self.crossbar is not None:
            cb = self.crossbar
            generated = crossbar_paths(shape, cb.first_slot, cb.write_rows, cb.read_rows)
        explicit = {i: (d.write, d.read) for i, d in self.devices.items()}
        return device_paths(math.prod(int(n) for n in shape), generated, explicit)


class ReadConfig(Schema):
    """Small-bias read-out: voltage bias, current compliance, G = I / V minus series R."""

    bias_volts: Annotated[Volts, Positive] = 0.01
    compliance_amps: Annotated[Amps, Positive] = 1e-4
    max_bias_volts: Annotated[Volts, Positive, Le(100.0)] = 0.1
    """Safety limit: a larger bias is refused before any I/O."""
    max_compliance_amps: Annotated[Amps, Positive, Le(10.0)] = 1e-3
    """Safety limit on the compliance setting."""
    wires: Literal[2, 4] = 2
    nplc: Annotated[Finite, Field(ge=0.01, le=10)] = 0.1
    series_resistance_ohms: Annotated[Ohms, Ge(0), Le(1e6)] = 0.0
    """Lead and contact resistance in series with each device, subtracted from V / I."""

    @model_validator(mode="after")
    def _within_safety_limits(self) -> ReadConfig:
        if self.bias_volts > self.max_bias_volts:
            raise KeyProblem(
                "bias_volts",
                f"bias_volts {self.bias_volts:g} V must lie in (0, max_bias_volts "
                f"{self.max_bias_volts:g} V]"
            )
        if self.compliance_amps > self.max_compliance_amps:
            raise KeyProblem(
                "compliance_amps",
                f"compliance_amps {self.compliance_amps:g} A must lie in (0, "
                f"max_compliance_amps {self.max_compliance_amps:g} A]"
            )
        return self


class DeviceNominalConfig(Schema):
    """What characterisation found for the devices (``describe()`` reports it)."""

    conductance_min_siemens: Annotated[Siemens, Positive, AtMost1S]
    conductance_max_siemens: Annotated[Siemens, AtMost1S]
    step_siemens: Annotated[Siemens, Positive, AtMost1S]
    step_sigma_siemens: Annotated[Siemens, Ge(0), AtMost1S]

    @model_validator(mode="after")
    def _window_ordered(self) -> DeviceNominalConfig:
        if not self.conductance_min_siemens < self.conductance_max_siemens:
            raise KeyProblem("conductance_max_siemens",
                             "need 0 < conductance_min_siemens < conductance_max_siemens")
        return self


class HardwareConfig(Schema):
    """A hardware array: instruments by role, wiring, read-out and strategy."""

    instruments: InstrumentsConfig
    wiring: WiringConfig
    devices: DeviceNominalConfig
    read: ReadConfig = Field(default_factory=ReadConfig)
    pulse_period_seconds: Annotated[Seconds, Positive, Le(1000.0)] = 1.0e-6
    """Repetition period inside a burst; ``width / period`` is checked against the duty limit."""
    strategy: Literal["grouped", "naive"] = "grouped"
    """grouped: configure the pulser once per pulse shape; naive: once per device (benchmark)."""
    read_back: bool = False
    """Read each device right after its pulses (receipt ``details['read_back_siemens']``)."""
    retries: Annotated[int, Interval(ge=0, le=10)] = 1
    """Retries of idempotent commands (routing, reads) after a timeout or garbled reply."""
