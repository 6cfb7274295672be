"""The order a hardware array fires a pulse plan in: groups of one pulse shape (one pulser
configuration each), and per device its bursts."""

from __future__ import annotations

from dwlab.core.types import PULL, PUSH, Bursts, PulsePlan, PulseShape, interleaved

Groups = list[tuple[PulseShape, list[tuple[int, Bursts]]]]
"""(pulse shape, [(flat device index, bursts)]) in firing order."""


def firing_groups(plan: PulsePlan, strategy: str = "grouped") -> Groups:
    """The plan as (pulse shape, [(device, bursts)]) in the order it will be fired.

    One shape: per device, push and pull alternating while both remain, then the surplus
    (the twin's order). Two shapes: a push block, then a pull block. grouped: one group per
    pulse shape. naive (the baseline of the HIL benchmark): the same bursts, but a group, so
    a pulser configuration, for every device and shape.
    """
    push = plan.push.reshape(-1).tolist()
    pull = plan.pull.reshape(-1).tolist()
    if plan.push_shape == plan.pull_shape:
        items = [(i, interleaved(push[i], pull[i])) for i in range(len(push))
                 if push[i] or pull[i]]
        grouped = [(plan.push_shape, items)] if items else []
    else:
        grouped = []
        for polarity, counts, shape in ((PUSH, push, plan.push_shape),
                                        (PULL, pull, plan.pull_shape)):
            items = [(i, [(polarity, n)]) for i, n in enumerate(counts) if n]
            if items:
                grouped.append((shape, items))
    if strategy == "naive":
        per_device = [(shape, [item]) for shape, items in grouped for item in items]
        return sorted(per_device, key=lambda group: group[1][0][0])  # device order
    return grouped
