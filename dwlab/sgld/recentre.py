"""Re-centring of differential pairs whose devices drift together towards a track end.

A pair ``w = alpha (G+ - G-)`` keeps its weight when both devices move by the same
conductance, so its common mode ``(G+ + G-) / 2`` can be steered without changing the
weight's mean. Nothing else restores it: each device's ``K`` pulses add their noise to it
every step. Two mechanisms keep it centred: :func:`centring_shift`, every step and within
the pulse budget (no extra pulse), and :func:`recentre_pairs`, a backstop with extra
pulses for a pair that still reaches a track end.
"""

from __future__ import annotations

import torch

from dwlab.core.types import PulsePlan
from dwlab.sgld.weight import DeviceWeight


def centring_shift(dw: DeviceWeight, gain: float) -> torch.Tensor | None:
    """The common-mode conductance change (S, the weight's shape) that removes ``gain`` of
    each pair's offset from the window centre at the last read-back; None when ``gain`` is
    0 or nothing has been read yet."""
    if gain == 0 or dw.last_read.numel() == 0:
        return None
    g = dw.last_read
    shift = dw.work.get("common_shift", g.shape[1:], g.dtype)
    torch.add(g[0], g[1], out=shift).sub_(2 * dw.g_mid).mul_(-0.5 * gain)
    return shift


def recentre_pairs(
    dw: DeviceWeight, plan: PulsePlan, margin: float, budget: int, max_pulses: int,
    planned_gain: float = 0.0,
) -> tuple[int, int]:
    """Add to ``plan`` (in place) the common-mode counts that re-centre ``dw``'s pairs.

    Uses the last read-back. A pair counts when one device is within ``margin`` (of the
    range) of an end *and* its common mode is off-centre by more than that margin (a pair
    near the ends only because its weight is large cannot be helped). The count brings the
    pair's mean conductance back to the window centre, within ``max_pulses - budget``
    extra pulses per device; ``planned_gain`` of the offset is already in ``plan``
    (:func:`centring_shift`), so only the rest is added. Returns the number of re-centred
    pairs and the extra pulses.
    """
    if dw.near_edge is None or dw.edge_distance is None or dw.near_edge.numel() == 0:
        return 0, 0
    limit = 2 * margin * dw.g_half
    near = dw.near_edge[dw.edge_distance > dw.g_half - limit]
    pairs = torch.unique(near.remainder(dw.n_weights))
    if pairs.numel() == 0:
        return 0, 0
    g = dw.last_read.view(2, -1)
    common = 0.5 * (g[0, pairs] + g[1, pairs]) - dw.g_mid
    off_centre = common.abs() > limit
    pairs, common = pairs[off_centre], common[off_centre]
    cap = max_pulses - budget
    # Each device gets its own count, from its own step, so both move by the same
    # conductance and the weight keeps its mean even when the two devices differ.
    up = common < 0
    push_flat, pull_flat = plan.push.view(2, -1), plan.pull.view(2, -1)
    events = pulses = 0
    for side in (0, 1):
        step = torch.where(up, dw.mu_push.view(2, -1)[side, pairs],
                           dw.mu_pull.view(2, -1)[side, pairs])
        m = (common.abs() * (1 - planned_gain) / step).round_().clamp_(0, cap).to(plan.push.dtype)
        push_flat[side].index_add_(0, pairs, torch.where(up, m, 0))
        pull_flat[side].index_add_(0, pairs, torch.where(up, 0, m))
        if side == 0:
            events = int(torch.count_nonzero(m))
        pulses += int(m.sum())
    return events, pulses
