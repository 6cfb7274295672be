"""The slow reference path: every pulse applied one at a time, clipping after each.

Exact for every model (multi-state walls settle at a notch after every pulse); the fast
paths are tested against it.
"""

from __future__ import annotations

import math

import torch
from dwlab.sim.physics.notches import nearest_notch


def _pulse_rounds(
    x: torch.Tensor, lowest: torch.Tensor, highest: torch.Tensor, rounds: torch.Tensor,
    steps: list[tuple[torch.Tensor, torch.Tensor]], notches: torch.Tensor | None,
    generator: torch.Generator | None,
) -> None:
    """Give device ``i`` ``rounds[i]`` rounds of ``steps`` (each a (signed mean, sigma)
    pulse), one pulse at a time, updating flat ``x``, ``lowest`` and ``highest`` in place.

    Devices are sorted by round count so the devices still active in round ``k`` are a
    prefix: the cost is proportional to the pulses sent, not to ``max(rounds) * size``.
    """
    if rounds.numel() == 0:
        return
    n_rounds = int(rounds.max())
    if n_rounds == 0:
        return
    order = torch.argsort(rounds, descending=True, stable=True)
    # active[k]: how many devices get round k (those with more than k rounds).
    hist = torch.bincount(rounds, minlength=n_rounds + 1)
    active = (hist.flip(0).cumsum(0).flip(0)[1:]).tolist()
    xs, lo, hi = x[order], lowest[order], highest[order]
    steps = [(mu[order], sigma[order]) for mu, sigma in steps]
    ns = notches[:, order] if notches is not None else None
    for k in range(n_rounds):
        n = active[k]
        xv, lov, hiv = xs[:n], lo[:n], hi[:n]
        for mu, sigma in steps:
            moved = torch.randn(n, generator=generator, device=x.device, dtype=x.dtype)
            moved.mul_(sigma[:n]).add_(mu[:n]).add_(xv)
            torch.minimum(lov, moved, out=lov)
            torch.maximum(hiv, moved, out=hiv)
            moved.clamp_(0.0, 1.0)
            if ns is not None:
                moved = nearest_notch(moved, ns[:, :n])
            xv.copy_(moved)
    x[order], lowest[order], highest[order] = xs, lo, hi


def apply_pulses_reference(
    x: torch.Tensor, n_push: torch.Tensor, n_pull: torch.Tensor,
    mu_push: torch.Tensor, sigma_push: torch.Tensor,
    mu_pull: torch.Tensor, sigma_pull: torch.Tensor,
    generator: torch.Generator | None = None, notches: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply pulses one at a time, in hardware order, clipping after every pulse.

    With ``notches`` (shape ``(n_states, *x.shape)``, sorted along dim 0) the wall settles
    at the nearest notch after every pulse (multi-state pinned walls). Returns the new
    positions and a mask of devices whose wall reached a track end.
    """
    shape = x.shape
    flat = x.reshape(-1).clone()
    dev = flat.device

    def per_device(t: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(t, device=dev, dtype=flat.dtype).expand(shape).reshape(-1)

    push = n_push.reshape(-1).to(dev, torch.long)
    pull = n_pull.reshape(-1).to(dev, torch.long)
    mu_p, sd_p, mu_m, sd_m = (per_device(t) for t in (mu_push, sigma_push, mu_pull, sigma_pull))
    flat_notches = notches.reshape(notches.shape[0], -1) if notches is not None else None
    # Extremes reached by moves in this apply (a wall resting at an end has not touched).
    lowest = torch.full_like(flat, math.inf)
    highest = torch.full_like(flat, -math.inf)
    # Phase 1: pairs, push then pull.
    _pulse_rounds(flat, lowest, highest, torch.minimum(push, pull),
                  [(mu_p, sd_p), (-mu_m, sd_m)], flat_notches, generator)
    # Phase 2: the surplus of the majority polarity.
    surplus = push - pull
    up = surplus > 0
    _pulse_rounds(flat, lowest, highest, surplus.abs(),
                  [(torch.where(up, mu_p, -mu_m), torch.where(up, sd_p, sd_m))],
                  flat_notches, generator)
    touched = (lowest <= 0.0) | (highest >= 1.0)
    return flat.reshape(shape), touched.reshape(shape)

