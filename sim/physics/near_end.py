"""Exact pulse-by-pulse walks for walls near a track end, vectorised.

Every pulse draws its own noise, but the clipping at the near end comes from the
reflection identity of a walk held at one barrier, so no loop over pulses is needed
(except for the rare paths that also reach the far end).
"""

from __future__ import annotations

import torch
from dwlab.sim.physics.noise import normal_


def _reflected_walk(
    y: torch.Tensor, rounds: torch.Tensor, steps: list[tuple[torch.Tensor, torch.Tensor]],
    generator: torch.Generator | None, far_end: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Walk ``y`` in ``[0, 1]`` (distance from a barrier at 0) through ``rounds[i]`` rounds
    of ``steps`` (each (mean, sigma) per device), clipped at 0 after every step.

    Uses the reflection identity of a walk held at one barrier: with ``W_j = y_0 + S_j``
    the unclipped walk, the clipped walk is ``W_j + max(0, -min_{i<=j} W_i)``; it ends at
    ``W_n + max(0, -min_j W_j)`` and touched the barrier iff ``min_j W_j <= 0``.
    With ``far_end`` the walk is also clipped at 1: paths that never reach 1 keep the
    one-barrier result (exact, same noise); the rare paths that do are replayed step by
    step with both clips, on the same noise. Returns (new y, touched either barrier).
    """
    n_rounds = int(rounds.max()) if rounds.numel() else 0
    if n_rounds == 0:
        return y, torch.zeros(y.shape, dtype=torch.bool, device=y.device)
    # Layout (round, step, device): elementwise work broadcasts along contiguous devices.
    n = y.numel()
    mean = torch.stack([m for m, _ in steps])
    sigma = torch.stack([s for _, s in steps])
    walk = normal_(torch.empty((n_rounds, len(steps), n), device=y.device, dtype=y.dtype),
                   generator)
    walk.mul_(sigma).add_(mean)
    # Rounds beyond a device's count are no-ops (zero steps leave W and its minimum alone).
    round_index = torch.arange(n_rounds, device=y.device, dtype=y.dtype).unsqueeze(1)
    later = round_index >= rounds.to(y.dtype)
    walk.masked_fill_(later.unsqueeze(1), 0.0)
    walk = walk.view(-1, n)
    first_step = walk[0].clone() if far_end else None
    walk[0].add_(y)
    walk = walk.cumsum_(dim=0)
    lowest = walk.amin(dim=0)
    end = walk[-1] + (-lowest).clamp(min=0.0)
    touched = (lowest <= 0.0) & (rounds > 0)
    if far_end:
        clipped = walk - walk.cummin(dim=0).values.clamp_(max=0.0)
        replay = (clipped.amax(dim=0) >= 1.0).nonzero().squeeze(1)
        if replay.numel():
            # Increments of the chosen paths, recovered from the cumulative walk.
            incr = walk[:, replay].diff(dim=0, prepend=walk[:1, replay])
            assert first_step is not None  # kept whenever far_end
            incr[0] = first_step[replay]
            pos = y[replay].clone()
            for step in incr:
                pos = (pos + step).clamp_(0.0, 1.0)
            end[replay] = pos
            touched[replay] = True
    return end, touched


def _similar_count_chunks(counts: torch.Tensor, chunk_elements: int) -> list[torch.Tensor]:
    """Split devices into index groups whose pulse counts lie within a factor of two, each
    group holding at most about ``chunk_elements`` (pulses x devices).

    A vectorised walk costs ``max(count) * devices`` per group: one re-centred pair with
    thousands of pulses among walls with hundreds would otherwise set the cost of all.
    """
    order = torch.argsort(counts, stable=True)
    ordered = counts[order]
    # Group g holds counts in [2^(g-1), 2^g) (g = 0: no pulses, nothing to do).
    group = torch.floor(torch.log2(ordered.clamp(min=1).double())).long() + 1
    group[ordered == 0] = 0
    sizes = torch.bincount(group).tolist()
    chunks, start = [], 0
    for g, size in enumerate(sizes):
        if g and size:
            step = max(1, chunk_elements // (1 << g))
            for s in range(start, start + size, step):
                chunks.append(order[s:min(s + step, start + size)])
        start += size
    return chunks


def apply_pulses_one_end(
    x: torch.Tensor, n_push: torch.Tensor, n_pull: torch.Tensor,
    mu_push: torch.Tensor, sigma_push: torch.Tensor,
    mu_pull: torch.Tensor, sigma_pull: torch.Tensor,
    generator: torch.Generator | None = None, chunk_elements: int = 1 << 22,
    far_end: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pulse by pulse, in hardware order, for walls near a track end.

    Every pulse draws its own noise; the clipping at the near end comes from the reflection
    identity (:func:`_reflected_walk`) instead of a loop, first over the (push, pull)
    pairs, then over the surplus (the clipped walk is Markov, so phases compose). Exact for
    walls whose far end is out of reach (the caller checks), or for every wall with
    ``far_end=True`` (paths reaching the far end are replayed with both clips). Flat
    inputs; the work is about ``pulses``: walls are grouped by pulse count
    (:func:`_similar_count_chunks`) and each group is vectorised.
    """
    out = x.clone()  # walls without pulses stay where they are
    touched = torch.zeros(x.shape, dtype=torch.bool, device=x.device)
    push = n_push.to(x.device, torch.long)
    pull = n_pull.to(x.device, torch.long)
    for idx in _similar_count_chunks(push + pull, chunk_elements):
        xs = x[idx]
        # Distance to the near end; steps towards it are negative (noise is symmetric, so
        # only the means change sign).
        top = xs >= 0.5
        sign = 1.0 - 2.0 * top.to(x.dtype)
        y = torch.where(top, 1.0 - xs, xs)
        mu_p, mu_m = sign * mu_push[idx], -sign * mu_pull[idx]
        sd_p, sd_m = sigma_push[idx], sigma_pull[idx]
        n_p, n_m = push[idx], pull[idx]
        y, hit_pairs = _reflected_walk(
            y, torch.minimum(n_p, n_m), [(mu_p, sd_p), (mu_m, sd_m)], generator, far_end)
        surplus = n_p - n_m
        up = surplus > 0
        y, hit_surplus = _reflected_walk(
            y, surplus.abs(), [(torch.where(up, mu_p, mu_m), torch.where(up, sd_p, sd_m))],
            generator, far_end)
        out[idx] = torch.where(top, 1.0 - y, y).clamp_(0.0, 1.0)
        touched[idx] = hit_pairs | hit_surplus
    return out, touched
