"""What one optimizer step did, as a typed record (read by the training loop and its logs)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch

from dwlab.sgld.joined import JoinedWeights


@dataclass(frozen=True)
class TensorUpdateStats:
    """What the update of device-backed tensors did (one tensor, or several end to end),
    summed over them."""

    pulses_sent: int
    devices_clipped: int
    """Walls that touched a track end during the apply."""
    saturated_devices: int
    """Devices within the saturation margin of a track end after the step."""
    recentred_pairs: int
    steps_clipped: int
    """Desired steps beyond the pulse budget."""
    temperature_weight: float
    """``alpha^2 sigma_G^2 * pulses``: the device noise, summed over weights (weight^2)."""
    rounding_variance: float = 0.0
    """The rounding of counts, summed over weights (weight^2)."""
    edge_drift: float = 0.0
    """Moves of walls that sat at a track end, beyond their planned moves and towards the
    centre, summed, in largest single-device updates (``K`` steps)."""
    edge_devices: int = 0
    """Devices that sat at a track end before the step."""
    devices: int = 0


@dataclass(frozen=True)
class StepStats:
    """One step of the controller, summed over its device-backed tensors (all 0 for the
    float schemes, except ``step_size`` and ``lr``)."""

    pulses_sent: int = 0
    devices_clipped: int = 0
    saturated_devices: int = 0
    recentred_pairs: int = 0
    steps_clipped: int = 0
    step_size: float = 0.0
    """SGLD's ``eps = lr_t / N``."""
    lr: float = 0.0
    """The rate ``lr_t`` of this step."""
    effective_temperature: float = 0.0
    """The device weights' mean temperature this step: the weight noise variance per step,
    device noise (``alpha^2 sigma_G^2`` per pulse) plus the rounding of counts, over
    ``2 eps``; 0 for the float schemes."""
    rounding_share: float = 0.0
    """The part of that noise that the rounding of counts contributes."""
    noise_per_step: float = 0.0
    """Weight noise per step, standard deviation (device noise and rounding)."""
    largest_update: float = 0.0
    """Largest weight change one update can make (all ``K`` pulses one way), mean over
    weights; with ``noise_per_step`` it says how coarse and how hot an update is."""
    saturated_fraction: float = 0.0
    """Devices within the saturation margin of a track end after the step."""
    edge_drift: float = 0.0
    """Mean excess move towards the centre of walls that sat at a track end, in largest
    single-device updates (0 when none sat there)."""

    LOGGED: ClassVar[tuple[str, ...]] = (
        "pulses_sent", "devices_clipped", "saturated_devices", "recentred_pairs",
        "steps_clipped", "step_size", "effective_temperature", "rounding_share",
        "edge_drift",
    )
    """The fields a training run writes into its per-step table, in column order."""

    @classmethod
    def total(
        cls, updates: Sequence[TensorUpdateStats], n_weights: int, lr: float, step_size: float,
        largest_update: float = 0.0,
    ) -> StepStats:
        """The step's statistics from those of its ``updates`` over ``n_weights`` weights."""
        device = sum(u.temperature_weight for u in updates)
        rounding = sum(u.rounding_variance for u in updates)
        noise = (device + rounding) / n_weights if n_weights else 0.0
        devices = sum(u.devices for u in updates)
        edge_devices = sum(u.edge_devices for u in updates)
        return cls(
            pulses_sent=sum(u.pulses_sent for u in updates),
            devices_clipped=sum(u.devices_clipped for u in updates),
            saturated_devices=sum(u.saturated_devices for u in updates),
            recentred_pairs=sum(u.recentred_pairs for u in updates),
            steps_clipped=sum(u.steps_clipped for u in updates),
            step_size=step_size, lr=lr,
            effective_temperature=noise / (2 * step_size),
            rounding_share=rounding / (device + rounding) if device + rounding > 0 else 0.0,
            noise_per_step=noise**0.5, largest_update=largest_update,
            saturated_fraction=(sum(u.saturated_devices for u in updates) / devices
                                if devices else 0.0),
            edge_drift=(sum(u.edge_drift for u in updates) / edge_devices
                        if edge_devices else 0.0),
        )

    def logged(self) -> dict[str, int | float]:
        """The logged fields by name (see :attr:`LOGGED`)."""
        return {name: getattr(self, name) for name in self.LOGGED}


@dataclass(frozen=True)
class EdgeWatch:
    """Devices that sat at a track end before an update (flat indices into the joined
    devices), and their planned mean moves."""

    index: torch.Tensor
    before: torch.Tensor
    planned: torch.Tensor
    unit: float | torch.Tensor
    """Each one's largest single-device update (``budget`` mean steps of its tensor)."""

    @property
    def count(self) -> int:
        return self.index.numel()

    def drift(self, devices: JoinedWeights) -> float:
        """Their moves after the update (at the devices' last read-back) beyond the planned
        ones, towards the centre, summed, in largest single-device updates."""
        after = devices.read().reshape(-1)[self.index]
        g_mid = devices.at_weights(devices.constant("g_mid"), self.index % devices.n)
        excess = (after - self.before - self.planned) * torch.sign(g_mid - self.before)
        return float((excess / self.unit).sum())


def edge_watch(devices: JoinedWeights, push: torch.Tensor, pull: torch.Tensor, budget: int
               ) -> EdgeWatch | None:
    """Watch the saturated devices (last read-back) through the counts ``push`` and
    ``pull`` (end to end, as ``devices``); None if none."""
    if any(dw.last_read.numel() == 0 for dw in devices.weights):
        return None
    index = devices.saturated(devices.distance()).view(-1).nonzero().squeeze(1)
    if index.numel() == 0:
        return None
    mu_push, mu_pull = (t.reshape(-1)[index] for t in devices.steps())
    planned = push.reshape(-1)[index].to(mu_push.dtype).mul_(mu_push).sub_(
        pull.reshape(-1)[index].to(mu_push.dtype).mul_(mu_pull))
    unit = devices.at_weights(devices.constant("mean_step"), index % devices.n)
    return EdgeWatch(index, devices.read().reshape(-1)[index], planned, budget * unit)
