"""TwinArray: a calibrated software twin of a domain-wall array behind ``DeviceArray``."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch
from dwlab.sim import physics

from dwlab.device import ArrayBase
from dwlab.types import ArrayInfo, PulseLimits, PulsePlan, PulseReceipt, PulseShape, Readout


@dataclass(frozen=True)
class TwinParams:
    """Nominal device parameters and their device-to-device spreads.

    Steps are fractions of the track per nominal pulse; spreads are relative standard
    deviations across devices (drawn once per device from the seed).
    """

    g_p_siemens: float = 5.0e-4
    g_ap_siemens: float = 2.5e-4
    mu_push: float = 0.01
    mu_pull: float = 0.009
    sigma_push: float = 0.004
    sigma_pull: float = 0.004
    v_th_volts: float = 0.5
    nominal_amplitude_volts: float = 1.0
    nominal_width_seconds: float = 1.0e-8
    read_noise_siemens: float = 5.0e-7
    mu_spread: float = 0.1
    sigma_spread: float = 0.1
    v_th_spread: float = 0.05
    g_spread: float = 0.03
    initial_position: float = 0.5
    initial_position_spread: float = 0.0

    def validate(self) -> None:
        if not self.g_p_siemens > self.g_ap_siemens > 0:
            raise ValueError("need g_p_siemens > g_ap_siemens > 0")
        for name in ("mu_push", "mu_pull", "sigma_push", "sigma_pull"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be non-negative")
        if not 0 < self.v_th_volts < self.nominal_amplitude_volts:
            raise ValueError("need 0 < v_th_volts < nominal_amplitude_volts")
        if not 0 <= self.initial_position <= 1:
            raise ValueError("initial_position must lie in [0, 1]")

    def replace(self, **changes: float) -> TwinParams:
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ValueError(f"unknown twin parameter(s): {', '.join(sorted(unknown))}")
        new = dataclasses.replace(self, **changes)
        new.validate()
        return new


PRESETS: dict[str, TwinParams] = {
    "continuous_dw": TwinParams(),
}
"""Named parameter sets. Look-up by name only; configs never name classes."""

DEFAULT_LIMITS = PulseLimits(
    max_amplitude_volts=5.0, min_width_seconds=1e-9, max_width_seconds=1e-6,
    max_pulses_per_device=4096, max_duty_cycle=0.5,
)


def _spread(base: float, rel: float, shape, gen, device) -> torch.Tensor:
    """Per-device values ``base * (1 + rel * N(0,1))``, kept positive."""
    noise = torch.randn(shape, generator=gen, device=device, dtype=torch.float32)
    return (base * (1.0 + rel * noise)).clamp(min=base * 0.05 if base > 0 else 0.0)


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
        # Device-to-device spread: drawn once per device.
        self.mu_push = _spread(p.mu_push, p.mu_spread, s, g, dev)
        self.mu_pull = _spread(p.mu_pull, p.mu_spread, s, g, dev)
        self.sigma_push = _spread(p.sigma_push, p.sigma_spread, s, g, dev)
        self.sigma_pull = _spread(p.sigma_pull, p.sigma_spread, s, g, dev)
        self.v_th = _spread(p.v_th_volts, p.v_th_spread, s, g, dev)
        self.g_p = _spread(p.g_p_siemens, p.g_spread, s, g, dev)
        self.g_ap = torch.minimum(_spread(p.g_ap_siemens, p.g_spread, s, g, dev), self.g_p * 0.95)
        x0 = p.initial_position + p.initial_position_spread * torch.randn(
            s, generator=g, device=dev
        )
        self.x = x0.clamp(0.0, 1.0)
        self.pulses_applied = 0

    # -- DeviceArray -------------------------------------------------------------------

    def describe(self) -> ArrayInfo:
        p = self.params
        g_range = p.g_p_siemens - p.g_ap_siemens
        return ArrayInfo(
            name=self.name,
            backend=self.backend,
            shape=self.shape,
            conductance_min_siemens=p.g_ap_siemens,
            conductance_max_siemens=p.g_p_siemens,
            limits=self.limits,
            nominal_pulse=self.nominal_pulse,
            step_siemens=0.5 * (p.mu_push + p.mu_pull) * g_range,
            step_sigma_siemens=0.5 * (p.sigma_push + p.sigma_pull) * g_range,
            identity={"preset": self.preset, "seed": str(self.seed), "devices": str(self.size)},
        )

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    def step_moments(self, shape: PulseShape) -> tuple[torch.Tensor, ...]:
        """Per-device (mu_push, sigma_push, mu_pull, sigma_pull) for a pulse shape."""
        p = self.params
        f = physics.drive_factor(
            shape.amplitude_volts, shape.width_seconds, self.v_th,
            p.nominal_amplitude_volts, p.nominal_width_seconds,
        )
        mu_push, sigma_push = physics.step_moments(self.mu_push, self.sigma_push, f)
        mu_pull, sigma_pull = physics.step_moments(self.mu_pull, self.sigma_pull, f)
        return mu_push, sigma_push, mu_pull, sigma_pull

    def apply(self, plan: PulsePlan, *, reference: bool = False) -> PulseReceipt:
        plan.check_against(self.shape, self.limits)
        push = plan.push.to(self.torch_device)
        pull = plan.pull.to(self.torch_device)
        mu_push, sigma_push, _, _ = self.step_moments(plan.push_shape)
        _, _, mu_pull, sigma_pull = self.step_moments(plan.pull_shape)
        step = physics.apply_pulses_reference if reference else physics.apply_pulses_fast
        self.x, touched = step(
            self.x, push, pull, mu_push, sigma_push, mu_pull, sigma_pull, generator=self.generator
        )
        total = plan.total_pulses()
        self.pulses_applied += total
        return PulseReceipt(
            push_applied=plan.push, pull_applied=plan.pull, devices_clipped=int(touched.sum()),
        )

    def conductance(self) -> torch.Tensor:
        """Noise-free conductance (what the wall position sets)."""
        return physics.conductance(self.x, self.g_ap, self.g_p)

    def read(self, n_averages: int = 1, devices: torch.Tensor | None = None) -> Readout:
        if n_averages < 1:
            raise ValueError("n_averages must be at least 1")
        g = self.conductance()
        if devices is not None:
            g = g.reshape(-1)[torch.as_tensor(devices, device=self.torch_device)]
        sigma = self.params.read_noise_siemens
        reads = g.unsqueeze(0) + sigma * torch.randn(
            (n_averages, *g.shape), generator=self.generator, device=g.device
        )
        spread = reads.std(dim=0) if n_averages > 1 else None
        return Readout(reads.mean(dim=0), spread, n_averages)

    def snapshot(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "preset": self.preset,
            "seed": self.seed,
            "params": dataclasses.asdict(self.params),
            "shape": list(self.shape),
            "position": self.x.detach().cpu().clone(),
            "generator": self.generator.get_state(),
            "pulses_applied": self.pulses_applied,
        }

    def restore(self, snapshot: dict[str, Any]) -> None:
        if list(snapshot["shape"]) != list(self.shape) or snapshot["seed"] != self.seed:
            raise ValueError("snapshot belongs to a twin of another shape or seed")
        self.x = snapshot["position"].to(self.torch_device).clone()
        self.generator.set_state(snapshot["generator"])
        self.pulses_applied = int(snapshot["pulses_applied"])

    def safe_state(self) -> None:
        """A twin has no outputs to turn off."""
