"""Value types shared by every device array. Units live in the field names."""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from dwlab.core.errors import PlanError, PulseLimitError

PUSH = +1
"""Polarity that moves a wall towards the track end of high conductance (G_P)."""
PULL = -1
"""Polarity that moves a wall towards the track end of low conductance (G_AP)."""
MAX_COUNT = 2**63 - 1
"""The largest pulse count a plan can hold: counts are int64 from the plan on."""


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
        try:
            count = operator.index(self.max_pulses_per_device)
        except TypeError:
            raise ValueError(f"max_pulses_per_device must be an integer, got "
                             f"{self.max_pulses_per_device!r}") from None
        if not 1 <= count <= MAX_COUNT:
            raise ValueError(f"max_pulses_per_device must lie in [1, 2**63 - 1], got {count}")
        object.__setattr__(self, "max_pulses_per_device", count)
        if not 0 < self.max_duty_cycle <= 1:
            raise ValueError("max_duty_cycle must lie in (0, 1]")

    def check_shape(self, shape: PulseShape, what: str = "pulse") -> None:
        """Raise :class:`PulseLimitError` if ``shape`` lies outside these limits."""
        if not shape.amplitude_volts <= self.max_amplitude_volts:  # NaN fails too
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
        """Raise :class:`PulseLimitError` (or :class:`PlanError`) if ``plan`` breaks any limit.

        The counts are checked again here, as they are now (a plan's tensors can be edited
        in place after it was built), and the per-device total is compared in a form that
        cannot overflow: ``pull > limit`` or ``push > limit - pull``.
        """
        self.check_shape(plan.push_shape, "push pulse")
        self.check_shape(plan.pull_shape, "pull pulse")
        push, most_push = _as_counts(plan.push, "push")
        pull, most_pull = _as_counts(plan.pull, "pull")
        _same_shape(push, pull)
        limit = self.max_pulses_per_device
        if most_push + most_pull <= limit:  # Python integers: no wrap-around
            return
        over = (pull > limit) | (push > limit - pull.clamp(max=limit))
        if not bool(over.any()):
            return
        device = _first(over)
        n_push, n_pull = int(push[device]), int(pull[device])
        raise PulseLimitError(
            f"plan sends {n_push} push + {n_pull} pull = {n_push + n_pull} pulses to device "
            f"{_name(device)}; the limit is {limit} per apply"
        )


def _first(mask: torch.Tensor) -> tuple[int, ...]:
    """Index of the first true entry of ``mask`` (which has one)."""
    return tuple(int(i) for i in torch.nonzero(mask)[0])


def _name(index: tuple[int, ...]) -> str:
    return str(index[0]) if len(index) == 1 else str(index)


def _as_counts(values: Any, name: str) -> tuple[torch.Tensor, int]:
    """``values`` as a dense int64 tensor of pulse counts, converted losslessly, and its
    largest entry (0 when empty); else :class:`PlanError` saying what and where."""
    try:
        counts = torch.as_tensor(values)
    except (TypeError, ValueError, RuntimeError, OverflowError) as exc:
        raise PlanError(f"{name} counts are not an array of integers: {exc}") from None
    if counts.layout != torch.strided:
        raise PlanError(f"{name} counts must be a dense tensor, got layout {counts.layout}")
    if counts.is_floating_point() or counts.is_complex() or counts.dtype == torch.bool:
        raise PlanError(f"{name} counts must be integers, got dtype {counts.dtype}")
    # Every integer dtype widens to int64 losslessly, except uint64 from 2**63 on: those
    # wrap to negative values, which the sign check below refuses (naming the true value).
    wide = counts.to(torch.long)
    if not wide.numel():
        return wide, 0
    low, high = (int(v) for v in torch.aminmax(wide))
    if low < 0:
        device = _first(wide < 0)
        value = int(wide[device])
        if counts.dtype == torch.uint64:
            raise PlanError(f"{name} count {value + 2**64} at device {_name(device)} exceeds "
                            f"the largest possible count {MAX_COUNT}")
        raise PlanError(f"{name} count {value} at device {_name(device)} is negative")
    return wide, high


def _same_shape(push: torch.Tensor, pull: torch.Tensor) -> None:
    if push.shape != pull.shape:
        raise PlanError(
            f"push counts have shape {tuple(push.shape)} but pull counts {tuple(pull.shape)}"
        )


@dataclass(frozen=True)
class PulsePlan:
    """Per-device push and pull pulse counts for one ``apply``.

    ``push`` and ``pull`` are dense integer tensors with the array's shape, of any integer
    dtype; the plan holds them as int64 (converted losslessly, or refused with
    :class:`PlanError`: floats, bools, negative counts, counts past ``MAX_COUNT``). The array
    interleaves the two polarities as hardware would (see the twin and HardwareArray).
    """

    push: torch.Tensor
    pull: torch.Tensor
    push_shape: PulseShape
    pull_shape: PulseShape

    def __post_init__(self) -> None:
        for what in ("push_shape", "pull_shape"):
            if not isinstance(getattr(self, what), PulseShape):
                raise PlanError(f"{what} must be a PulseShape, got {getattr(self, what)!r}")
        push, _ = _as_counts(self.push, "push")
        pull, _ = _as_counts(self.pull, "pull")
        _same_shape(push, pull)
        object.__setattr__(self, "push", push)
        object.__setattr__(self, "pull", pull)

    @classmethod
    def uniform(cls, push: Any, pull: Any, shape: PulseShape) -> PulsePlan:
        """A plan with the same pulse shape for both polarities."""
        return cls(push, pull, shape, shape)

    @classmethod
    def split(cls, push: Any, pull: Any,
              parts: Sequence[tuple[int, int, tuple[int, ...], PulseShape]]) -> list[PulsePlan]:
        """Plans for stretches of the last dimension of ``push`` and ``pull``: each part
        ``(start, stop, shape, pulse)`` sends ``pulse`` both ways with the counts
        ``[..., start:stop]`` viewed as ``shape``. The counts are converted and checked once
        as a whole (one plan's check, not one per part)."""
        if not parts:
            return []
        for *_, pulse in parts:
            if not isinstance(pulse, PulseShape):
                raise PlanError(f"push_shape must be a PulseShape, got {pulse!r}")
        whole = cls(push, pull, parts[0][3], parts[0][3])
        plans = []
        for start, stop, shape, pulse in parts:
            plan = cls.__new__(cls)  # the counts are checked above: no second scan per part
            object.__setattr__(plan, "push", whole.push[..., start:stop].view(shape))
            object.__setattr__(plan, "pull", whole.pull[..., start:stop].view(shape))
            object.__setattr__(plan, "push_shape", pulse)
            object.__setattr__(plan, "pull_shape", pulse)
            plans.append(plan)
        return plans

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.push.shape)

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
