"""What one optimizer step did, as a typed record (read by the training loop and its logs)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar


@dataclass(frozen=True)
class TensorUpdateStats:
    """What the update of one device-backed tensor did."""

    pulses_sent: int
    devices_clipped: int
    """Walls that touched a track end during the apply."""
    saturated_devices: int
    """Devices within the saturation margin of a track end after the step."""
    recentred_pairs: int
    steps_clipped: int
    """Desired steps beyond the pulse budget."""
    temperature_weight: float
    """``alpha^2 sigma_G^2 * pulses``: this tensor's share of the effective temperature."""


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
    """The device weights' mean temperature this step:
    ``alpha^2 sigma_G^2 * pulses per weight / (2 eps)``; 0 for the float schemes."""

    LOGGED: ClassVar[tuple[str, ...]] = (
        "pulses_sent", "devices_clipped", "saturated_devices", "recentred_pairs",
        "step_size", "effective_temperature",
    )
    """The fields a training run writes into its per-step table, in column order."""

    @classmethod
    def total(
        cls, updates: Sequence[TensorUpdateStats], n_weights: int, lr: float, step_size: float
    ) -> StepStats:
        """The step's statistics from those of its ``updates`` over ``n_weights`` weights."""
        temperature = 0.0
        for update in updates:
            temperature += update.temperature_weight
        return cls(
            pulses_sent=sum(u.pulses_sent for u in updates),
            devices_clipped=sum(u.devices_clipped for u in updates),
            saturated_devices=sum(u.saturated_devices for u in updates),
            recentred_pairs=sum(u.recentred_pairs for u in updates),
            steps_clipped=sum(u.steps_clipped for u in updates),
            step_size=step_size, lr=lr,
            effective_temperature=temperature / (2 * step_size * n_weights) if n_weights else 0.0,
        )

    def logged(self) -> dict[str, int | float]:
        """The logged fields by name (see :attr:`LOGGED`)."""
        return {name: getattr(self, name) for name in self.LOGGED}
