"""Device arrays: pulse shape, safety limits, the simulated twin, and the array section that
names its backend (a twin, or hardware described in :mod:`dwlab.config.hardware`)."""

from __future__ import annotations

from typing import Annotated, Literal

from annotated_types import Gt, Interval, Le
from pydantic import Field, field_validator, model_validator

from dwlab.config.convert import Schema
from dwlab.config.hardware import HardwareConfig
from dwlab.config.problems import KeyProblem
from dwlab.config.quantities import MAX_INT, Finite, Seconds, Volts, check_shape
from dwlab.core.types import PulseLimits

Positive = Gt(0)


class PulseConfig(Schema):
    amplitude_volts: Annotated[Volts, Positive]
    width_seconds: Annotated[Seconds, Positive]


class LimitsConfig(Schema):
    """Safety limits every plan is checked against before any I/O."""

    max_amplitude_volts: Annotated[Volts, Positive, Le(100.0)] = 5.0
    min_width_seconds: Annotated[Seconds, Positive, Le(1.0)] = 1e-9
    max_width_seconds: Annotated[Seconds, Positive, Le(1.0)] = 1e-6
    max_pulses_per_device: Annotated[int, Interval(ge=1, le=MAX_INT)] = 4096
    max_duty_cycle: Annotated[Finite, Interval(gt=0, le=1)] = 0.5

    @model_validator(mode="after")
    def _widths_ordered(self) -> LimitsConfig:
        if self.min_width_seconds > self.max_width_seconds:
            raise KeyProblem("min_width_seconds",
                             f"min_width_seconds {self.min_width_seconds:g} s exceeds "
                             f"max_width_seconds {self.max_width_seconds:g} s")
        return self

    def pulse_limits(self) -> PulseLimits:
        """These limits as the value an array checks its plans against."""
        return PulseLimits(**self.model_dump())


def torch_device_name(device: str) -> str:
    """'cpu', 'cuda' or 'cuda:N' (whether it exists is checked where a run starts)."""
    index = device.removeprefix("cuda").removeprefix(":")
    if not (device in ("cpu", "cuda") or device.startswith("cuda:") and index.isdigit()):
        raise ValueError(f"torch_device must be 'cpu' or 'cuda[:N]', got {device!r}")
    return device


class TwinConfig(Schema):
    """A simulated array: preset name, parameter overrides, optional calibration file."""

    preset: str = "continuous_dw"
    params: dict[str, Finite] = Field(default_factory=dict)
    calibration: str | None = None
    """Path (relative to the config file) of a calibration YAML written by ``dwlab calibrate``."""
    jump_table: str | None = None
    """Path (relative to the config file) of a jump table (``.npz``) that ``dwlab calibrate``
    offers on MISFIT: a twin replaying measured steps instead of the preset's physics."""
    torch_device: str = "cpu"

    _known_device = field_validator("torch_device")(torch_device_name)

    @model_validator(mode="after")
    def _one_source_of_physics(self) -> TwinConfig:
        if self.jump_table is not None and (self.calibration is not None or self.params):
            raise KeyProblem("jump_table", "jump_table replaces the preset's physics: it "
                                           "cannot be combined with calibration or params")
        return self


class ArrayConfig(Schema):
    """One named device array and the backend that implements it."""

    backend: Literal["twin", "hardware"] = "twin"
    shape: list[int] | None = None
    """Fixed shape (hardware arrays); twins sized by the controller leave it empty."""

    @field_validator("shape")
    @classmethod
    def _shape_fits(cls, shape: list[int] | None) -> list[int] | None:
        return None if shape is None else check_shape(shape)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    pulse: PulseConfig | None = None
    """Nominal pulse shape; checked against ``limits``."""
    twin: TwinConfig = Field(default_factory=TwinConfig)
    hardware: HardwareConfig | None = None
    """Instruments, wiring and read-out of a hardware array."""

    @model_validator(mode="after")
    def _pulse_within_limits(self) -> ArrayConfig:
        if self.pulse is not None:
            if self.pulse.amplitude_volts > self.limits.max_amplitude_volts:
                raise KeyProblem(
                    "pulse.amplitude_volts",
                    f"pulse.amplitude_volts {self.pulse.amplitude_volts:g} V exceeds "
                    f"limits.max_amplitude_volts {self.limits.max_amplitude_volts:g} V"
                )
            lo, hi = self.limits.min_width_seconds, self.limits.max_width_seconds
            if not lo <= self.pulse.width_seconds <= hi:
                raise KeyProblem(
                    "pulse.width_seconds",
                    f"pulse.width_seconds {self.pulse.width_seconds:g} s outside limits "
                    f"[{lo:g}, {hi:g}] s"
                )
        return self

    @model_validator(mode="after")
    def _hardware_complete(self) -> ArrayConfig:
        if self.backend != "hardware":
            return self
        if self.hardware is None:
            raise KeyProblem("hardware", "backend 'hardware' needs a 'hardware' section")
        if not self.shape:
            raise KeyProblem("shape", "backend 'hardware' needs a fixed 'shape'")
        try:
            self.hardware.wiring.paths(tuple(self.shape))
        except ValueError as exc:
            # a rule between two keys: named under the wiring, saying the shape too
            raise KeyProblem("hardware.wiring", f"for shape {list(self.shape)}: {exc}") from None
        period = self.hardware.pulse_period_seconds
        if self.pulse is not None and self.pulse.width_seconds / period > (
            self.limits.max_duty_cycle
        ):
            raise KeyProblem(
                "hardware.pulse_period_seconds",
                f"pulse width {self.pulse.width_seconds:g} s over hardware."
                f"pulse_period_seconds {period:g} s exceeds limits.max_duty_cycle "
                f"{self.limits.max_duty_cycle:g}"
            )
        return self
