"""Estimates: what a protocol will do (pulse shapes, pulse counts, reads, waits), counted
from its parameters and the array's static description, and refused before any pulse when
it breaks a limit."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import torch

from dwlab.core.device import DeviceArray
from dwlab.core.errors import ProtocolError, PulseLimitError
from dwlab.core.types import ArrayInfo, PulseLimits, PulsePlan, PulseShape


@dataclass(frozen=True)
class Target:
    """What an estimate needs to know about an array: its static description, no I/O."""

    shape: tuple[int, ...]
    limits: PulseLimits
    nominal_pulse: PulseShape
    conductance_min_siemens: float
    conductance_max_siemens: float
    step_siemens: float

    @classmethod
    def from_info(cls, info: ArrayInfo) -> Target:
        return cls(tuple(info.shape), info.limits, info.nominal_pulse,
                   info.conductance_min_siemens, info.conductance_max_siemens, info.step_siemens)

    @property
    def size(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class Timing:
    """Assumed cost of one pulse and one device read, for duration estimates.

    Defaults suit a bench that routes each device through a switch matrix; a twin is far
    faster, so its estimates are upper bounds.
    """

    pulse_seconds: float = 2e-3
    read_seconds: float = 2e-3

    def validate(self) -> None:
        if self.pulse_seconds < 0 or self.read_seconds < 0:
            raise ValueError("timing values must be non-negative")


DEFAULT_TIMING = Timing()


@dataclass
class Estimate:
    """Everything a protocol will do, counted before it runs."""

    shapes: list[PulseShape] = field(default_factory=list)
    max_pulses_per_apply: int = 0
    """Most pulses one device receives in one ``apply``."""
    pulses: int = 0
    """Pulses over all devices (upper bound where the protocol adapts, e.g. re-centring)."""
    device_reads: int = 0
    """Single device reads (a read of n devices averaged k times counts n * k)."""
    wait_seconds: float = 0.0
    steps: int = 0

    def add_shape(self, shape: PulseShape) -> None:
        if shape not in self.shapes:
            self.shapes.append(shape)

    def add_apply(self, per_device: int, devices: int, count: int = 1) -> None:
        self.max_pulses_per_apply = max(self.max_pulses_per_apply, per_device)
        self.pulses += per_device * devices * count

    def add_reads(self, devices: int, n_averages: int, count: int = 1) -> None:
        self.device_reads += devices * n_averages * count

    def duration_seconds(self, timing: Timing) -> float:
        # Pulse widths (ns to us) are negligible next to the per-pulse overhead.
        return (self.pulses * timing.pulse_seconds + self.device_reads * timing.read_seconds
                + self.wait_seconds)

    def to_data(self, timing: Timing) -> dict[str, object]:
        return {
            "shapes": [dataclasses.asdict(s) for s in self.shapes],
            "max_pulses_per_apply": self.max_pulses_per_apply, "pulses": self.pulses,
            "device_reads": self.device_reads, "wait_seconds": self.wait_seconds,
            "steps": self.steps, "duration_seconds": self.duration_seconds(timing),
            "timing": dataclasses.asdict(timing),
        }


def check_estimate(estimate: Estimate, limits: PulseLimits, what: str,
                   max_duration_seconds: float | None = None,
                   timing: Timing = DEFAULT_TIMING) -> None:
    """Refuse (before any pulse) a protocol whose estimate breaks a limit."""
    for shape in estimate.shapes:
        limits.check_shape(shape, f"{what}: pulse {shape.amplitude_volts:g} V / "
                                  f"{shape.width_seconds:g} s")
    if estimate.max_pulses_per_apply > limits.max_pulses_per_device:
        raise PulseLimitError(
            f"{what}: sends {estimate.max_pulses_per_apply} pulses to one device in one apply; "
            f"the limit is {limits.max_pulses_per_device}"
        )
    duration = estimate.duration_seconds(timing)
    if max_duration_seconds is not None and duration > max_duration_seconds:
        raise ProtocolError(
            f"{what}: estimated duration {duration:.1f} s exceeds the allowed "
            f"{max_duration_seconds:.1f} s"
        )


def preflight(array: DeviceArray, info: ArrayInfo, estimate: Estimate, what: str) -> None:
    """Let an array that can check a plan without I/O (``check_plan``, e.g. the hardware
    array's duty-cycle check) veto every pulse shape and the largest burst up front."""
    check_plan = getattr(array, "check_plan", None)
    if not callable(check_plan):
        return
    counts = torch.full(info.shape, max(estimate.max_pulses_per_apply, 1), dtype=torch.long)
    for shape in estimate.shapes:
        try:
            check_plan(PulsePlan.uniform(counts, torch.zeros_like(counts), shape))
        except PulseLimitError as exc:
            raise PulseLimitError(f"{what}: {exc}") from None
