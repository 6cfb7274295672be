"""Value types shared by every device array. Units live in the field names."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from dwlab.core.errors import PlanError, PulseLimitError

PUSH = +1
"""Polarity that moves a wall towards the track end of high conductance (G_P)."""
PULL = -1
"""Polarity that moves a wall towards the track end of low conductance (G_AP)."""


def _positive_finite(value: float, name: str) -> float:
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return value


@dataclass(frozen=True)
class PulseShape:
    """One rectangular pulse. Amplitude is a magnitude; polarity comes from push or pull."""

    amplitude_volts: float
    width_seconds: float

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "amplitude_volts", _positive_finite(self.amplitude_volts, "amplitude_volts")
        )
        object.__setattr__(
            self, "width_seconds", _positive_finite(self.width_seconds, "width_seconds")
        )


@dataclass(frozen=True)
class PulseLimits:
    """What an array accepts in one ``apply``. Checked before any I/O."""

    max_amplitude_volts: float
    min_width_seconds: float
    max_width_seconds: float
    max_pulses_per_device: int
    max_duty_cycle: float = 1.0

    def __post_init__(self) -> None:
        _positive_finite(self.max_amplitude_volts, "max_amplitude_volts")
        _positive_finite(self.min_width_seconds, "min_width_seconds")
        _positive_finite(self.max_width_seconds, "max_width_seconds")
        if self.min_width_seconds > self.max_width_seconds:
            raise ValueError("min_width_seconds exceeds max_width_seconds")
        if int(self.max_pulses_per_device) < 1:
            raise ValueError("max_pulses_per_device must be at least 1")
        if not 0 < self.max_duty_cycle <= 1:
            raise ValueError("max_duty_cycle must lie in (0, 1]")

    def check_shape(self, shape: PulseShape, what: str = "pulse") -> None:
        """Raise :class:`PulseLimitError` if ``shape`` lies outside these limits."""
        if shape.amplitude_volts > self.max_amplitude_volts:
            raise PulseLimitError(
                f"{what}: amplitude {shape.amplitude_volts:g} V exceeds the limit "
                f"{self.max_amplitude_volts:g} V"
            )
        if not self.min_width_seconds <= shape.width_seconds <= self.max_width_seconds:
            raise PulseLimitError(
                f"{what}: width {shape.width_seconds:g} s outside the allowed range "
                f"[{self.min_width_seconds:g}, {self.max_width_seconds:g}] s"
            )

    def check_plan(self, plan: PulsePlan) -> None:
        """Raise :class:`PulseLimitError` if ``plan`` breaks any limit."""
        self.check_shape(plan.push_shape, "push pulse")
        self.check_shape(plan.pull_shape, "pull pulse")
        if not plan.push.numel():
            return
        # Cheap bound first: the exact per-device maximum is needed only when it could fail.
        if int(plan.push.max()) + int(plan.pull.max()) <= self.max_pulses_per_device:
            return
        most = int(plan.total_per_device().max())
        if most > self.max_pulses_per_device:
            raise PulseLimitError(
                f"plan sends {most} pulses to one device; the limit is "
                f"{self.max_pulses_per_device} per apply"
            )


def _count_tensor(counts: Any, name: str) -> torch.Tensor:
    counts = torch.as_tensor(counts)
    if counts.is_floating_point() or counts.is_complex() or counts.dtype == torch.bool:
        raise PlanError(f"{name} counts must be integers, got dtype {counts.dtype}")
    if counts.numel() and int(counts.min()) < 0:
        raise PlanError(f"{name} counts must be non-negative")
    return counts


@dataclass(frozen=True)
class PulsePlan:
    """Per-device push and pull pulse counts for one ``apply``.

    ``push`` and ``pull`` are dense integer tensors with the array's shape. The array
    interleaves the two polarities as hardware would (see the twin and HardwareArray).
    """

    push: torch.Tensor
    pull: torch.Tensor
    push_shape: PulseShape
    pull_shape: PulseShape

    def __post_init__(self) -> None:
        push = _count_tensor(self.push, "push")
        pull = _count_tensor(self.pull, "pull")
        if push.shape != pull.shape:
            raise PlanError(
                f"push counts have shape {tuple(push.shape)} but pull counts {tuple(pull.shape)}"
            )
        object.__setattr__(self, "push", push)
        object.__setattr__(self, "pull", pull)

    @classmethod
    def uniform(cls, push: Any, pull: Any, shape: PulseShape) -> PulsePlan:
        """A plan with the same pulse shape for both polarities."""
        return cls(torch.as_tensor(push), torch.as_tensor(pull), shape, shape)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.push.shape)

    def total_per_device(self) -> torch.Tensor:
        return self.push + self.pull

    def total_pulses(self) -> int:
        return int(self.push.sum()) + int(self.pull.sum())

    def check_against(self, shape: tuple[int, ...], limits: PulseLimits) -> None:
        """Shape and limit check that every array runs before touching any state."""
        if self.shape != tuple(shape):
            raise PlanError(f"plan has shape {self.shape} but the array has shape {tuple(shape)}")
        limits.check_plan(self)


@dataclass
class PulseReceipt:
    """What an ``apply`` actually did."""

    push_applied: torch.Tensor
    pull_applied: torch.Tensor
    devices_clipped: int = 0
    """Devices whose wall reached a track end during this apply."""
    duration_seconds: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def pulses_total(self) -> int:
        return int(self.push_applied.sum()) + int(self.pull_applied.sum())


@dataclass
class Readout:
    """Conductances read from an array (or from the selected devices)."""

    conductance_siemens: torch.Tensor
    spread_siemens: torch.Tensor | None = None
    """Standard deviation over the averaged reads, when ``n_averages > 1``."""
    n_averages: int = 1


@dataclass(frozen=True)
class ArrayInfo:
    """Static description of a device array (``DeviceArray.describe()``)."""

    name: str
    backend: str
    shape: tuple[int, ...]
    conductance_min_siemens: float
    conductance_max_siemens: float
    limits: PulseLimits
    nominal_pulse: PulseShape
    """The pulse shape a controller uses unless told otherwise."""
    step_siemens: float
    """Nominal mean conductance change per nominal pulse, averaged over push and pull."""
    step_sigma_siemens: float
    """Nominal standard deviation of the conductance change per nominal pulse."""
    identity: dict[str, str] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def conductance_range_siemens(self) -> float:
        return self.conductance_max_siemens - self.conductance_min_siemens


Bursts = list[tuple[int, int]]


def interleaved(n_push: int, n_pull: int) -> Bursts:
    """The pulse order of a push-pull update, as hardware arrays send it and the twin
    applies it (``sim.physics`` in closed form): push and pull alternate while both remain,
    then the surplus follows in one burst. (Blocks of one polarity would drive walls into
    the track ends and lose the update.)"""
    pairs = min(n_push, n_pull)
    bursts: Bursts = [(PUSH, 1), (PULL, 1)] * pairs
    if n_push > pairs:
        bursts.append((PUSH, n_push - pairs))
    elif n_pull > pairs:
        bursts.append((PULL, n_pull - pairs))
    return bursts
