"""TwinArray: a calibrated software twin of a domain-wall array behind ``DeviceArray``.

Beyond ``DeviceArray`` the twin offers (for protocols, calibration and tests):

- ``twin.x``: per-device state in ``[0, 1]`` (wall position; the stored drive level for
  ``binary_dw``; 0/1 for ``binary_mtj``), on ``twin.torch_device``;
- ``twin.conductance()``: noise-free conductance (the mean read for ``binary_dw``);
- ``twin.step_moments(shape)``: per-device ``(mu_push, sigma_push, mu_pull, sigma_pull)``
  of one pulse of that shape, in track fractions (switching probability and Bernoulli
  spread for ``binary_mtj``);
- ``twin.apply(plan, reference=True)``: the slow pulse-by-pulse path (the default path is
  the closed form for walls far from the ends and an exact vectorised pulse-by-pulse
  path near them, see ``physics.apply_pulses_fast``; ``receipt.details`` says how many
  devices took it). ``multistate`` always goes pulse by pulse (walls settle at notches
  after every pulse), so it suits small arrays; ``binary_mtj`` uses an exact closed form;
- ``twin.advance_time(seconds)``: retention. Walls relax towards
  ``relaxation_target`` at ``relaxation_rate_per_second`` (default 0: no drift; pinned
  multi-state walls then settle at the nearest notch); MTJs flip thermally at rate
  ``exp(-Delta) / tau0``. ``twin.elapsed_seconds`` counts the time advanced.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import torch
from dwlab.sim import physics
from dwlab.sim.presets import MODELS, PRESETS, TwinParams

from dwlab.config import LimitsConfig
from dwlab.core.device import ArrayBase
from dwlab.core.tensors import laid_end_to_end
from dwlab.core.types import ArrayInfo, PulseLimits, PulsePlan, PulseReceipt, PulseShape, Readout

__all__ = ["DEFAULT_LIMITS", "MODELS", "PRESETS", "TwinArray", "TwinParams"]

DEFAULT_LIMITS = LimitsConfig().pulse_limits()
"""The limits of a twin built without a config: the config's defaults."""


def _spread(
    base: float, rel: float, shape: tuple[int, ...], gen: torch.Generator, device: torch.device
) -> torch.Tensor:
    """Per-device values ``base * (1 + rel * N(0,1))``, kept positive."""
    noise = torch.randn(shape, generator=gen, device=device, dtype=torch.float32)
    return (base * (1.0 + rel * noise)).clamp(min=base * 0.05 if base > 0 else 0.0)


def _end_to_end(workspace: dict[str, torch.Tensor], key: str, parts: list[torch.Tensor]
                ) -> torch.Tensor:
    """``parts`` end to end in the work tensor ``key``: one copy each, whatever their
    layout (a plan's counts may be strided views); no copy when they already lie end to
    end in one tensor (the walls after a batch)."""
    n = sum(part.numel() for part in parts)
    base = laid_end_to_end(parts)
    if base is not None:
        return base
    out = workspace.get(key)
    if out is None or out.numel() != n or out.dtype != parts[0].dtype \
            or out.device != parts[0].device:
        out = workspace[key] = torch.empty(n, dtype=parts[0].dtype, device=parts[0].device)
    start = 0
    for part in parts:
        out[start:start + part.numel()].view(part.shape).copy_(part)
        start += part.numel()
    return out


class TwinArray(ArrayBase):
    """Vectorised domain-wall array. State and noise live on ``torch_device``."""

    backend = "twin"

    def __init__(
        self,
        shape: tuple[int, ...] | int,
        params: TwinParams | None = None,
        *,
        preset: str = "continuous_dw",
        seed: int = 0,
        limits: PulseLimits = DEFAULT_LIMITS,
        nominal_pulse: PulseShape | None = None,
        torch_device: str | torch.device = "cpu",
        name: str = "twin",
    ):
        if preset not in PRESETS:
            raise ValueError(f"unknown twin preset '{preset}'; known: {', '.join(PRESETS)}")
        self.shape = (shape,) if isinstance(shape, int) else tuple(int(s) for s in shape)
        self.params = params if params is not None else PRESETS[preset]
        self.params.validate()
        self.model = self.params.model
        self.preset = preset
        self.seed = int(seed)
        self.limits = limits
        self.name = name
        self.torch_device = torch.device(torch_device)
        p = self.params
        self.nominal_pulse = nominal_pulse or PulseShape(
            p.nominal_amplitude_volts, p.nominal_width_seconds
        )
        limits.check_shape(self.nominal_pulse, "nominal pulse")
        self.generator = torch.Generator(device=self.torch_device)
        self.generator.manual_seed(self.seed)
        g, dev, s = self.generator, self.torch_device, self.shape
        # Device-to-device spread: drawn once per device, in a fixed order from the seed.
        self.mu_push = _spread(p.mu_push, p.mu_spread, s, g, dev)
        self.mu_pull = _spread(p.mu_pull, p.mu_spread, s, g, dev)
        self.sigma_push = _spread(p.sigma_push, p.sigma_spread, s, g, dev)
        self.sigma_pull = _spread(p.sigma_pull, p.sigma_spread, s, g, dev)
        self.v_th = _spread(p.v_th_volts, p.v_th_spread, s, g, dev)
        self.g_p = _spread(p.g_p_siemens, p.g_spread, s, g, dev)
        self.g_ap = torch.minimum(_spread(p.g_ap_siemens, p.g_spread, s, g, dev), self.g_p * 0.95)
        self.g_range = self.g_p - self.g_ap
        x0 = p.initial_position + p.initial_position_spread * torch.randn(
            s, generator=g, device=dev
        )
        self.x = x0.clamp(0.0, 1.0)
        self.notches: torch.Tensor | None = None
        if self.model == "multistate":
            self.notches = physics.notch_positions(p.n_states, p.notch_spread, s, g, dev)
            self.x = physics.nearest_notch(self.x, self.notches)
        if self.model == "binary_mtj":
            self.mtj_delta = _spread(p.mtj_delta, p.mtj_delta_spread, s, g, dev)
            self.mtj_ic0_push = _spread(p.mtj_ic0_push_amps, p.mtj_ic0_spread, s, g, dev)
            self.mtj_ic0_pull = _spread(p.mtj_ic0_pull_amps, p.mtj_ic0_spread, s, g, dev)
            # initial_position is the probability of starting in the P (1) state.
            self.x = (torch.rand(s, generator=g, device=dev) < self.x).float()
        self.pulses_applied = 0
        self.elapsed_seconds = 0.0
        self._moments_key: tuple[PulseShape, PulseShape] | None = None
        self._moments: tuple[torch.Tensor, ...] = ()
        self._workspace: dict[str, torch.Tensor] = {}  # scratch of the fast path
        self._batch_moments: tuple[list[torch.Tensor], tuple[torch.Tensor, ...]] = ([], ())
        self._nominal_step: tuple[Any, tuple[float, float]] = (None, (0.0, 0.0))

    # -- DeviceArray -------------------------------------------------------------------

    def describe(self) -> ArrayInfo:
        p = self.params
        key = (p, self.nominal_pulse)
        if self._nominal_step[0] != key:  # a controller asks every step: torch work
            self._nominal_step = (key, self._nominal_step_siemens())
        step, step_sigma = self._nominal_step[1]
        return ArrayInfo(
            name=self.name,
            backend=self.backend,
            shape=self.shape,
            conductance_min_siemens=p.g_ap_siemens,
            conductance_max_siemens=p.g_p_siemens,
            limits=self.limits,
            nominal_pulse=self.nominal_pulse,
            step_siemens=step,
            step_sigma_siemens=step_sigma,
            identity={"preset": self.preset, "model": self.model, "seed": str(self.seed),
                      "devices": str(self.size)},
        )

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    def step_moments(self, shape: PulseShape) -> tuple[torch.Tensor, ...]:
        """Per-device (mu_push, sigma_push, mu_pull, sigma_pull) for a pulse shape.

        For wall models these are the moments of one step of ``x``; for ``binary_mtj`` the
        switching probabilities and their Bernoulli standard deviations.
        """
        p = self.params
        if self.model == "binary_mtj":
            up = self._mtj_probability(shape, +1)
            down = self._mtj_probability(shape, -1)
            return up, (up * (1 - up)).sqrt(), down, (down * (1 - down)).sqrt()
        f = physics.drive_factor(
            shape.amplitude_volts, shape.width_seconds, self.v_th,
            p.nominal_amplitude_volts, p.nominal_width_seconds,
        )
        mu_push, sigma_push = physics.step_moments(self.mu_push, self.sigma_push, f)
        mu_pull, sigma_pull = physics.step_moments(self.mu_pull, self.sigma_pull, f)
        return mu_push, sigma_push, mu_pull, sigma_pull

    def _plan_moments(self, plan: PulsePlan) -> tuple[torch.Tensor, ...]:
        """(mu+, sigma+, mu-, sigma-, var+, var-) for a plan's pulse shapes, cached for the
        last pair of shapes (a training run sends the same shapes every step)."""
        key = (plan.push_shape, plan.pull_shape)
        if key != self._moments_key:
            self._moments = ()  # free the old cache before building the new one
            mu_push, sigma_push, _, _ = self.step_moments(plan.push_shape)
            _, _, mu_pull, sigma_pull = self.step_moments(plan.pull_shape)
            self._moments = (mu_push, sigma_push, mu_pull, sigma_pull,
                             sigma_push * sigma_push, sigma_pull * sigma_pull)
            self._moments_key = key
        return self._moments

    def apply(self, plan: PulsePlan, *, reference: bool = False) -> PulseReceipt:
        """Apply a plan (checked first: a refused plan changes nothing). ``reference=True``
        uses the pulse-by-pulse path for every device (slow; for tests)."""
        if self._fast_path and not reference:
            return TwinArray.apply_batch([self], [plan])[0]
        plan.check_against(self.shape, self.limits)
        push = plan.push.to(self.torch_device)
        pull = plan.pull.to(self.torch_device)
        mu_push, sigma_push, mu_pull, sigma_pull, _, _ = self._plan_moments(plan)
        g = self.generator
        if self.model == "binary_mtj":
            self.x = physics.two_state_pulses(self.x, push, pull, mu_push, mu_pull, g)
            touched = torch.zeros((), dtype=torch.bool)
        else:  # multistate (walls settle at notches after every pulse), or reference
            self.x, touched = physics.apply_pulses_reference(
                self.x, push, pull, mu_push, sigma_push, mu_pull, sigma_pull, g,
                notches=self.notches,
            )
        self.pulses_applied += plan.total_pulses()
        return PulseReceipt(
            push_applied=plan.push, pull_applied=plan.pull,
            devices_clipped=int(torch.count_nonzero(touched)),
            details={"model": self.model},
        )

    @property
    def _fast_path(self) -> bool:
        """Wall models take the closed form (exact near the ends), alone or in a batch."""
        return self.model not in ("binary_mtj", "multistate")

    @classmethod
    def apply_batch(cls, arrays: Sequence[TwinArray], plans: Sequence[PulsePlan]
                    ) -> list[PulseReceipt]:
        """Apply ``plans[i]`` to ``arrays[i]``: the wall models on one torch device as one
        flat array (one closed form, one near-end walk, the first array's random stream),
        the others one by one. Every plan is checked before any state changes."""
        for array, plan in zip(arrays, plans, strict=True):
            plan.check_against(array.shape, array.limits)
        receipts: dict[int, PulseReceipt] = {}
        together = [i for i, a in enumerate(arrays)
                    if a._fast_path and a.torch_device == arrays[0].torch_device]
        for i, array in enumerate(arrays):
            if i not in together:
                receipts[i] = array.apply(plans[i])
        if together:
            done = cls._apply_together([arrays[i] for i in together],
                                       [plans[i] for i in together])
            receipts.update(zip(together, done, strict=True))
        return [receipts[i] for i in range(len(arrays))]

    @staticmethod
    def _apply_together(arrays: list[TwinArray], plans: list[PulsePlan]
                        ) -> list[PulseReceipt]:
        lead, dev = arrays[0], arrays[0].torch_device
        moments = [a._plan_moments(plan) for a, plan in zip(arrays, plans, strict=True)]
        if len(arrays) == 1:
            x, push, pull = lead.x, plans[0].push.to(dev), plans[0].pull.to(dev)
            joined = moments[0]
        else:
            ws = lead._workspace
            x = _end_to_end(ws, "batch_x", [a.x for a in arrays])
            push = _end_to_end(ws, "batch_push", [p.push.to(dev) for p in plans])
            pull = _end_to_end(ws, "batch_pull", [p.pull.to(dev) for p in plans])
            joined = lead._joined_moments(moments)
        mu_push, sigma_push, mu_pull, sigma_pull, var_push, var_pull = joined
        stats: dict[str, Any] = {}
        new_x, touched = physics.apply_pulses_fast(
            x, push, pull, mu_push, sigma_push, mu_pull, sigma_pull, lead.generator,
            var_push=var_push, var_pull=var_pull, stats=stats, workspace=lead._workspace,
        )
        if len(arrays) == 1:
            lead.x = new_x
            lead.pulses_applied += plans[0].total_pulses()
            return [PulseReceipt(push_applied=plans[0].push, pull_applied=plans[0].pull,
                                 devices_clipped=int(torch.count_nonzero(touched)),
                                 details={"model": lead.model, **stats})]
        receipts, start, counts = [], 0, push.add_(pull)
        batch = {"arrays": len(arrays), **stats}
        for array, plan in zip(arrays, plans, strict=True):
            stop = start + array.size
            array.x = new_x[start:stop].view(array.shape)
            array.pulses_applied += int(counts[start:stop].sum())  # int64: exact
            receipts.append(PulseReceipt(
                push_applied=plan.push, pull_applied=plan.pull,
                devices_clipped=int(torch.count_nonzero(touched[start:stop])),
                details={"model": array.model, "batch": batch}))
            start = stop
        return receipts

    def _joined_moments(self, moments: list[tuple[torch.Tensor, ...]]
                        ) -> tuple[torch.Tensor, ...]:
        """The batch's per-device moments end to end, kept while the members' own cached
        moments are the same tensors (a training run batches the same arrays every step)."""
        key = [m[0] for m in moments]
        cached_key, cached = self._batch_moments
        if len(cached_key) != len(key) or any(
                a is not b for a, b in zip(cached_key, key, strict=True)):
            cached = tuple(torch.cat([m[k].reshape(-1) for m in moments]) for k in range(6))
            self._batch_moments = (key, cached)
        return cached

    def conductance(self) -> torch.Tensor:
        """Noise-free conductance: what the state sets (the mean read for ``binary_dw``)."""
        if self.model == "binary_dw":
            return self.g_ap + self.g_range * self._pass_probability(self.x)
        return torch.addcmul(self.g_ap, self.g_range, self.x)

    def read(self, n_averages: int = 1, devices: torch.Tensor | None = None) -> Readout:
        if int(n_averages) != n_averages or n_averages < 1:
            raise ValueError(f"n_averages must be a positive integer, got {n_averages!r}")
        n_averages = int(n_averages)
        sigma = self.params.read_noise_siemens
        gen = self.generator
        if self.model == "binary_dw":
            x, g_ap, g_range = (self._select(t, devices) for t in (self.x, self.g_ap, self.g_range))
            p = self._pass_probability(x)
            passed = physics.binomial_fraction(n_averages, p, gen)
            mean = g_ap + g_range * passed
            mean += sigma / math.sqrt(n_averages) * torch.randn(
                mean.shape, generator=gen, device=mean.device)
            spread = None
            if n_averages > 1:
                # Sample spread of N reads of g_ap or g_p (plus read noise).
                var = (g_range**2 * passed * (1 - passed)) * (n_averages / (n_averages - 1))
                spread = (var + sigma**2).sqrt()
            return Readout(mean, spread, n_averages)
        if n_averages == 1 and devices is None:
            # One read of every device: noise, then the conductance added in place.
            out = physics.normal_(torch.empty_like(self.x), gen, sigma)
            return Readout(out.addcmul_(self.g_range, self.x).add_(self.g_ap), None, 1)
        g = self._select(self.conductance(), devices)
        if n_averages == 1:
            noise = torch.randn(g.shape, generator=gen, device=g.device)
            return Readout(noise.mul_(sigma).add_(g), None, 1)
        reads = g.unsqueeze(0) + sigma * torch.randn(
            (n_averages, *g.shape), generator=gen, device=g.device
        )
        return Readout(reads.mean(dim=0), reads.std(dim=0), n_averages)

    def snapshot(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "preset": self.preset,
            "model": self.model,
            "seed": self.seed,
            "params": dataclasses.asdict(self.params),
            "shape": list(self.shape),
            "position": self.x.detach().cpu().clone(),
            "generator": self.generator.get_state(),
            "pulses_applied": self.pulses_applied,
            "elapsed_seconds": self.elapsed_seconds,
        }

    def restore(self, snapshot: dict[str, Any]) -> None:
        if (list(snapshot["shape"]) != list(self.shape) or snapshot["seed"] != self.seed
                or snapshot["params"] != dataclasses.asdict(self.params)):
            raise ValueError("snapshot belongs to a twin of another shape, seed or parameters")
        self.x = snapshot["position"].to(self.torch_device).clone()
        self.generator.set_state(snapshot["generator"])
        self.pulses_applied = int(snapshot["pulses_applied"])
        self.elapsed_seconds = float(snapshot.get("elapsed_seconds", 0.0))

    def safe_state(self) -> None:
        """A twin has no outputs to turn off."""

    # -- twin-only ---------------------------------------------------------------------

    def advance_time(self, seconds: float) -> None:
        """Let ``seconds`` pass without pulses (retention; see the module docstring)."""
        seconds = float(seconds)
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"seconds must be a non-negative finite number, got {seconds!r}")
        p = self.params
        if self.model == "binary_mtj":
            rate = 1.0 / (p.mtj_tau0_seconds * torch.exp(self.mtj_delta.double()))
            flip_p = -torch.expm1(-seconds * rate)
            u = torch.rand(self.shape, generator=self.generator, device=self.torch_device,
                           dtype=torch.float64)
            self.x = torch.where(u < flip_p, 1.0 - self.x, self.x)
        elif p.relaxation_rate_per_second > 0:
            self.x = physics.relax(self.x, p.relaxation_rate_per_second,
                                   p.relaxation_target, seconds)
            if self.notches is not None:
                self.x = physics.nearest_notch(self.x, self.notches)
        self.elapsed_seconds += seconds

    def _select(self, t: torch.Tensor, devices: torch.Tensor | None) -> torch.Tensor:
        if devices is None:
            return t
        idx = torch.as_tensor(devices, device=self.torch_device)
        if idx.is_floating_point() or idx.dtype == torch.bool:
            raise ValueError("devices must be integer flat indices")
        return t.reshape(-1)[idx]

    def _pass_probability(self, x: torch.Tensor) -> torch.Tensor:
        p = self.params
        w = p.drive_min + (p.drive_max - p.drive_min) * x
        return physics.pass_probability(w, p.pass_x0, p.pass_dx, p.pass_a)

    def _mtj_probability(self, shape: PulseShape, polarity: int) -> torch.Tensor:
        """Switching probability of one pulse: push AP -> P (current through G_AP), pull
        P -> AP (current through G_P)."""
        p = self.params
        if polarity > 0:
            current, ic0 = shape.amplitude_volts * self.g_ap, self.mtj_ic0_push
        else:
            current, ic0 = shape.amplitude_volts * self.g_p, self.mtj_ic0_pull
        return physics.mtj_switch_probability(
            shape.width_seconds, current, ic0, self.mtj_delta, p.mtj_tau0_seconds
        )

    def _nominal_step_siemens(self) -> tuple[float, float]:
        """Mean and spread of the conductance change of one nominal push, for nominal
        device parameters (what a controller plans with)."""
        p = self.params
        shape = self.nominal_pulse
        g_range = p.g_p_siemens - p.g_ap_siemens
        if self.model == "binary_mtj":
            current = shape.amplitude_volts * p.g_ap_siemens
            prob = float(physics.mtj_switch_probability(
                shape.width_seconds, torch.tensor(current, dtype=torch.float64),
                torch.tensor(p.mtj_ic0_push_amps, dtype=torch.float64),
                torch.tensor(p.mtj_delta, dtype=torch.float64), p.mtj_tau0_seconds))
            return prob * g_range, math.sqrt(prob * (1 - prob)) * g_range
        f = float(physics.drive_factor(
            shape.amplitude_volts, shape.width_seconds, torch.tensor(p.v_th_volts),
            p.nominal_amplitude_volts, p.nominal_width_seconds))
        mu = 0.5 * (p.mu_push + p.mu_pull) * f
        sigma = 0.5 * (p.sigma_push + p.sigma_pull) * math.sqrt(f)
        if self.model == "multistate":
            gap = 1.0 / (p.n_states - 1)
            prob = 0.5 * math.erfc(-(mu - gap / 2) / (sigma * math.sqrt(2))) if sigma > 0 else (
                float(mu > gap / 2))
            return prob * gap * g_range, math.sqrt(prob * (1 - prob)) * gap * g_range
        if self.model == "binary_dw":
            # Slope of the mean read with respect to the drive level, at mid-range.
            x = torch.tensor([0.5 - 1e-3, 0.5 + 1e-3], dtype=torch.float64)
            pr = self._pass_probability(x)
            slope = float(pr[1] - pr[0]) / 2e-3 * g_range
            return mu * slope, sigma * slope
        return mu * g_range, sigma * g_range
