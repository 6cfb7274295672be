"""The drive law: how far one pulse of a given shape moves a wall, per device."""

from __future__ import annotations

import torch


def drive_factor(
    amplitude_volts: float, width_seconds: float, v_th: torch.Tensor,
    nominal_amplitude_volts: float, nominal_width_seconds: float,
) -> torch.Tensor:
    """Mean step relative to the nominal pulse: overdrive ratio times width ratio (0 below
    threshold). ``v_th`` is per device, so the factor is too."""
    over = (amplitude_volts - v_th).clamp(min=0.0)
    nominal_over = (nominal_amplitude_volts - v_th).clamp(min=1e-12)
    return over / nominal_over * (width_seconds / nominal_width_seconds)


def step_moments(
    mu0: torch.Tensor, sigma0: torch.Tensor, factor: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation of one step given the drive factor."""
    return mu0 * factor, sigma0 * factor.sqrt()

