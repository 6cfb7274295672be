"""Re-centring of differential pairs whose devices drift together towards a track end.

A pair ``w = alpha (G+ - G-)`` keeps its weight when both devices move by the same
conductance, so its common mode ``(G+ + G-) / 2`` can be steered without changing the
weight's mean. Nothing else restores it: each device's ``K`` pulses add their noise to it
every step. Two mechanisms keep it centred: :func:`centring_shift`, every step and within
the pulse budget (no extra pulse), and :func:`recentre_pairs`, a backstop with extra
pulses for a pair that still reaches a track end. Both work on all pairs of a step at once
(:class:`~dwlab.sgld.joined.JoinedWeights`).
"""

from __future__ import annotations

import torch

from dwlab.sgld.joined import JoinedWeights


def centring_shift(pairs: JoinedWeights, gain: float) -> torch.Tensor | None:
    """The common-mode conductance change (S, one per pair, end to end) that removes
    ``gain`` of each pair's offset from the window centre at the last read-back; None when
    ``gain`` is 0 or nothing has been read yet."""
    if gain == 0 or any(dw.last_read.numel() == 0 for dw in pairs.weights):
        return None
    g = pairs.read()
    shift = pairs.work.get("centring_shift", g.shape[1:], g.dtype)
    torch.add(g[0], g[1], out=shift).sub_(2 * pairs.constant("g_mid")).mul_(-0.5 * gain)
    return shift


def recentre_pairs(
    pairs: JoinedWeights, push: torch.Tensor, pull: torch.Tensor, margin: float, budget: int,
    max_pulses: list[int], planned_gain: float = 0.0,
) -> tuple[int, list[int]]:
    """Add to the counts ``push`` and ``pull`` (``(2, n)``, in place) the common-mode
    counts that re-centre the pairs.

    Uses the last read-back. A pair counts when one device is within ``margin`` (of the
    range) of an end *and* its common mode is off-centre by more than that margin (a pair
    near the ends only because its weight is large cannot be helped). The count brings the
    pair's mean conductance back to the window centre, within ``max_pulses - budget``
    extra pulses per device (``max_pulses``: per tensor, its array's limit);
    ``planned_gain`` of the offset is already in the counts (:func:`centring_shift`), so
    only the rest is added. Returns the number of re-centred pairs and the extra pulses
    per tensor.
    """
    nothing = (0, [0] * len(pairs.weights))
    if any(dw.last_read.numel() == 0 for dw in pairs.weights):
        return nothing
    g_half = pairs.constant("g_half")
    limit = 2 * margin * g_half
    near = torch.maximum(*pairs.distance()) > g_half - limit
    index = near.nonzero().squeeze(1)
    if index.numel() == 0:
        return nothing
    g = pairs.read()
    common = (g[0, index] + g[1, index]).mul_(0.5).sub_(
        pairs.at_weights(pairs.constant("g_mid"), index))
    off_centre = common.abs() > pairs.at_weights(limit, index)
    index, common = index[off_centre], common[off_centre]
    cap = pairs.at_weights(pairs.per_weight([m - budget for m in max_pulses]), index)
    # Each device gets its own count, from its own step, so both move by the same
    # conductance and the weight keeps its mean even when the two devices differ.
    up = common < 0
    wanted = common.abs_().mul_(1 - planned_gain)
    mu_push, mu_pull = pairs.steps()
    events, extra = 0, torch.zeros_like(wanted)
    for side in (0, 1):
        step = torch.where(up, mu_push[side, index], mu_pull[side, index])
        m = torch.div(wanted, step).round_().clamp_(min=0)
        m = torch.minimum(m, torch.as_tensor(cap, dtype=m.dtype)).to(push.dtype)
        push[side].index_add_(0, index, torch.where(up, m, 0))
        pull[side].index_add_(0, index, torch.where(up, 0, m))
        if side == 0:
            events = int(torch.count_nonzero(m))
        extra.add_(m)
    return events, [int(v) for v in pairs.segments.sums(extra, at=index)]
