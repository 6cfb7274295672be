"""The push-pull SGLD controller: a ``torch.optim.Optimizer`` that trains through devices.

Every weight tensor with ``dim >= 2`` (convolutions, linear layers) lives on its own
:class:`~dwlab.core.device.DeviceArray`, one device per weight (``w = alpha * (G - G_ref)``) or a
differential pair (``w = alpha * (G+ - G-)``, array shape ``(2, *w.shape)``). Biases and norm
parameters stay digital. The SGLD parametrisation and the temperature mapping are in
:mod:`dwlab.sgld.maths`: ``eps = lr / N``; drift ``-lr * (grad L_batch + theta / (N prior^2))``;
weight noise variance per step ``2 * eps * T``.

One step, per device-backed tensor:

1. desired weight change ``dw = -lr_t * (grad + theta / (N prior_sigma^2))``;
2. converted into pulse counts with a per-device budget ``K = 2^bits - 1`` and stochastic
   (unbiased) rounding. The bits set the update's resolution, ``update_range`` its range:
   every pulse has the width at which ``K`` mean steps span ``update_range`` of the
   conductance range (:func:`dwlab.sgld.update_pulse`), so the device noise per step does
   not depend on the bits:

   - ``push_pull``: ``n+ + n- = K`` on every device, ``n+`` chosen so the mean conductance
     change ``n+ mu+ - n- mu-`` equals ``dw / alpha`` (push/pull asymmetry compensated with the
     step sizes measured while programming). The noise ``K sigma^2`` does not depend on the
     gradient: it is the Langevin noise.
   - ``push_pull_pair``: device ``+`` gets ``(n+, n-)`` and device ``-`` gets ``(n-, n+)``, so
     the pair's difference moves by ``(n+ - n-)(mu+ + mu-)`` whatever the asymmetry;
     ``n+ - n-`` takes the ``K + 1`` values ``-K, -K+2, ..., K``. A pair with a device within
     ``recentre_margin`` of a track end is re-centred: both devices get the same extra
     common-mode count, which leaves the weight's mean unchanged (counted as events).
   - ``gradient_only``: ``n = round(dw / (alpha mu))`` in ``[-K, K]``, ``n+ = max(n, 0)``,
     ``n- = max(-n, 0)``: the naive scheme, whose noise grows with the gradient and vanishes
     at zero gradient.

3. the plan is applied, the devices are read back, and the weights the devices actually hold
   are written into the parameters, so any torch model trains unchanged.

Digital parameters get float SGLD with the same step size and temperature (``float_sgld``,
and the digital part of the device schemes) or SGD with the prior as weight decay
(``float_sgd``).

Weight scale (``ControllerConfig.weight_scale``). The default, 'range', sets ``alpha`` per
tensor from its initial weights so that ``weight_range`` standard deviations fill half the
conductance window: the weights must fit the window or training saturates, whatever the
temperature. The device physics then *implies* the temperature, reported every step in
``last_stats['effective_temperature']``. 'temperature' sets ``alpha`` from the mapping
``eps T = alpha^2 K c sigma_G^2 / 2`` (``c`` = 1, or 2 for pairs) so the devices realise the
configured temperature exactly; the window then follows. With a decaying schedule the
physical noise per step stays fixed, so the effective temperature rises as ``eps`` falls.

Core module: it never imports ``dwlab.sim``, ``dwlab.drivers`` or ``dwlab.app.backends``;
arrays come from the injected ``array_factory``.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from dwlab.config import ControllerConfig, MappingRule
from dwlab.core.device import DeviceArray
from dwlab.core.errors import PlanError, PulseLimitError
from dwlab.core.schemes import Scheme
from dwlab.core.types import ArrayInfo, PulseLimits, PulsePlan, PulseShape
from dwlab.sgld.maths import (
    UpdatePulse,
    alpha_for_range,
    alpha_for_temperature,
    learning_rate_at,
    pulse_budget,
    temperature_for_alpha,
    update_pulse,
)

ArrayFactory = Callable[[str, tuple[int, ...], int], DeviceArray]
"""``(array name from the mapping, shape, seed_offset) -> DeviceArray``."""


SATURATION_MARGIN = 0.05
"""A device within this fraction of the conductance range of a track end counts as saturated."""
PROGRAM_MARGIN = 0.02
"""Initial targets are kept this fraction of the range away from the track ends."""
CALIBRATION_PULSES = 8
"""Pushes (then pulls) per device that measure an array's mean steps before programming."""

STAT_KEYS = (
    "pulses_sent", "devices_clipped", "saturated_devices", "recentred_pairs",
    "steps_clipped", "step_size", "lr", "effective_temperature",
)


def is_device_weight(param: torch.Tensor) -> bool:
    """Weights with two or more dimensions (conv, linear) go to devices."""
    return param.dim() >= 2


def array_for(name: str, mapping: Sequence[MappingRule], default: str = "main") -> str:
    """The array of parameter ``name``: the first rule whose fnmatch pattern matches."""
    for rule in mapping:
        if fnmatch.fnmatchcase(name, rule.match):
            return rule.array
    return default


def round_counts_(x: torch.Tensor, uniform: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    """Clamp ``x`` to ``[lo, hi]`` and round it in place, unbiased, to ``floor(x)`` or
    ``floor(x) + 1`` with ``uniform`` draws in [0, 1).

    The second clamp is needed: in float32 ``hi + u`` rounds up to ``hi + 1`` for ``u``
    within about 2^-24 * hi of 1 (a 127-pulse budget then sent 128 and -1 pulses).
    """
    return x.clamp_(lo, hi).add_(uniform).floor_().clamp_(lo, hi)


@dataclass
class DeviceWeight:
    """One weight tensor and the device array that holds it."""

    name: str
    array_name: str
    param: torch.Tensor
    array: DeviceArray
    pair: bool
    alpha: float
    """Weight per siemens."""
    g_mid: float
    """Centre of the nominal conductance window (``G_ref`` of single devices)."""
    g_half: float
    """Half the nominal conductance range."""
    mu_push: float
    """Mean conductance change of one push (S), measured while programming."""
    mu_pull: float
    sigma: float
    """Conductance spread of one update pulse (S), from ``describe()`` scaled to its width."""
    pulse: PulseShape
    """The update pulse (:func:`dwlab.sgld.update_pulse`)."""
    last_read: torch.Tensor
    """Conductances of the last read-back (array shape, on the parameter's device)."""
    program_report: dict[str, float] = field(default_factory=dict)
    near_edge: torch.Tensor | None = None
    """Flat indices of devices within the edge margin at the last read-back."""
    edge_distance: torch.Tensor | None = None
    """``|G - g_mid|`` of those devices."""
    buffers: dict[str, torch.Tensor] = field(default_factory=dict)
    """Reused work tensors of the update (allocation is costly at 22 M devices)."""

    @property
    def n_weights(self) -> int:
        return self.param.numel()

    def write_weights(self) -> None:
        """Set the parameter to the weights the devices hold (from ``last_read``)."""
        g = self.last_read
        with torch.no_grad():
            if self.pair:
                torch.sub(g[0], g[1], out=self.param.data)
            else:
                torch.sub(g, self.g_mid, out=self.param.data)
            self.param.data.mul_(self.alpha)

    def target_conductance(self, weights: torch.Tensor) -> torch.Tensor:
        """Conductances that represent ``weights``, kept inside the window."""
        lo = self.g_mid - self.g_half * (1 - 2 * PROGRAM_MARGIN)
        hi = self.g_mid + self.g_half * (1 - 2 * PROGRAM_MARGIN)
        if self.pair:
            half = weights / (2 * self.alpha)
            target = torch.stack((self.g_mid + half, self.g_mid - half))
        else:
            target = self.g_mid + weights / self.alpha
        return target.clamp_(lo, hi)

    def read(self, n_averages: int) -> torch.Tensor:
        g = self.array.read(n_averages=n_averages).conductance_siemens
        return g.to(self.param.device, self.param.dtype)

    def accept_read(self, g: torch.Tensor, edge_fraction: float) -> None:
        """Take a read-back: remember it, find devices near the track ends, set the weights.

        ``edge_fraction`` (of the range) must cover every margin the controller asks about
        later (saturation, re-centring), which then look only at this small subset.
        """
        self.last_read = g
        dist = self.buffer("distance", g.shape, g.dtype)
        torch.sub(g, self.g_mid, out=dist).abs_()
        edge = self.g_half * (1 - 2 * edge_fraction)
        self.near_edge = (dist.view(-1) > edge).nonzero().squeeze(1)
        self.edge_distance = dist.view(-1)[self.near_edge]
        self.write_weights()

    def buffer(self, key: str, shape: torch.Size | tuple[int, ...], dtype: torch.dtype):
        buf = self.buffers.get(key)
        if buf is None or buf.shape != shape or buf.dtype != dtype:
            buf = torch.empty(shape, dtype=dtype, device=self.param.device)
            self.buffers[key] = buf
        return buf

    def meta(self) -> dict[str, Any]:
        return {
            "array": self.array_name, "pair": self.pair, "alpha": self.alpha,
            "g_mid": self.g_mid, "g_half": self.g_half, "mu_push": self.mu_push,
            "mu_pull": self.mu_pull, "sigma": self.sigma,
            "pulse_width_seconds": self.pulse.width_seconds,
        }


class SGLDController(torch.optim.Optimizer):
    """SGLD through device arrays (or in float), as a torch optimizer.

    Build it with :func:`build_optimizer`. After ``step()``, ``last_stats`` holds plain
    numbers: ``pulses_sent``, ``devices_clipped`` (walls that touched a track end),
    ``saturated_devices`` (within 5 % of the range of an end after the step),
    ``recentred_pairs``, ``steps_clipped`` (desired steps beyond the pulse budget),
    ``step_size`` (SGLD's ``eps = lr_t / N``), ``lr`` (``lr_t``) and
    ``effective_temperature`` (the device weights' mean temperature this step:
    ``alpha^2 sigma_G^2 * pulses per weight / (2 eps)``; 0 for the float schemes).
    """

    def __init__(
        self,
        named_params: Iterable[tuple[str, torch.Tensor]],
        cfg: ControllerConfig,
        *,
        dataset_size: int,
        array_factory: ArrayFactory | None = None,
        mapping: Sequence[MappingRule] = (),
        seed: int = 0,
    ):
        if cfg.scheme not in Scheme.names():
            raise ValueError(f"unknown scheme {cfg.scheme!r}; known: {', '.join(Scheme.names())}")
        if dataset_size is None or int(dataset_size) < 1:
            raise ValueError(f"dataset_size must be a positive integer, got {dataset_size!r}")
        named = [(n, p) for n, p in named_params if p.requires_grad]
        if not named:
            raise ValueError("the model has no trainable parameters")
        self.cfg = cfg
        self.scheme = Scheme(cfg.scheme)
        self.dataset_size = int(dataset_size)
        self.pulse_budget = pulse_budget(cfg.update_bits)
        self.seed = int(seed)
        on_devices = self.scheme.uses_devices
        device_named = [(n, p) for n, p in named if on_devices and is_device_weight(p)]
        digital_named = [(n, p) for n, p in named if not (on_devices and is_device_weight(p))]
        groups = []
        if device_named:
            groups.append({"params": [p for _, p in device_named], "kind": "device"})
        if digital_named:
            groups.append({"params": [p for _, p in digital_named], "kind": "digital"})
        super().__init__(groups, {"lr": cfg.lr})
        self.digital = digital_named
        self.weights: list[DeviceWeight] = []
        self._step_count = 0
        self._generators: dict[str, torch.Generator] = {}
        for _, p in named:
            self._generator(p.device)
        self.last_stats: dict[str, float] = dict.fromkeys(STAT_KEYS, 0)
        self._edge_fraction = max(cfg.recentre_margin, SATURATION_MARGIN)
        if device_named:
            if array_factory is None:
                raise ValueError(f"scheme '{self.scheme}' needs an array_factory")
            self._attach_arrays(device_named, array_factory, mapping)

    # -- construction ----------------------------------------------------------------

    def _generator(self, device: torch.device) -> torch.Generator:
        key = str(device)
        if key not in self._generators:
            gen = torch.Generator(device=device)
            gen.manual_seed(self.seed + 7919 * len(self._generators))
            self._generators[key] = gen
        return self._generators[key]

    def _attach_arrays(
        self, device_named: list[tuple[str, torch.Tensor]], factory: ArrayFactory,
        mapping: Sequence[MappingRule],
    ) -> None:
        pair = self.scheme.is_pair
        built: list[tuple[str, str, torch.Tensor, DeviceArray, ArrayInfo]] = []
        try:
            for index, (name, p) in enumerate(device_named):
                array_name = array_for(name, mapping)
                shape = (2, *p.shape) if pair else tuple(p.shape)
                array = factory(array_name, shape, index)
                built.append((name, array_name, p, array, array.describe()))
            # Every check before any pulse reaches any array.
            for name, array_name, _p, _array, info in built:
                if tuple(info.shape) != tuple(
                    (2, *_p.shape) if pair else tuple(_p.shape)
                ):
                    raise PlanError(
                        f"array '{array_name}' for parameter '{name}' has shape "
                        f"{tuple(info.shape)}, the controller needs "
                        f"{(2, *_p.shape) if pair else tuple(_p.shape)}"
                    )
                self._check_budget(info, name)
            pulses = [self._update_pulse(info) for *_, info in built]
            eps0 = self.learning_rate(0) / self.dataset_size
            for (name, array_name, p, array, info), pulse in zip(built, pulses, strict=True):
                self.weights.append(
                    self._bind(name, array_name, p, array, info, pulse, pair, eps0))
            for dw in self.weights:
                self._program(dw)
        except BaseException:
            for _, _, _, array, _ in built:
                array.safe_state()
            raise

    def _update_pulse(self, info: ArrayInfo) -> UpdatePulse:
        pulse = update_pulse(info, self.pulse_budget, self.cfg.update_range)
        info.limits.check_shape(pulse.shape, f"update pulse of array '{info.name}'")
        return pulse

    def _check_budget(
        self, info: ArrayInfo, name: str, pulse: PulseShape | None = None
    ) -> PulseLimits:
        """The plans this controller builds stay within ``info.limits``; checked up front."""
        limits = info.limits
        limits.check_shape(info.nominal_pulse, f"nominal pulse of array '{info.name}'")
        if pulse is not None:
            limits.check_shape(pulse, f"update pulse of array '{info.name}'")
        if self.pulse_budget > limits.max_pulses_per_device:
            raise PulseLimitError(
                f"update_bits {self.cfg.update_bits} needs {self.pulse_budget} pulses per "
                f"device and step, but array '{info.name}' (parameter '{name}') allows "
                f"{limits.max_pulses_per_device}"
            )
        return limits

    def _bind(
        self, name: str, array_name: str, p: torch.Tensor, array: DeviceArray,
        info: ArrayInfo, pulse: UpdatePulse, pair: bool, eps0: float,
    ) -> DeviceWeight:
        if self.cfg.weight_scale == "temperature":
            mapping = alpha_for_temperature(
                info, self.pulse_budget, eps0, self.cfg.temperature, pair=pair, pulse=pulse
            )
            alpha = mapping.alpha
        else:
            w = p.detach().float()
            std = float(w.std()) if w.numel() > 1 else 0.0
            if not std > 0:  # constant init: fall back to the fan-in scale
                std = 1.0 / math.sqrt(max(1, w[0].numel()))
            alpha = alpha_for_range(info, self.cfg.weight_range * std, pair=pair)
        g_lo, g_hi = info.conductance_min_siemens, info.conductance_max_siemens
        return DeviceWeight(
            name=name, array_name=array_name, param=p, array=array, pair=pair, alpha=alpha,
            g_mid=0.5 * (g_lo + g_hi), g_half=0.5 * (g_hi - g_lo),
            mu_push=pulse.step_siemens, mu_pull=pulse.step_siemens,
            sigma=pulse.step_sigma_siemens, pulse=pulse.shape,
            last_read=torch.empty(0),
        )

    def _program(self, dw: DeviceWeight) -> None:
        """Program-and-verify the initial weights, then write back what the devices hold.

        First the array's mean push and pull steps (its asymmetry) are measured; then each
        round reads every device, converts the remaining error into pulses of one polarity
        and applies them in one vectorised plan.
        """
        cap = dw.array.describe().limits.max_pulses_per_device
        target = dw.target_conductance(dw.param.detach().to(torch.float32))
        target = target.to(dw.param.device, dw.param.dtype)
        g = self._measure_steps(dw, min(CALIBRATION_PULSES, cap))
        pulses = 2 * min(CALIBRATION_PULSES, cap) * g.numel()
        rounds = 0
        for rounds in range(1, self.cfg.program_iterations + 1):
            err = target - g
            n = torch.where(err > 0, err / dw.mu_push, err / dw.mu_pull).round_()
            n.clamp_(-cap, cap)
            if not bool(n.any()):
                rounds -= 1
                break
            push = n.clamp(min=0).to(torch.int32)
            pull = (-n).clamp(min=0).to(torch.int32)
            dw.array.apply(PulsePlan(push, pull, dw.pulse, dw.pulse))
            pulses += int(push.sum()) + int(pull.sum())
            g = dw.read(self.cfg.read_averages)
        dw.accept_read(g, self._edge_fraction)
        err_w = (g - target) * dw.alpha
        dw.program_report = {
            "rounds": rounds, "pulses": pulses,
            "rms_error_weight": float(err_w.pow(2).mean().sqrt()),
            "weight_window": dw.alpha * dw.g_half * (2 if dw.pair else 1),
        }

    def _measure_steps(self, dw: DeviceWeight, k: int) -> torch.Tensor:
        """Measure the array's mean push and pull step: ``k`` pushes, then ``k`` pulls, on
        every device away from the track ends. Returns the last read-back.

        An estimate is kept only when plausible (within 5x of the nominal step from
        ``describe()``); otherwise the nominal step stays.
        """
        reads = [dw.read(self.cfg.read_averages)]
        away = (reads[0] - dw.g_mid).abs() < 0.8 * dw.g_half
        ones = torch.full(reads[0].shape, k, dtype=torch.int32, device=reads[0].device)
        zeros = torch.zeros_like(ones)
        for push, pull in ((ones, zeros), (zeros, ones)):
            dw.array.apply(PulsePlan(push, pull, dw.pulse, dw.pulse))
            reads.append(dw.read(self.cfg.read_averages))
        if bool(away.any()):
            nominal = dw.mu_push
            up = float((reads[1] - reads[0])[away].mean()) / k
            down = float((reads[1] - reads[2])[away].mean()) / k
            if nominal / 5 < up < nominal * 5 and nominal / 5 < down < nominal * 5:
                dw.mu_push, dw.mu_pull = up, down
        return reads[2]

    # -- the step --------------------------------------------------------------------

    def learning_rate(self, step: int | None = None) -> float:
        return learning_rate_at(
            self.cfg.lr, self.cfg.schedule, self._step_count if step is None else step
        )

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        lr = self.learning_rate()
        eps = lr / self.dataset_size
        prior = 1.0 / (self.dataset_size * self.cfg.prior_sigma**2)
        for group in self.param_groups:
            group["lr"] = lr
        # Checks first: nothing moves (no RNG draw, no pulse) if a gradient is not finite or
        # an array refuses the plan.
        self._check_gradients_finite()
        active = [dw for dw in self.weights if dw.param.grad is not None]
        caps = [self._check_budget(dw.array.describe(), dw.name, dw.pulse) for dw in active]
        totals: dict[str, float] = dict.fromkeys(STAT_KEYS, 0.0)
        temperature_sum = 0.0
        weights_sum = 0
        try:
            for dw, limits in zip(active, caps, strict=True):
                stats = self._device_update(dw, lr, prior, limits)
                for key in ("pulses_sent", "devices_clipped", "saturated_devices",
                            "recentred_pairs", "steps_clipped"):
                    totals[key] += stats[key]
                temperature_sum += dw.alpha**2 * dw.sigma**2 * stats["pulses_sent"]
                weights_sum += dw.n_weights
        except BaseException:
            for dw in self.weights:
                dw.array.safe_state()
            raise
        self._digital_update(lr, prior)
        self._step_count += 1
        totals["step_size"] = eps
        totals["lr"] = lr
        totals["effective_temperature"] = (
            temperature_sum / (2 * eps * weights_sum) if weights_sum else 0.0
        )
        self.last_stats = {
            k: (int(v) if k not in ("step_size", "lr", "effective_temperature") else float(v))
            for k, v in totals.items()
        }
        return loss

    def _check_gradients_finite(self) -> None:
        """Refuse NaN/inf gradients, naming the parameter (they would become pulse counts)."""
        names = {id(p): n for n, p in self.digital}
        names.update({id(dw.param): dw.name for dw in self.weights})
        grads = [(names[id(p)], p.grad) for group in self.param_groups for p in group["params"]
                 if p.grad is not None]
        if not grads:
            return
        flags = [torch.isfinite(g).all() for _, g in grads]
        finite = torch.stack([f.to(flags[0].device) for f in flags])  # one sync, not one each
        if bool(finite.all()):
            return
        name, grad = grads[int((~finite).nonzero()[0])]
        bad = int((~torch.isfinite(grad)).sum())
        raise PlanError(
            f"gradient of parameter '{name}' has {bad} non-finite (NaN/inf) entries at step "
            f"{self._step_count + 1}; no pulse was sent. The training diverged: lower "
            "controller.lr"
        )

    def _digital_update(self, lr: float, prior: float) -> None:
        noise_scale = 0.0
        if self.scheme != "float_sgd" and self.cfg.temperature > 0:
            noise_scale = math.sqrt(2.0 * lr * self.cfg.temperature / self.dataset_size)
        for _, p in self.digital:
            if p.grad is None:
                continue
            p.mul_(1.0 - lr * prior).add_(p.grad, alpha=-lr)
            if noise_scale:
                noise = torch.randn(
                    p.shape, generator=self._generator(p.device), device=p.device, dtype=p.dtype
                )
                p.add_(noise, alpha=noise_scale)

    def _device_update(
        self, dw: DeviceWeight, lr: float, prior: float, limits: PulseLimits
    ) -> dict[str, float]:
        K = self.pulse_budget
        gen = self._generator(dw.param.device)
        shape = dw.param.shape
        # x: the real-valued push count (push-pull) or signed count (gradient-only).
        x = dw.buffer("x", shape, dw.param.dtype)
        torch.add(dw.param.grad, dw.param, alpha=prior, out=x)  # grad of U / N
        rounding = dw.buffer("rounding", shape, dw.param.dtype)
        torch.rand(shape, generator=gen, out=rounding)
        push = dw.buffer("push", dw.last_read.shape, torch.int32)
        pull = dw.buffer("pull", dw.last_read.shape, torch.int32)
        recentred = 0
        extra_pulses = 0.0
        if self.scheme == "gradient_only":
            x.mul_(-lr / dw.alpha)  # desired conductance change (S)
            x.mul_(torch.where(x > 0, 1.0 / dw.mu_push, 1.0 / dw.mu_pull))
            clipped = self._count_outside(x, -K, K)
            round_counts_(x, rounding, -K, K)
            pulses = float(x.abs().sum())
            torch.clamp(x, min=0, out=rounding)
            push.copy_(rounding)
            torch.clamp(x, max=0, out=rounding)
            pull.copy_(rounding.neg_())
        else:
            mu_sum = dw.mu_push + dw.mu_pull
            if dw.pair:  # n+ = dw / (2 alpha (mu+ + mu-)) + K / 2
                scale, offset = -lr / (2 * dw.alpha * mu_sum), K / 2
            else:  # n+ mu+ - (K - n+) mu- = dw / alpha
                scale, offset = -lr / (dw.alpha * mu_sum), K * dw.mu_pull / mu_sum
            x.mul_(scale).add_(offset)
            clipped = self._count_outside(x, 0, K)
            round_counts_(x, rounding, 0, K)
            if dw.pair:
                push[0].copy_(x)
                torch.neg(push[0], out=push[1]).add_(K)
                pull[0].copy_(push[1])
                pull[1].copy_(push[0])
                recentred, extra_pulses = self._recentre(dw, push, pull, limits)
            else:
                push.copy_(x)
                torch.neg(push, out=pull).add_(K)
            pulses = K * push.numel() + extra_pulses
        receipt = dw.array.apply(PulsePlan(push, pull, dw.pulse, dw.pulse))
        dw.accept_read(dw.read(self.cfg.read_averages), self._edge_fraction)
        saturated_edge = dw.g_half * (1 - 2 * SATURATION_MARGIN)
        saturated = torch.count_nonzero(dw.edge_distance > saturated_edge)
        return {
            "pulses_sent": pulses, "devices_clipped": receipt.devices_clipped,
            "saturated_devices": int(saturated), "recentred_pairs": recentred,
            "steps_clipped": clipped,
        }

    @staticmethod
    def _count_outside(x: torch.Tensor, lo: float, hi: float) -> int:
        """How many desired steps exceed the pulse budget (one min/max pass when none)."""
        low, high = torch.stack(torch.aminmax(x)).tolist()
        if low >= lo and high <= hi:
            return 0
        return int(torch.count_nonzero(x < lo)) + int(torch.count_nonzero(x > hi))

    def _recentre(
        self, dw: DeviceWeight, push: torch.Tensor, pull: torch.Tensor, limits: PulseLimits
    ) -> tuple[int, float]:
        """Move both devices of pairs near a track end by the same common-mode count.

        Uses the last read-back. A pair counts when one device is within
        ``recentre_margin`` of an end *and* its common mode is off-centre by more than that
        margin (a pair near the ends only because its weight is large cannot be helped).
        The count brings the pair's mean conductance back to the window centre; it adds
        pulses (and their noise) but leaves the weight's mean alone. Returns the number of
        re-centred pairs and the extra pulses sent.
        """
        if dw.near_edge is None or dw.near_edge.numel() == 0:
            return 0, 0.0
        margin = 2 * self.cfg.recentre_margin * dw.g_half
        near = dw.near_edge[dw.edge_distance > dw.g_half - margin]
        pairs = torch.unique(near.remainder(dw.n_weights))
        if pairs.numel() == 0:
            return 0, 0.0
        g = dw.last_read.view(2, -1)
        common = 0.5 * (g[0, pairs] + g[1, pairs]) - dw.g_mid
        off_centre = common.abs() > margin
        pairs, common = pairs[off_centre], common[off_centre]
        cap = limits.max_pulses_per_device - self.pulse_budget
        m = (common / (0.5 * (dw.mu_push + dw.mu_pull))).round_().clamp_(-cap, cap)
        m = m.to(push.dtype)
        m_pull = m.clamp(min=0)
        m_push = (-m).clamp(min=0)
        push_flat, pull_flat = push.view(2, -1), pull.view(2, -1)
        for side in (0, 1):
            push_flat[side].index_add_(0, pairs, m_push)
            pull_flat[side].index_add_(0, pairs, m_pull)
        events, pulses = torch.stack((torch.count_nonzero(m), m.abs().sum())).tolist()
        return int(events), 2.0 * float(pulses)

    # -- state -----------------------------------------------------------------------

    @property
    def arrays(self) -> dict[str, DeviceArray]:
        """Device arrays by parameter name."""
        return {dw.name: dw.array for dw in self.weights}

    @property
    def step_count(self) -> int:
        return self._step_count

    def mapping_report(self) -> list[dict[str, Any]]:
        """Per device-backed tensor: alpha, measured steps, window, implied temperature."""
        eps = self.learning_rate() / self.dataset_size
        rows = []
        for dw in self.weights:
            info = dw.array.describe()
            implied = temperature_for_alpha(
                info, self.pulse_budget, eps, dw.alpha, pair=dw.pair,
                pulse=UpdatePulse(dw.pulse, dw.pulse.width_seconds
                                  / info.nominal_pulse.width_seconds, dw.mu_push, dw.sigma),
            )
            rows.append({
                "parameter": dw.name, "shape": list(dw.param.shape), **dw.meta(),
                "implied_temperature": implied.temperature, **dw.program_report,
            })
        return rows

    def device_snapshots(self) -> dict[str, dict[str, Any]]:
        """Every array's ``snapshot()``, by parameter name (posterior samples)."""
        return {dw.name: dw.array.snapshot() for dw in self.weights}

    def load_device_snapshots(self, snapshots: dict[str, dict[str, Any]]) -> None:
        """Restore stored array states and rewrite the weights from what the devices hold."""
        self._check_names(snapshots, "device snapshots")
        for dw in self.weights:
            dw.array.restore(snapshots[dw.name])
            dw.accept_read(dw.read(self.cfg.read_averages), self._edge_fraction)

    def _check_names(self, named: dict[str, Any], what: str) -> None:
        expected = {dw.name for dw in self.weights}
        if set(named) != expected:
            missing = sorted(expected - set(named))
            extra = sorted(set(named) - expected)
            raise ValueError(f"{what} do not match the model: missing {missing}, extra {extra}")

    def state_dict(self) -> dict[str, Any]:
        sd = super().state_dict()
        sd["dwlab"] = {
            "scheme": self.scheme.value,
            "step": self._step_count,
            "generators": {k: g.get_state() for k, g in self._generators.items()},
            "weights": {
                dw.name: {
                    **dw.meta(),
                    "last_read": dw.last_read.detach().cpu().clone(),
                    "snapshot": dw.array.snapshot(),
                }
                for dw in self.weights
            },
            "last_stats": dict(self.last_stats),
        }
        return sd

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state_dict = dict(state_dict)
        ours = state_dict.pop("dwlab", None)
        if ours is None:
            raise ValueError("not a dwlab controller state (no 'dwlab' entry)")
        if ours["scheme"] != self.scheme:
            raise ValueError(
                f"state is for scheme '{ours['scheme']}', this controller runs '{self.scheme}'"
            )
        self._check_names(ours["weights"], "saved device weights")
        super().load_state_dict(state_dict)
        self._step_count = int(ours["step"])
        for key, gen_state in ours["generators"].items():
            self._generator(torch.device(key)).set_state(gen_state)
        for dw in self.weights:
            saved = ours["weights"][dw.name]
            dw.array.restore(saved["snapshot"])
            for key in ("alpha", "g_mid", "g_half", "mu_push", "mu_pull", "sigma"):
                setattr(dw, key, float(saved[key]))
            last_read = saved["last_read"].to(dw.param.device, dw.param.dtype).clone()
            dw.accept_read(last_read, self._edge_fraction)
        self.last_stats = dict(ours.get("last_stats", self.last_stats))

    def close(self) -> None:
        """Put every array in its safe state (outputs off, switches open)."""
        errors = []
        for dw in self.weights:
            try:
                dw.array.safe_state()
            except Exception as exc:  # keep going: every array must be made safe
                errors.append(exc)
        if errors:
            raise errors[0]

    def __enter__(self) -> SGLDController:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def build_optimizer(
    model: torch.nn.Module,
    cfg: ControllerConfig,
    *,
    dataset_size: int,
    array_factory: ArrayFactory | None = None,
    mapping: Sequence[MappingRule] = (),
    seed: int = 0,
) -> SGLDController:
    """The controller for ``model``: device weights on arrays from ``array_factory``.

    ``cfg.dataset_size``, when set, overrides ``dataset_size`` (SGLD's N). ``seed`` seeds the
    controller's own random draws (stochastic rounding, software noise).
    """
    n = cfg.dataset_size if cfg.dataset_size is not None else dataset_size
    return SGLDController(
        model.named_parameters(), cfg, dataset_size=n, array_factory=array_factory,
        mapping=mapping, seed=seed,
    )
