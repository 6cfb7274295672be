"""From gradients to pulse counts: the pure part of a device update (no array involved).

The drift gradient ``grad + prior * w`` (the gradient of ``U / N``) times ``-lr`` is the
desired weight change; it becomes per-device push and pull counts within the budget
``K = 2^bits - 1``, rounded stochastically (unbiased) with draws from the caller's generator.
The counts per scheme are derived in :mod:`dwlab.sgld.controller`'s docstring.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dwlab.core.errors import PulseLimitError
from dwlab.core.schemes import Scheme
from dwlab.core.types import ArrayInfo, PulseLimits, PulsePlan, PulseShape
from dwlab.sgld.workspace import Workspace


@dataclass(frozen=True)
class DeviceScale:
    """What the planner needs to know of the devices holding one weight tensor.

    The steps are per device (tensors of the array's shape, measured while programming) or
    one number for every device.
    """

    alpha: float
    """Weight per siemens."""
    mu_push: float | torch.Tensor
    """Mean conductance change of one push (S)."""
    mu_pull: float | torch.Tensor
    """Mean conductance change of one pull (S)."""


@dataclass(frozen=True)
class PlannedUpdate:
    """The counts of one update, as a plan, and what planning them found."""

    plan: PulsePlan
    pulses: int
    """Pulses the plan sends."""
    steps_clipped: int
    """Desired steps beyond the pulse budget (clipped to it)."""
    rounding_variance: float
    """Weight variance the rounding of counts adds, summed over the tensor's weights
    (weight units^2): ``p (1 - p)`` pulse units^2 per rounded count with stochastic
    rounding, the squared rounding error with round-to-nearest."""


def round_counts_(x: torch.Tensor, uniform: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    """Clamp ``x`` to ``[lo, hi]`` and round it in place, unbiased, to ``floor(x)`` or
    ``floor(x) + 1`` with ``uniform`` draws in [0, 1).

    The second clamp is needed: in float32 ``hi + u`` rounds up to ``hi + 1`` for ``u``
    within about 2^-24 * hi of 1 (a 127-pulse budget then sent 128 and -1 pulses).
    """
    return x.clamp_(lo, hi).add_(uniform).floor_().clamp_(lo, hi)


def count_outside(x: torch.Tensor, lo: float, hi: float) -> int:
    """How many desired steps exceed the pulse budget (one min/max pass when none)."""
    low, high = torch.stack(torch.aminmax(x)).tolist()
    if low >= lo and high <= hi:
        return 0
    return int(torch.count_nonzero(x < lo)) + int(torch.count_nonzero(x > hi))


def check_budget(
    info: ArrayInfo, budget: int, update_bits: int, parameter: str,
    pulse: PulseShape | None = None,
) -> PulseLimits:
    """Refuse an array whose limits the plans for ``parameter`` would break (its nominal
    pulse, the update ``pulse``, ``budget`` pulses per device); returns those limits."""
    limits = info.limits
    limits.check_shape(info.nominal_pulse, f"nominal pulse of array '{info.name}'")
    if pulse is not None:
        limits.check_shape(pulse, f"update pulse of array '{info.name}'")
    if budget > limits.max_pulses_per_device:
        raise PulseLimitError(
            f"update_bits {update_bits} needs {budget} pulses per device and step, but array "
            f"'{info.name}' (parameter '{parameter}') allows {limits.max_pulses_per_device}"
        )
    return limits


def plan_update(
    scheme: Scheme, grad: torch.Tensor, weight: torch.Tensor, scale: DeviceScale, *,
    lr: float, prior: float, budget: int, pulse: PulseShape, generator: torch.Generator,
    work: Workspace | None = None, rounding: str = "stochastic",
    common_shift: torch.Tensor | None = None,
) -> PlannedUpdate:
    """The pulse plan that moves ``weight`` by ``-lr * (grad + prior * weight)`` in the mean.

    Every device is compensated with its own push and pull step: a single device gets
    ``n+ mu+ - (K - n+) mu- = dw / alpha``; each device of a differential pair targets half
    the change (``+dw / 2`` and ``-dw / 2``), so a pair at zero gradient stays put in the
    mean whatever the spread of its two devices. ``rounding`` 'stochastic' draws one uniform
    number per device from ``generator``; 'nearest' draws none. Neither ``grad`` nor
    ``weight`` is changed; the counts live in ``work`` (a fresh workspace by default), so a
    plan is valid until the next call with the same workspace.

    ``common_shift`` (pairs only; S, the weight's shape): a conductance change both devices
    of each pair aim at besides their halves of the weight change. It moves the pair's
    common mode, not its weight, and costs no pulse: it only changes how each device's
    ``K`` pulses split into pushes and pulls. It is cut to the room the weight change
    leaves in both devices' budgets, so it never clips the weight change.
    """
    K = budget
    work = work or Workspace(weight.device)
    pair = scheme.is_pair  # a differential pair per weight: array shape (2, *shape)
    array_shape = (2, *weight.shape) if pair else weight.shape
    # target: the desired conductance change of each device (S).
    target = work.get("target", array_shape, weight.dtype)
    if pair:
        torch.add(grad, weight, alpha=prior, out=target[0]).mul_(-lr / (2 * scale.alpha))
        torch.neg(target[0], out=target[1])
        if common_shift is not None:
            target.add_(within_budget(common_shift, target, scale, K))
    else:
        torch.add(grad, weight, alpha=prior, out=target).mul_(-lr / scale.alpha)
    push = work.get("push", array_shape, torch.int32)
    pull = work.get("pull", array_shape, torch.int32)
    # x: the real-valued push count (push-pull) or signed count (gradient-only); unit: the
    # conductance change of one more count.
    x = target
    if scheme == Scheme.GRADIENT_ONLY:
        unit = torch.where(x > 0, scale.mu_push, scale.mu_pull)
        x.div_(unit)
        lo, hi = -K, K
    elif scheme in (Scheme.PUSH_PULL, Scheme.PUSH_PULL_PAIR):
        unit = work.get("unit", array_shape, weight.dtype)
        unit.zero_().add_(scale.mu_push).add_(scale.mu_pull)
        x.add_(K * scale.mu_pull).div_(unit)
        lo, hi = 0, K
    else:
        raise ValueError(f"scheme '{scheme}' sends no pulses")
    clipped = count_outside(x[0] if pair else x, lo, hi)  # weights, not devices
    rounding_var = round_and_measure_(x, unit, lo, hi, rounding, generator, work)
    if scheme == Scheme.GRADIENT_ONLY:
        pulses = int(float(x.abs().sum()))
        push.copy_(x.clamp(min=0))
        pull.copy_(x.clamp(max=0).neg_())
    else:
        push.copy_(x)
        torch.neg(push, out=pull).add_(K)
        pulses = K * push.numel()
    return PlannedUpdate(PulsePlan(push, pull, pulse, pulse), pulses, clipped,
                         rounding_var * scale.alpha**2)


def within_budget(shift: torch.Tensor, target: torch.Tensor, scale: DeviceScale,
                  budget: int) -> torch.Tensor:
    """``shift`` cut, pair by pair, to what both devices can add to their ``target``
    (array shape ``(2, *shape)``) within ``[-K mu-, K mu+]``; 0 where a target is already
    outside."""
    # A hair inside the room, so that float rounding cannot take a count past the budget.
    up = (budget * torch.as_tensor(scale.mu_push) - target).amin(0).clamp_(min=0).mul_(0.999)
    down = (target + budget * torch.as_tensor(scale.mu_pull)).amin(0).clamp_(min=0).mul_(0.999)
    return torch.minimum(torch.maximum(shift, -down), up)


def round_and_measure_(x: torch.Tensor, unit: torch.Tensor, lo: float, hi: float,
                       rounding: str, generator: torch.Generator, work: Workspace) -> float:
    """Round the counts ``x`` in place (clamped to ``[lo, hi]``); returns the conductance
    variance the rounding adds, summed over devices (S^2), ``unit`` being each device's
    conductance change per count."""
    x.clamp_(lo, hi)
    frac = work.get("frac", x.shape, x.dtype)
    if rounding == "nearest":
        torch.round(x, out=frac)
        torch.sub(x, frac, out=x)  # x: the rounding error
        error = float(torch.sum((x * unit).square_()))
        x.copy_(frac)
        return error
    if rounding != "stochastic":
        raise ValueError(f"unknown rounding {rounding!r}; known: stochastic, nearest")
    torch.floor(x, out=frac)
    torch.sub(x, frac, out=frac)  # p: the fractional part
    variance = float(torch.sum(frac.mul(1 - frac).mul_(unit.square())))
    uniform = work.get("rounding", x.shape, x.dtype)
    torch.rand(x.shape, generator=generator, out=uniform)
    round_counts_(x, uniform, lo, hi)
    return variance
