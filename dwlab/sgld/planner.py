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
    """What the planner needs to know of the devices holding one weight tensor."""

    alpha: float
    """Weight per siemens."""
    mu_push: float
    """Mean conductance change of one push (S)."""
    mu_pull: float
    """Mean conductance change of one pull (S)."""


@dataclass(frozen=True)
class PlannedUpdate:
    """The counts of one update, as a plan, and what planning them found."""

    plan: PulsePlan
    pulses: int
    """Pulses the plan sends."""
    steps_clipped: int
    """Desired steps beyond the pulse budget (clipped to it)."""


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
    work: Workspace | None = None,
) -> PlannedUpdate:
    """The pulse plan that moves ``weight`` by ``-lr * (grad + prior * weight)`` in the mean.

    Draws one uniform number per weight from ``generator`` (stochastic rounding). Neither
    ``grad`` nor ``weight`` is changed; the counts live in ``work`` (a fresh workspace by
    default), so a plan is valid until the next call with the same workspace.
    """
    K = budget
    work = work or Workspace(weight.device)
    shape = weight.shape
    pair = scheme.is_pair  # a differential pair per weight: array shape (2, *shape)
    array_shape = (2, *shape) if pair else shape
    # x: the real-valued push count (push-pull) or signed count (gradient-only).
    x = work.get("x", shape, weight.dtype)
    torch.add(grad, weight, alpha=prior, out=x)  # grad of U / N
    rounding = work.get("rounding", shape, weight.dtype)
    torch.rand(shape, generator=generator, out=rounding)
    push = work.get("push", array_shape, torch.int32)
    pull = work.get("pull", array_shape, torch.int32)
    if scheme == Scheme.GRADIENT_ONLY:
        x.mul_(-lr / scale.alpha)  # desired conductance change (S)
        x.mul_(torch.where(x > 0, 1.0 / scale.mu_push, 1.0 / scale.mu_pull))
        clipped = count_outside(x, -K, K)
        round_counts_(x, rounding, -K, K)
        pulses = int(float(x.abs().sum()))
        torch.clamp(x, min=0, out=rounding)
        push.copy_(rounding)
        torch.clamp(x, max=0, out=rounding)
        pull.copy_(rounding.neg_())
    elif scheme in (Scheme.PUSH_PULL, Scheme.PUSH_PULL_PAIR):
        mu_sum = scale.mu_push + scale.mu_pull
        if pair:  # n+ = dw / (2 alpha (mu+ + mu-)) + K / 2
            factor, offset = -lr / (2 * scale.alpha * mu_sum), K / 2
        else:  # n+ mu+ - (K - n+) mu- = dw / alpha
            factor, offset = -lr / (scale.alpha * mu_sum), K * scale.mu_pull / mu_sum
        x.mul_(factor).add_(offset)
        clipped = count_outside(x, 0, K)
        round_counts_(x, rounding, 0, K)
        if pair:  # device + gets (n+, n-), device - gets (n-, n+)
            push[0].copy_(x)
            torch.neg(push[0], out=push[1]).add_(K)
            pull[0].copy_(push[1])
            pull[1].copy_(push[0])
        else:
            push.copy_(x)
            torch.neg(push, out=pull).add_(K)
        pulses = K * push.numel()
    else:
        raise ValueError(f"scheme '{scheme}' sends no pulses")
    return PlannedUpdate(PulsePlan(push, pull, pulse, pulse), pulses, clipped)
