"""Multi-state pinned walls: per-device notch positions and settling at the nearest."""

from __future__ import annotations

import torch


def notch_positions(
    n_states: int, spread: float, shape: tuple[int, ...], generator: torch.Generator | None,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Per-device notch positions, shape ``(n_states, *shape)``, sorted along dim 0.

    Nominal notches are evenly spaced with the track ends as the outer two; interior
    notches move by ``spread * N(0, 1)`` per device (kept inside the track).
    """
    nominal = torch.linspace(0.0, 1.0, n_states, device=device)
    nominal = nominal.reshape(n_states, *([1] * len(shape))).expand(n_states, *shape)
    jitter = spread * torch.randn((n_states, *shape), generator=generator, device=device)
    jitter[0] = 0.0
    jitter[-1] = 0.0
    return (nominal + jitter).clamp(0.0, 1.0).sort(dim=0).values


def nearest_notch(x: torch.Tensor, notches: torch.Tensor) -> torch.Tensor:
    """The notch (per device, from ``notches`` of shape ``(n_states, *x.shape)``) nearest
    to each position."""
    idx = (notches - x.unsqueeze(0)).abs().argmin(dim=0, keepdim=True)
    return notches.gather(0, idx).squeeze(0)

