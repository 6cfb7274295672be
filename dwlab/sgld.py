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
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from dwlab.config import ScheduleConfig
from dwlab.types import ArrayInfo


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
    raise ValueError(f"unknown schedule kind {schedule.kind!r}")


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
    info: ArrayInfo, pulse_budget: int, step_size: float, alpha: float, *, pair: bool
) -> TemperatureMapping:
    """The temperature a given ``alpha`` implies: ``T = alpha^2 K c sigma_G^2 / (2 eps)``,
    with ``c`` devices per weight (1, or 2 for a pair)."""
    _check_info(info)
    if alpha <= 0 or step_size <= 0:
        raise ValueError("alpha and step_size must be positive")
    c = _devices_per_weight(pair)
    variance = alpha**2 * pulse_budget * c * info.step_sigma_siemens**2
    half_window = info.conductance_range_siemens * (1.0 if pair else 0.5)
    return TemperatureMapping(
        alpha=alpha, pulse_budget=pulse_budget, step_size=step_size,
        temperature=variance / (2.0 * step_size), noise_variance=variance,
        weight_per_pulse=alpha * info.step_siemens, weight_limit=alpha * half_window,
        pair=pair,
    )


def alpha_for_temperature(
    info: ArrayInfo, pulse_budget: int, step_size: float, temperature: float, *, pair: bool
) -> TemperatureMapping:
    """The ``alpha`` at which the device noise realises ``temperature`` at ``step_size``."""
    _check_info(info)
    if temperature <= 0:
        raise ValueError("the temperature mapping needs a positive temperature")
    c = _devices_per_weight(pair)
    alpha = math.sqrt(2.0 * step_size * temperature / (pulse_budget * c)) / info.step_sigma_siemens
    return temperature_for_alpha(info, pulse_budget, step_size, alpha, pair=pair)


def alpha_for_range(info: ArrayInfo, weight_scale: float, *, pair: bool) -> float:
    """``alpha`` at which ``weight_scale`` (e.g. 3 standard deviations of the initial
    weights) spans half the conductance window of one weight."""
    if weight_scale <= 0:
        raise ValueError("weight_scale must be positive")
    half_window = info.conductance_range_siemens * (1.0 if pair else 0.5)
    return weight_scale / half_window
