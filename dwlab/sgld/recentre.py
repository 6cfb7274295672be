"""Re-centring of differential pairs whose devices drift together towards a track end.

A pair ``w = alpha (G+ - G-)`` keeps its weight when both devices move by the same count,
so a pair near an end only because its common mode drifted can be brought back to the
window centre without changing the weight's mean (the extra pulses add their noise).
"""

from __future__ import annotations

import torch

from dwlab.core.types import PulsePlan
from dwlab.sgld.weight import DeviceWeight


def recentre_pairs(
    dw: DeviceWeight, plan: PulsePlan, margin: float, budget: int, max_pulses: int
) -> tuple[int, int]:
    """Add to ``plan`` (in place) the common-mode counts that re-centre ``dw``'s pairs.

    Uses the last read-back. A pair counts when one device is within ``margin`` (of the
    range) of an end *and* its common mode is off-centre by more than that margin (a pair
    near the ends only because its weight is large cannot be helped). The count brings the
    pair's mean conductance back to the window centre, within ``max_pulses - budget``
    extra pulses per device. Returns the number of re-centred pairs and the extra pulses.
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
        m = (common.abs() / step).round_().clamp_(0, cap).to(plan.push.dtype)
        push_flat[side].index_add_(0, pairs, torch.where(up, m, 0))
        pull_flat[side].index_add_(0, pairs, torch.where(up, 0, m))
        if side == 0:
            events = int(torch.count_nonzero(m))
        pulses += int(m.sum())
    return events, pulses
