"""SGLD arithmetic shared by the controller: step-size schedules and the temperature mapping.

Parametrisation (used everywhere in dwlab). The potential over weights ``theta`` given ``N``
training points is ``U = N * L_batch + |theta|^2 / (2 prior_sigma^2)``, ``L_batch`` the mean
minibatch loss. One SGLD step is

    theta <- theta - eps * grad U + sqrt(2 * eps * T) * xi,      xi ~ N(0, I)

with ``eps = lr / N``, so that the drift ``-lr * (grad L_batch + theta / (N prior_sigma^2))``
is an SGD step of rate ``lr`` on the mean loss (plus a weak weight decay), and the weight
noise per step has variance ``2 * eps * T = 2 * lr * T / N``.

Temperature mapping (science.md section 3). A device weight ``w = alpha * (G - G_ref)`` that
receives ``K`` pulses per step, each with conductance spread ``sigma_G``, gains weight noise
of variance ``alpha^2 * K * sigma_G^2`` per step (``2 K`` pulses for a differential pair).
Matching SGLD's ``2 * eps * T`` gives

    eps * T = alpha^2 * K * sigma_G^2 / 2        (one device per weight)
    eps * T = alpha^2 * K * sigma_G^2            (differential pair)

Fixed update range (``ControllerConfig.update_range``). ``n+ - n-`` takes ``K + 1`` values,
so the bits set the *resolution* of one update; its *range* (the largest update, ``K``
pulses of one polarity) is configured separately. The controller scales the pulse width
from the array's nominal pulse so that ``K`` pulses span the range at every precision. With
the domain-wall drive law (mean step and step variance both proportional to the width),
the per-pulse step is ``mu = s * mu_0`` and its spread ``sigma = sqrt(s) * sigma_0`` for a
width scale ``s``; the noise of one update, ``K sigma^2 = K s sigma_0^2``, then equals
``range * sigma_0^2 / mu_0`` whatever the bits: more bits refine the update without heating
the chain.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from dwlab.config import ScheduleConfig
from dwlab.core.errors import PulseLimitError
from dwlab.core.types import ArrayInfo, PulseShape


def pulse_budget(update_bits: int) -> int:
    """Pulses per device and step, ``K = 2^b - 1``: ``n+ - n-`` then takes ``2^b`` values."""
    if update_bits < 1:
        raise ValueError("update_bits must be at least 1")
    return 2**update_bits - 1


def learning_rate_at(lr: float, schedule: ScheduleConfig, step: int) -> float:
    """The rate ``lr_t`` at step ``step`` (0-based); see :class:`ScheduleConfig`."""
    if schedule.kind == "constant":
        return lr
    if schedule.kind == "polynomial":
        return lr * (1.0 + step / schedule.decay_steps) ** (-schedule.gamma)
    if schedule.kind == "cyclic":
        phase = (step % schedule.cycle_steps) / schedule.cycle_steps
        return lr * 0.5 * (1.0 + math.cos(math.pi * phase))
    if schedule.kind == "anneal":
        phase = min(step, schedule.decay_steps) / schedule.decay_steps
        floor = schedule.floor
        return lr * (floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * phase)))
    raise ValueError(f"unknown schedule kind {schedule.kind!r}")


@dataclass(frozen=True)
class UpdatePulse:
    """The pulse of every update of one array, and what one such pulse does."""

    shape: PulseShape
    width_scale: float
    """Width relative to the array's nominal pulse."""
    step_siemens: float
    """Mean conductance change of one pulse: ``width_scale * step at the nominal pulse``."""
    step_sigma_siemens: float
    """Its spread: ``sqrt(width_scale) * spread at the nominal pulse``."""


def update_pulse(info: ArrayInfo, pulse_budget: int, update_range: float | None) -> UpdatePulse:
    """The pulse whose ``pulse_budget`` mean steps span ``update_range`` of the conductance
    range (``None``: the nominal pulse unchanged). Only the width is scaled, from the
    nominal pulse, assuming the step grows linearly with width (the domain-wall drive law).

    Raises :class:`PulseLimitError`, naming the config keys, when the width leaves the
    array's limits.
    """
    nominal = info.nominal_pulse
    if update_range is None:
        return UpdatePulse(nominal, 1.0, info.step_siemens, info.step_sigma_siemens)
    if not 0 < update_range <= 1:
        raise ValueError(f"update_range must lie in (0, 1], got {update_range!r}")
    if info.step_siemens <= 0:
        raise ValueError(f"array '{info.name}' reports no mean step; cannot scale its pulse")
    scale = update_range * info.conductance_range_siemens / (pulse_budget * info.step_siemens)
    shape = PulseShape(nominal.amplitude_volts, nominal.width_seconds * scale)
    lo, hi = info.limits.min_width_seconds, info.limits.max_width_seconds
    if not lo <= shape.width_seconds <= hi:
        bound = "min_width_seconds" if shape.width_seconds < lo else "max_width_seconds"
        raise PulseLimitError(
            f"controller.update_range {update_range:g} at {pulse_budget} pulses per update "
            f"needs {shape.width_seconds:.3g} s pulses on array '{info.name}' (nominal "
            f"{nominal.width_seconds:.3g} s x {scale:.3g}), outside its limits "
            f"[{lo:.3g}, {hi:.3g}] s: change controller.update_range or update_bits, or "
            f"arrays.{info.name}.limits.{bound}"
        )
    return UpdatePulse(shape, scale, info.step_siemens * scale,
                       info.step_sigma_siemens * math.sqrt(scale))


@dataclass(frozen=True)
class TemperatureMapping:
    """How one device-backed tensor realises SGLD; every figure in weight units."""

    alpha: float
    """Weight per siemens: ``w = alpha * (G - G_ref)`` (or ``alpha * (G+ - G-)``)."""
    pulse_budget: int
    step_size: float
    """SGLD's ``eps`` the mapping was made for."""
    temperature: float
    """Temperature the device noise realises at ``step_size``."""
    noise_variance: float
    """Weight noise variance per step, ``2 * eps * T``."""
    weight_per_pulse: float
    """Mean weight change of one push (half a push-pull unit for a pair's difference)."""
    weight_limit: float
    """Largest ``|w|`` the conductance window holds (centred weights)."""
    pair: bool


def _devices_per_weight(pair: bool) -> int:
    return 2 if pair else 1


def _check_info(info: ArrayInfo) -> None:
    if info.step_sigma_siemens <= 0 or info.step_siemens <= 0:
        raise ValueError(
            f"array '{info.name}' reports step {info.step_siemens:g} S and spread "
            f"{info.step_sigma_siemens:g} S per pulse; both must be positive for push-pull SGLD"
        )


def temperature_for_alpha(
    info: ArrayInfo, pulse_budget: int, step_size: float, alpha: float, *, pair: bool,
    pulse: UpdatePulse | None = None,
) -> TemperatureMapping:
    """The temperature a given ``alpha`` implies: ``T = alpha^2 K c sigma_G^2 / (2 eps)``,
    with ``c`` devices per weight (1, or 2 for a pair) and ``sigma_G`` the spread of one
    ``pulse`` (default: the nominal pulse)."""
    _check_info(info)
    if alpha <= 0 or step_size <= 0:
        raise ValueError("alpha and step_size must be positive")
    pulse = pulse or update_pulse(info, pulse_budget, None)
    c = _devices_per_weight(pair)
    variance = alpha**2 * pulse_budget * c * pulse.step_sigma_siemens**2
    half_window = info.conductance_range_siemens * (1.0 if pair else 0.5)
    return TemperatureMapping(
        alpha=alpha, pulse_budget=pulse_budget, step_size=step_size,
        temperature=variance / (2.0 * step_size), noise_variance=variance,
        weight_per_pulse=alpha * pulse.step_siemens, weight_limit=alpha * half_window,
        pair=pair,
    )


def alpha_for_temperature(
    info: ArrayInfo, pulse_budget: int, step_size: float, temperature: float, *, pair: bool,
    pulse: UpdatePulse | None = None,
) -> TemperatureMapping:
    """The ``alpha`` at which the device noise of ``pulse`` (default: the nominal pulse)
    realises ``temperature`` at ``step_size``."""
    _check_info(info)
    if temperature <= 0:
        raise ValueError("the temperature mapping needs a positive temperature")
    pulse = pulse or update_pulse(info, pulse_budget, None)
    c = _devices_per_weight(pair)
    alpha = math.sqrt(2.0 * step_size * temperature / (pulse_budget * c)) / pulse.step_sigma_siemens
    return temperature_for_alpha(info, pulse_budget, step_size, alpha, pair=pair, pulse=pulse)


def alpha_for_range(info: ArrayInfo, weight_scale: float, *, pair: bool) -> float:
    """``alpha`` at which ``weight_scale`` (e.g. 3 standard deviations of the initial
    weights) spans half the conductance window of one weight."""
    if weight_scale <= 0:
        raise ValueError("weight_scale must be positive")
    half_window = info.conductance_range_siemens * (1.0 if pair else 0.5)
    return weight_scale / half_window
