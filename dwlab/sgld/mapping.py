"""Which array holds each weight tensor, at what scale ``alpha``, programmed how.

Weights with two or more dimensions (conv, linear) go to devices, each tensor to the array
named by the first mapping rule that matches its parameter name. ``alpha`` (weight per
siemens) comes from ``ControllerConfig.weight_scale``: 'range' fills half the conductance
window with ``weight_range`` standard deviations of the initial weights; 'temperature'
makes the devices' noise realise the configured temperature (see the controller's docs).
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Callable, Sequence

import torch

from dwlab.config import ControllerConfig, MappingRule
from dwlab.core.device import DeviceArray
from dwlab.core.errors import PlanError
from dwlab.core.types import ArrayInfo
from dwlab.sgld.maths import (
    UpdatePulse,
    alpha_for_range,
    alpha_for_temperature,
    temperature_for_alpha,
    update_pulse,
)
from dwlab.sgld.planner import check_budget
from dwlab.sgld.verify import program
from dwlab.sgld.weight import DeviceWeight

ArrayFactory = Callable[[str, tuple[int, ...], int], DeviceArray]
"""``(array name from the mapping, shape, seed_offset) -> DeviceArray``."""


def is_device_weight(param: torch.Tensor) -> bool:
    """Weights with two or more dimensions (conv, linear) go to devices."""
    return param.dim() >= 2


def array_for(name: str, mapping: Sequence[MappingRule], default: str = "main") -> str:
    """The array of parameter ``name``: the first rule whose fnmatch pattern matches."""
    for rule in mapping:
        if fnmatch.fnmatchcase(name, rule.match):
            return rule.array
    return default


def attach_weights(
    device_named: Sequence[tuple[str, torch.Tensor]], cfg: ControllerConfig, *,
    pair: bool, budget: int, step_size: float, factory: ArrayFactory,
    mapping: Sequence[MappingRule],
) -> list[DeviceWeight]:
    """Build an array for every tensor, check them all, then program each tensor's weights.

    Nothing is pulsed until every array has passed its checks (shape, limits, update pulse);
    on any failure every array built so far is put in its safe state.
    """
    built: list[tuple[str, str, torch.Tensor, DeviceArray, ArrayInfo]] = []
    try:
        for index, (name, p) in enumerate(device_named):
            array_name = array_for(name, mapping)
            array = factory(array_name, array_shape(p, pair), index)
            built.append((name, array_name, p, array, array.describe()))
        # Every check before any pulse reaches any array.
        for name, array_name, p, _array, info in built:
            if tuple(info.shape) != array_shape(p, pair):
                raise PlanError(
                    f"array '{array_name}' for parameter '{name}' has shape "
                    f"{tuple(info.shape)}, the controller needs {array_shape(p, pair)}"
                )
            check_budget(info, budget, cfg.update_bits, name)
        pulses = [checked_update_pulse(info, budget, cfg.update_range) for *_, info in built]
        weights = [
            bind(name, array_name, p, array, info, pulse, cfg, pair=pair, budget=budget,
                 step_size=step_size)
            for (name, array_name, p, array, info), pulse in zip(built, pulses, strict=True)
        ]
        for dw in weights:
            program(dw, cfg.program_iterations, cfg.read_averages, cfg.calibration_pulses)
    except BaseException:
        for _, _, _, array, _ in built:
            array.safe_state()
        raise
    return weights


def array_shape(param: torch.Tensor, pair: bool) -> tuple[int, ...]:
    return (2, *param.shape) if pair else tuple(param.shape)


def checked_update_pulse(info: ArrayInfo, budget: int, update_range: float | None
                         ) -> UpdatePulse:
    """The update pulse of an array (:func:`update_pulse`), refused outside its limits."""
    pulse = update_pulse(info, budget, update_range)
    info.limits.check_shape(pulse.shape, f"update pulse of array '{info.name}'")
    return pulse


def bind(
    name: str, array_name: str, p: torch.Tensor, array: DeviceArray, info: ArrayInfo,
    pulse: UpdatePulse, cfg: ControllerConfig, *, pair: bool, budget: int, step_size: float,
) -> DeviceWeight:
    """Tensor ``p`` on ``array``, with ``alpha`` from ``cfg.weight_scale`` (``step_size``:
    the SGLD ``eps`` the temperature mapping is made for)."""
    if cfg.weight_scale == "temperature":
        mapping = alpha_for_temperature(
            info, budget, step_size, cfg.temperature, pair=pair, pulse=pulse
        )
        alpha = mapping.alpha
    else:
        w = p.detach().float()
        std = float(w.std()) if w.numel() > 1 else 0.0
        if not std > 0:  # constant init: fall back to the fan-in scale
            std = 1.0 / math.sqrt(max(1, w[0].numel()))
        alpha = alpha_for_range(info, cfg.weight_range * std, pair=pair)
    g_lo, g_hi = info.conductance_min_siemens, info.conductance_max_siemens
    nominal = torch.full(array_shape(p, pair), pulse.step_siemens, device=p.device,
                         dtype=p.dtype)
    return DeviceWeight(
        name=name, array_name=array_name, param=p, array=array, pair=pair, alpha=alpha,
        g_mid=0.5 * (g_lo + g_hi), g_half=0.5 * (g_hi - g_lo),
        mu_push=nominal, mu_pull=nominal.clone(),
        sigma=pulse.step_sigma_siemens, pulse=pulse.shape,
    )


def mapping_report(weights: Sequence[DeviceWeight], budget: int, step_size: float
                   ) -> list[dict[str, object]]:
    """Per device-backed tensor: alpha, measured steps, window, the temperature it implies
    at ``step_size`` and how programming went."""
    rows: list[dict[str, object]] = []
    for dw in weights:
        info = dw.array.describe()
        implied = temperature_for_alpha(
            info, budget, step_size, dw.alpha, pair=dw.pair,
            pulse=UpdatePulse(dw.pulse, dw.pulse.width_seconds / info.nominal_pulse.width_seconds,
                              dw.mean_step, dw.sigma),
        )
        rows.append({
            "parameter": dw.name, "shape": list(dw.param.shape), **dw.meta(),
            **dw.precision(budget),
            "implied_temperature": implied.temperature, **(dw.program_report or {}),
        })
    return rows
