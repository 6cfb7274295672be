"""From gradients to pulse counts: the pure part of a device update (no array involved).

The drift gradient ``grad + prior * w`` (the gradient of ``U / N``) times ``-lr`` is the
desired weight change; it becomes per-device push and pull counts within the budget
``K = 2^bits - 1``, rounded stochastically (unbiased) with draws from the caller's generator.
The counts per scheme are derived in :mod:`dwlab.sgld.controller`'s docstring.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
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
    return plan_updates(scheme, [TensorToPlan(grad, weight, scale, pulse, common_shift)],
                        lr=lr, prior=prior, budget=budget, generator=generator, work=work,
                        rounding=rounding).updates[0]


@dataclass(frozen=True)
class TensorToPlan:
    """One weight tensor's part of :func:`plan_updates`."""

    grad: torch.Tensor
    weight: torch.Tensor
    scale: DeviceScale
    pulse: PulseShape
    common_shift: torch.Tensor | None = None


@dataclass(frozen=True)
class PlannedTensors:
    """The plans of :func:`plan_updates`, one per tensor, and their counts end to end
    (``(2, n)`` for pairs, ``(n,)`` else; the plans' counts are views of these)."""

    updates: list[PlannedUpdate]
    push: torch.Tensor
    pull: torch.Tensor


def plan_updates(
    scheme: Scheme, tensors: Sequence[TensorToPlan], *, lr: float, prior: float, budget: int,
    generator: torch.Generator, work: Workspace | None = None, rounding: str = "stochastic",
) -> PlannedTensors:
    """:func:`plan_update` for several tensors (one torch device and dtype) at once: their
    weights laid end to end, planned in a few whole-vector operations (per-call overhead
    dominates small tensors), one plan per tensor. With one tensor it draws the same
    numbers as that tensor planned alone."""
    K = budget
    first = tensors[0].weight
    work = work or Workspace(first.device)
    pair = scheme.is_pair  # a differential pair per weight: array shape (2, *shape)
    sizes = [t.weight.numel() for t in tensors]
    n = sum(sizes)
    rows = (2, n) if pair else (n,)

    def joined(key: str, parts: list[torch.Tensor]) -> torch.Tensor:
        """``parts`` (one per tensor, weight-shaped) end to end, as one vector."""
        if len(parts) == 1:
            return parts[0].reshape(-1)
        return torch.cat([t.reshape(-1) for t in parts],
                         out=work.get(key, (n,), first.dtype))

    def steps(which: str) -> torch.Tensor | float:
        """Every device's ``mu_push`` or ``mu_pull``, laid out as the target (joined again
        only when a tensor's steps changed)."""
        values = [getattr(t.scale, which) for t in tensors]
        if len(values) == 1 and not isinstance(values[0], torch.Tensor):
            return values[0]  # one step for every device
        parts = []
        for v, t in zip(values, tensors, strict=True):
            shape = (2, *t.weight.shape) if pair else t.weight.shape
            part = torch.as_tensor(v, dtype=first.dtype, device=first.device)
            parts.append(part if part.shape == shape else part.expand(shape))
        return work.end_to_end(which, parts, 2 if pair else 1)

    # target: the desired conductance change of each device (S).
    target = work.get("target", rows, first.dtype)
    change = target[0] if pair else target
    torch.add(joined("grad", [t.grad for t in tensors]),
              joined("weight", [t.weight for t in tensors]), alpha=prior, out=change)
    segments = Segments.kept(work, sizes)
    alphas = [t.scale.alpha for t in tensors]
    if len(set(alphas)) == 1:
        alpha: float | torch.Tensor = alphas[0]
        change.mul_(-lr / ((2 if pair else 1) * alphas[0]))
    else:
        alpha = segments.per_weight(alphas, first.dtype)
        change.div_(alpha).mul_(-lr / (2 if pair else 1))
    mu_push, mu_pull = steps("mu_push"), steps("mu_pull")

    def derived(key: str, make: Callable[[], torch.Tensor | float]) -> torch.Tensor | float:
        """A constant of the steps, made again only when they change."""
        if isinstance(mu_push, torch.Tensor) and isinstance(mu_pull, torch.Tensor):
            return work.derived(key, [mu_push, mu_pull], lambda: torch.as_tensor(make()))
        return make()

    k_push = derived("k_mu_push", lambda: K * mu_push)  # the largest move each way
    k_pull = derived("k_mu_pull", lambda: K * mu_pull)
    if pair:
        torch.neg(target[0], out=target[1])
        shifts = [t.common_shift for t in tensors]
        if any(s is not None for s in shifts):
            shift = joined("common_shift", [torch.zeros_like(t.weight) if s is None else s
                                            for s, t in zip(shifts, tensors, strict=True)])
            target.add_(within_budget(shift, target, k_push, k_pull))
    # int64, as a plan holds its counts (no conversion per tensor)
    push = work.get("push", rows, torch.int64)
    pull = work.get("pull", rows, torch.int64)
    # x: the real-valued push count (push-pull) or signed count (gradient-only); unit: the
    # conductance change of one more count.
    x = target
    if scheme == Scheme.GRADIENT_ONLY:
        unit: torch.Tensor | float = torch.where(x > 0, mu_push, mu_pull)
        x.div_(unit)
        unit_sq = unit * unit
        lo, hi = -K, K
    elif scheme in (Scheme.PUSH_PULL, Scheme.PUSH_PULL_PAIR):
        unit = derived("unit", lambda: mu_push + mu_pull)
        unit_sq = derived("unit_sq", lambda: (mu_push + mu_pull) ** 2)
        x.add_(k_pull).div_(unit)
        lo, hi = 0, K
    else:
        raise ValueError(f"scheme '{scheme}' sends no pulses")
    clipped = segments.count_outside(x[0] if pair else x, lo, hi)  # weights, not devices
    variance = round_and_measure_(x, lo, hi, rounding, generator, work).mul_(unit_sq)
    per_weight = variance.sum(0) if pair else variance  # S^2 per weight
    rounding_var = segments.sums(per_weight.mul_(alpha * alpha))
    if scheme == Scheme.GRADIENT_ONLY:
        pulses = [int(v) for v in segments.sums(x.abs())]
        push.copy_(x.clamp(min=0))
        pull.copy_(x.clamp(max=0).neg_())
    else:
        push.copy_(x)
        torch.neg(push, out=pull).add_(K)
        pulses = [K * size * (2 if pair else 1) for size in sizes]
    parts = [(start, stop, (2, *t.weight.shape) if pair else tuple(t.weight.shape), t.pulse)
             for (_, start, stop), t in zip(segments.bounds(), tensors, strict=True)]
    plans = [PlannedUpdate(plan, pulses[i], clipped[i], rounding_var[i])
             for i, plan in enumerate(PulsePlan.split(push, pull, parts))]
    return PlannedTensors(plans, push, pull)


def within_budget(shift: torch.Tensor, target: torch.Tensor, k_push: torch.Tensor | float,
                  k_pull: torch.Tensor | float) -> torch.Tensor:
    """``shift`` cut, pair by pair, to what both devices can add to their ``target``
    (array shape ``(2, *shape)``) within ``[-K mu-, K mu+]`` (``k_pull``, ``k_push``); 0
    where a target is already outside."""
    # A hair inside the room, so that float rounding cannot take a count past the budget.
    up = torch.rsub(target, k_push).amin(0).clamp_(min=0).mul_(0.999)
    down = torch.add(target, k_pull).amin(0).clamp_(min=0).mul_(0.999)
    return torch.minimum(torch.maximum(shift, down.neg_()), up)


def round_and_measure_(x: torch.Tensor, lo: float, hi: float, rounding: str,
                       generator: torch.Generator, work: Workspace) -> torch.Tensor:
    """Round the counts ``x`` in place (clamped to ``[lo, hi]``); returns the variance the
    rounding adds to each count (count^2, a work tensor of ``x``'s shape): ``p (1 - p)`` for
    stochastic rounding, the squared rounding error for round-to-nearest."""
    x.clamp_(lo, hi)
    frac = work.get("frac", x.shape, x.dtype)
    variance = work.get("rounding_variance", x.shape, x.dtype)
    if rounding == "nearest":
        torch.round(x, out=frac)
        torch.sub(x, frac, out=variance).square_()
        x.copy_(frac)
        return variance
    if rounding != "stochastic":
        raise ValueError(f"unknown rounding {rounding!r}; known: stochastic, nearest")
    torch.floor(x, out=frac)
    torch.sub(x, frac, out=frac)  # p: the fractional part
    torch.addcmul(frac, frac, frac, value=-1.0, out=variance)  # p (1 - p)
    uniform = work.get("rounding", x.shape, x.dtype)
    torch.rand(x.shape, generator=generator, out=uniform)
    round_counts_(x, uniform, lo, hi)
    return variance


class Segments:
    """Weight tensors laid end to end (``sizes`` weights each): sums per tensor."""

    def __init__(self, sizes: list[int], device: torch.device):
        self.sizes = sizes
        self._index: torch.Tensor | None = None
        self._device = device
        self._per_weight: dict[tuple[tuple[float, ...], torch.dtype], torch.Tensor] = {}

    @staticmethod
    def kept(work: Workspace, sizes: list[int]) -> Segments:
        """The segments of ``sizes`` kept in ``work`` (their indices are made once)."""
        return work.keep(("segments", tuple(sizes)), lambda: Segments(sizes, work.device))

    def per_weight(self, values: Sequence[float], dtype: torch.dtype) -> torch.Tensor:
        """One value per tensor, repeated for each of its weights (made once per values)."""
        key = (tuple(float(v) for v in values), dtype)
        if key not in self._per_weight:
            self._per_weight[key] = self.expand(torch.tensor(key[0], dtype=dtype))
        return self._per_weight[key]

    def bounds(self) -> list[tuple[int, int, int]]:
        """``(number, start, stop)`` of every tensor."""
        out, start = [], 0
        for i, size in enumerate(self.sizes):
            out.append((i, start, start + size))
            start += size
        return out

    @property
    def index(self) -> torch.Tensor:
        """The tensor each weight belongs to."""
        if self._index is None:
            self._index = torch.repeat_interleave(
                torch.arange(len(self.sizes)), torch.tensor(self.sizes)).to(self._device)
        return self._index

    def expand(self, per_tensor: torch.Tensor) -> torch.Tensor:
        """One value per tensor, repeated for each of its weights."""
        return per_tensor.to(self._device)[self.index]

    def sums(self, values: torch.Tensor, at: torch.Tensor | None = None) -> list[float]:
        """Per tensor, the sum of ``values`` (one per weight, or one per weight index in
        ``at``), in float64."""
        if at is None:  # a sum per contiguous slice: far fewer passes than index_add_
            return [float(part.sum(dtype=torch.float64))
                    for part in values.reshape(-1).split(self.sizes)]
        index = self.index[at]
        total = torch.zeros(len(self.sizes), dtype=torch.float64, device=self._device)
        return total.index_add_(0, index, values.reshape(-1).double()).tolist()

    def count_outside(self, x: torch.Tensor, lo: float, hi: float) -> list[int]:
        """Per tensor, the desired steps beyond the pulse budget (one min/max pass when
        none is)."""
        low, high = torch.stack(torch.aminmax(x)).tolist()
        if low >= lo and high <= hi:
            return [0] * len(self.sizes)
        return [int(v) for v in self.sums((x < lo) | (x > hi))]
