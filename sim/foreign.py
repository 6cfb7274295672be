"""Device models whose physics the twin's Gaussian-step model does not contain.

They exist to test calibration: records measured on them must come out MISFIT, and the
jump-table twin must follow them. Each is a :class:`~dwlab.sim.twin.TwinArray` (so a
``DeviceArray``, with the twin's conductance range, spreads and seeds) whose pulses, or
reads, follow other physics. Pulses are applied one at a time in the hardware order
(:func:`dwlab.core.types.interleaved`), vectorised over devices; they suit the small arrays
of characterisation runs, not training at scale.

- ``heavy_tails``: step noise from a Student t distribution with 3 degrees of freedom,
  scaled to the twin's step variance (same mean and spread, far heavier tails);
- ``creep``: thermally activated motion below the threshold: the drive factor rises as a
  softplus of ``(A - v_th) / creep_volts`` instead of switching on at ``v_th``;
- ``pinning``: strong pinning sites at random positions per device; a pulse below a site's
  depinning amplitude stops the wall there (it cannot cross in that direction);
- ``telegraph``: every device's read carries a slow two-level fluctuator (random
  telegraph noise) several times the Gaussian read noise, so averaging reads does not
  remove it.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from dwlab.sim.presets import TwinParams
from dwlab.sim.twin import TwinArray

from dwlab.core.types import PulsePlan, PulseReceipt, PulseShape, Readout

FOREIGN_MODELS = ("heavy_tails", "creep", "pinning", "telegraph")


class ForeignArray(TwinArray):
    """A twin with foreign physics ``physics`` (one of :data:`FOREIGN_MODELS`)."""

    backend = "twin"

    def __init__(self, shape: tuple[int, ...] | int, physics: str,
                 params: TwinParams | None = None, *, seed: int = 0, **kwargs: Any):
        if physics not in FOREIGN_MODELS:
            raise ValueError(f"unknown foreign physics '{physics}'; known: "
                             f"{', '.join(FOREIGN_MODELS)}")
        super().__init__(shape, params, seed=seed, **kwargs)
        if self.model != "continuous":
            raise ValueError("foreign physics builds on the continuous wall model")
        self.physics = physics
        g, dev, s = self.generator, self.torch_device, self.shape
        self.creep_volts = 0.15
        # pinning: 12 sites per device, depinning amplitude 1.15 x nominal (5 % spread)
        self.sites = torch.rand((*s, 12), generator=g, device=dev)
        self.site_volts = self.nominal_pulse.amplitude_volts * 1.15 * (
            1 + 0.05 * torch.randn((*s, 12), generator=g, device=dev))
        # telegraph: amplitude 6 x read noise, flips with probability 0.02 per single read
        self.telegraph_siemens = 6.0 * self.params.read_noise_siemens
        self.telegraph_flip = 0.02
        self.telegraph_state = (torch.rand(s, generator=g, device=dev) < 0.5).float()

    def describe(self):
        info = super().describe()
        info.identity["physics"] = self.physics
        return info

    def _drive(self, shape: PulseShape) -> torch.Tensor:
        p = self.params
        width = shape.width_seconds / p.nominal_width_seconds
        if self.physics != "creep":
            over = (shape.amplitude_volts - self.v_th).clamp(min=0.0)
            return over / (p.nominal_amplitude_volts - self.v_th) * width
        c = self.creep_volts
        soft = torch.nn.functional.softplus((shape.amplitude_volts - self.v_th) / c) * c
        nominal = torch.nn.functional.softplus((p.nominal_amplitude_volts - self.v_th) / c) * c
        return soft / nominal * width

    def _noise(self, n: int) -> torch.Tensor:
        g, dev = self.generator, self.torch_device
        z = torch.randn((n,), generator=g, device=dev)
        if self.physics != "heavy_tails":
            return z
        chi2 = torch.randn((3, n), generator=g, device=dev).pow(2).sum(0)
        return z / torch.sqrt(chi2 / 3) / math.sqrt(3.0)  # t(3) has variance 3

    def apply(self, plan: PulsePlan, *, reference: bool = False) -> PulseReceipt:
        plan.check_against(self.shape, self.limits)
        push = plan.push.to(self.torch_device).reshape(-1)
        pull = plan.pull.to(self.torch_device).reshape(-1)
        x = self.x.reshape(-1).clone()
        pairs = torch.minimum(push, pull)
        total = push + pull
        surplus = torch.where(push > pull, 1.0, -1.0)
        moments = {}
        for polarity, shape in ((1, plan.push_shape), (-1, plan.pull_shape)):
            f = self._drive(shape).reshape(-1)
            mu = (self.mu_push if polarity > 0 else self.mu_pull).reshape(-1) * f
            sigma = (self.sigma_push if polarity > 0 else self.sigma_pull).reshape(-1) * f.sqrt()
            moments[polarity] = (mu, sigma, torch.full_like(f, shape.amplitude_volts))
        touched = torch.zeros_like(x, dtype=torch.bool)
        for j in range(int(total.max()) if total.numel() else 0):
            active = total > j
            in_pairs = 2 * pairs > j
            sign = torch.where(in_pairs, 1.0 - 2.0 * (j % 2), surplus)
            up = sign > 0
            mu = torch.where(up, moments[1][0], moments[-1][0])
            sigma = torch.where(up, moments[1][1], moments[-1][1])
            step = sign * mu + sigma * self._noise(x.numel())
            new = x + torch.where(active, step, torch.zeros_like(step))
            if self.physics == "pinning":
                new = self._pin(x, new, torch.where(up, moments[1][2], moments[-1][2]))
            touched |= active & ((new <= 0) | (new >= 1))
            x = new.clamp(0.0, 1.0)
        self.x = x.reshape(self.shape)
        self.pulses_applied += plan.total_pulses()
        return PulseReceipt(plan.push, plan.pull, devices_clipped=int(touched.sum()),
                            details={"model": f"foreign:{self.physics}"})

    def _pin(self, old: torch.Tensor, new: torch.Tensor, volts: torch.Tensor) -> torch.Tensor:
        """Stop each wall at the first site it would cross that holds at this amplitude."""
        sites = self.sites.reshape(old.numel(), -1)
        holds = self.site_volts.reshape(old.numel(), -1) > volts[:, None]
        eps = 1e-6  # a held wall waits just before its site
        forward = (new > old)[:, None]
        o, n = old[:, None], new[:, None]
        crossed = holds & torch.where(forward, (sites >= o) & (sites <= n),
                                      (sites <= o) & (sites >= n))
        if not bool(crossed.any()):
            return new
        big = torch.full_like(sites, math.inf)
        first_up = torch.where(crossed & forward, sites, big).amin(1)
        first_down = -torch.where(crossed & ~forward, -sites, big).amin(1)
        stop = torch.where(new > old, first_up - eps, first_down + eps)
        return torch.where(crossed.any(1), stop, new)

    def read(self, n_averages: int = 1, devices: torch.Tensor | None = None) -> Readout:
        if self.physics != "telegraph":
            return super().read(n_averages, devices)
        if int(n_averages) != n_averages or n_averages < 1:
            raise ValueError(f"n_averages must be a positive integer, got {n_averages!r}")
        n = int(n_averages)
        g = self.generator
        states = []
        for _ in range(n):  # the fluctuator flips between single reads
            flip = torch.rand(self.shape, generator=g, device=self.torch_device) < (
                self.telegraph_flip)
            self.telegraph_state = torch.where(flip, 1.0 - self.telegraph_state,
                                               self.telegraph_state)
            states.append(self.telegraph_state)
        level = torch.stack(states).mean(0) * self.telegraph_siemens
        base = super().read(n, None)
        mean = base.conductance_siemens + level
        if devices is not None:
            mean = self._select(mean, devices)
        return Readout(mean, None if base.spread_siemens is None else
                       self._select(base.spread_siemens, devices), n)
