"""Exact pulse-by-pulse walks for walls near a track end, vectorised.

Every pulse draws its own noise, but the clipping at the near end comes from the
reflection identity of a walk held at one barrier, so no loop over pulses is needed
(except for the rare paths that also reach the far end). Walls with only the near end in
reach walk in blocks (:func:`_blocked_walk`): pulse-level detail is drawn only for the
blocks that come close to the end, so the cost grows with the square root of the pulses.
"""

from __future__ import annotations

import math

import torch
from dwlab.sim.physics.noise import normal_

LONG_ROW = 4096
"""Row length from which :func:`cumsum_rows_` adds row by row on CPU (measured crossover
about 2,000-4,000 elements: below, the loop's per-call overhead dominates)."""


def cumsum_rows_(t: torch.Tensor) -> torch.Tensor:
    """``t.cumsum_(0)``, in place. On CPU, torch's cumsum along the first dimension of long
    rows costs two to three times a loop of row additions (each vectorised along the
    contiguous row)."""
    if t.device.type != "cpu" or t.dim() < 2 or t.shape[1] < LONG_ROW:
        return t.cumsum_(0)
    for i in range(1, t.shape[0]):
        t[i].add_(t[i - 1])
    return t


def _reflected_walk(
    y: torch.Tensor, rounds: torch.Tensor, steps: list[tuple[torch.Tensor, torch.Tensor]],
    generator: torch.Generator | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Walk ``y`` in ``[0, 1]`` (distance from a barrier at 0) through ``rounds[i]`` rounds
    of ``steps`` (each (mean, sigma) per device), clipped at 0 and at 1 after every step.

    Uses the reflection identity of a walk held at one barrier: with ``W_j = y_0 + S_j``
    the unclipped walk, the clipped walk is ``W_j + max(0, -min_{i<=j} W_i)``; it ends at
    ``W_n + max(0, -min_j W_j)`` and touched the barrier iff ``min_j W_j <= 0``.
    Paths that never reach 1 keep that one-barrier result (exact, same noise); the rare
    paths that do are replayed step by step with both clips, on the same noise. Pulse by
    pulse in memory: walls with only the near end in reach take :func:`_blocked_walk`.
    Returns (new y, touched either barrier).
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
    first_step = walk[0].clone()
    walk[0].add_(y)
    walk = cumsum_rows_(walk)
    lowest = walk.amin(dim=0)
    end = walk[-1] + (-lowest).clamp(min=0.0)
    touched = (lowest <= 0.0) & (rounds > 0)
    clipped = walk - walk.cummin(dim=0).values.clamp_(max=0.0)
    replay = (clipped.amax(dim=0) >= 1.0).nonzero().squeeze(1)
    if replay.numel():
        # Increments of the chosen paths, recovered from the cumulative walk.
        incr = walk[:, replay].diff(dim=0, prepend=walk[:1, replay])
        incr[0] = first_step[replay]
        pos = y[replay].clone()
        for step in incr:
            pos = (pos + step).clamp_(0.0, 1.0)
        end[replay] = pos
        touched[replay] = True
    return end, touched


BRIDGE_SIGMAS = 4.0
"""A block is resolved pulse by pulse when its lower endpoint lies within this many of its
standard deviations (plus one round of mean steps) of the barrier. The walk inside a block
is a Gaussian bridge, which dips that far below its endpoints with probability at most
``exp(-2 * BRIDGE_SIGMAS**2)`` (1.3e-14): only then is a touch missed."""


def _blocked_walk(
    y: torch.Tensor, rounds: torch.Tensor, steps: list[tuple[torch.Tensor, torch.Tensor]],
    generator: torch.Generator | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`_reflected_walk` with the near barrier only, drawn block by block.

    The rounds are cut into blocks of about ``sqrt(max rounds)``. Each block's sum is drawn
    exactly (a sum of Gaussian steps); its pulses are drawn only when the block comes near
    the barrier, as the Gaussian bridge given that sum (fresh steps shifted by their share of
    variance: ``x_k += v_k / V * (S - sum x)``, exact for the conditional law), and give the
    block's exact minimum. Other blocks stay above the barrier (see :data:`BRIDGE_SIGMAS`)
    and cannot lower the walk's minimum below it, which is all the reflection identity
    needs. Cost: ``rounds / block`` sums per wall plus the resolved blocks' pulses.
    """
    n_rounds = int(rounds.max()) if rounds.numel() else 0
    if n_rounds == 0:
        return y, torch.zeros(y.shape, dtype=torch.bool, device=y.device)
    block = math.isqrt(n_rounds - 1) + 1
    n_blocks = -(-n_rounds // block)
    first_round = torch.arange(n_blocks, device=y.device).unsqueeze(1) * block
    # (block, device): rounds of each block that the device walks
    live_rounds = (rounds.unsqueeze(0) - first_round).clamp_(0, block).to(y.dtype)
    mean = torch.stack([m for m, _ in steps])  # (step in round, device)
    sigma = torch.stack([s for _, s in steps])
    var = sigma * sigma
    block_var = live_rounds * var.sum(0)
    block_sd = block_var.sqrt()
    sums = normal_(torch.empty_like(block_var), generator).mul_(block_sd)
    sums.addcmul_(live_rounds, mean.sum(0))
    ends = cumsum_rows_(sums.clone()).add_(y)
    starts = torch.cat([y.unsqueeze(0), ends[:-1]])
    lowest = torch.minimum(starts, ends)  # exact below the barrier once blocks are resolved
    slack = block_sd.mul_(BRIDGE_SIGMAS).add_(mean.abs().sum(0))
    # Resolved blocks by flat index into (block, device); d: their devices.
    k = ((lowest <= slack) & (live_rounds > 0)).view(-1).nonzero().squeeze(1)
    if k.numel():
        d = k % y.numel()

        def at(t: torch.Tensor) -> torch.Tensor:
            return t.view(-1)[k]

        # (round, 1, resolved): 1 for the rounds the device walks in this block
        live = (torch.arange(block, device=y.device).unsqueeze(1) < at(live_rounds)
                ).to(y.dtype).unsqueeze(1)
        pulses = normal_(torch.empty((block, len(steps), k.numel()), device=y.device,
                                     dtype=y.dtype), generator)
        pulses.mul_(sigma[:, d]).add_(mean[:, d]).mul_(live)  # (round, step, resolved)
        shortfall = (at(sums) - pulses.sum(dim=(0, 1))) / at(block_var).clamp_(min=1e-30)
        pulses.addcmul_(var[:, d], live.mul_(shortfall))  # the bridge: v_k / V of the gap
        path = cumsum_rows_(pulses.view(-1, k.numel()))
        # The path's lowest point, anchored on the block's end (same value up to rounding),
        # so a wall whose lowest point is its last lands exactly on the barrier.
        lowest.view(-1)[k] = path.amin(0) + (at(ends) - path[-1])
    low = lowest.amin(0)
    end = ends[-1] + (-low).clamp(min=0.0)
    return end, (low <= 0.0) & (rounds > 0)


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
    inputs; walls are grouped by pulse count (:func:`_similar_count_chunks`) and each group
    is vectorised (one group when the set is small). Walls with one end in
    reach walk in blocks (:func:`_blocked_walk`), so their work grows with the square root
    of their pulses; with ``far_end`` it is about ``pulses``.
    """
    out = x.clone()  # walls without pulses stay where they are
    touched = torch.zeros(x.shape, dtype=torch.bool, device=x.device)
    push = n_push.to(x.device, torch.long)
    pull = n_pull.to(x.device, torch.long)
    counts = push + pull
    walk = _reflected_walk if far_end else _blocked_walk
    if x.numel() * (int(counts.max()) if counts.numel() else 0) <= chunk_elements:
        # Small sets go in one piece, sparing the sort and gathers that dominate when few
        # walls are near an end.
        chunks: list[torch.Tensor | None] = [None]
    else:
        chunks = list(_similar_count_chunks(counts, chunk_elements))
    for idx in chunks:
        def pick(t: torch.Tensor, idx: torch.Tensor | None = idx) -> torch.Tensor:
            return t if idx is None else t[idx]

        xs = pick(x)
        # Distance to the near end; steps towards it are negative (noise is symmetric, so
        # only the means change sign).
        top = xs >= 0.5
        sign = 1.0 - 2.0 * top.to(x.dtype)
        y = torch.where(top, 1.0 - xs, xs)
        mu_p, mu_m = sign * pick(mu_push), -sign * pick(mu_pull)
        sd_p, sd_m = pick(sigma_push), pick(sigma_pull)
        n_p, n_m = pick(push), pick(pull)
        pairs = [(mu_p, sd_p), (mu_m, sd_m)]
        surplus = n_p - n_m
        up = surplus > 0
        one_kind = [(torch.where(up, mu_p, mu_m), torch.where(up, sd_p, sd_m))]
        y, hit_pairs = walk(y, torch.minimum(n_p, n_m), pairs, generator)
        y, hit_surplus = walk(y, surplus.abs(), one_kind, generator)
        # Walls without pulses keep their position bit for bit (1 - (1 - x) may round).
        y = torch.where(pick(counts) > 0, torch.where(top, 1.0 - y, y).clamp_(0.0, 1.0), xs)
        hit = hit_pairs | hit_surplus
        if idx is None:
            return y, hit
        out[idx], touched[idx] = y, hit
    return out, touched
