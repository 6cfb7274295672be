"""What a wall position reads as, and how it drifts between pulses (retention)."""

from __future__ import annotations

import math

import torch


def conductance(x: torch.Tensor, g_ap: torch.Tensor, g_p: torch.Tensor) -> torch.Tensor:
    """Conductance linear in wall position between G_AP (x = 0) and G_P (x = 1)."""
    return g_ap + (g_p - g_ap) * x.clamp(0.0, 1.0)


def relax(x: torch.Tensor, rate_per_second: float, target: float, seconds: float) -> torch.Tensor:
    """Exponential relaxation of positions towards ``target`` over ``seconds``."""
    return target + (x - target) * math.exp(-rate_per_second * seconds)

