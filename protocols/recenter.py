"""Re-centring: bringing the selected walls near mid-track with nominal pulses, within a
per-device pulse budget that the estimate can bound."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from dwlab.protocols.estimate import Estimate, Target
from dwlab.protocols.params import param

if TYPE_CHECKING:
    from dwlab.protocols.context import RunContext

RECENTER_ITERATIONS = 3
RECENTER_HELP = ("most nominal pulses per device one re-centring may spend; empty: enough to "
                 "cross 3/4 of the nominal conductance range (within the pulse limit)")
RECENTER_AVERAGES = 4


def recenter_param() -> int | None:
    """The ``recenter_max_pulses`` parameter that :meth:`Protocol.recenter_cap` reads."""
    return param(None, min=0, help=RECENTER_HELP)


def recenter_walls(ctx: RunContext, max_pulses: int, iterations: int = RECENTER_ITERATIONS) -> None:
    """Bring the selected walls near mid-track with nominal pulses, using the array's
    nominal step: a few corrective iterations spending at most ``max_pulses`` per device
    in total (so the estimate can bound it)."""
    t = ctx.target
    if t.step_siemens <= 0 or max_pulses <= 0:
        return
    mid = 0.5 * (t.conductance_min_siemens + t.conductance_max_siemens)
    budget = torch.full((ctx.n,), max_pulses, dtype=torch.long)
    for _ in range(iterations):
        g = ctx.read(RECENTER_AVERAGES)
        n = torch.round((mid - g) / t.step_siemens).long()
        n = torch.maximum(torch.minimum(n, budget), -budget)
        if int(n.abs().max()) <= 1:
            return
        budget -= n.abs()
        ctx.apply(n.clamp(min=0), (-n).clamp(min=0), t.nominal_pulse)


def default_recenter_cap(target: Target) -> int:
    """The budget when none is given: what crosses 3/4 of the nominal range at the nominal
    step, within the pulse limit (0 where the array has no nominal step)."""
    if target.step_siemens <= 0:
        return 0
    span = target.conductance_max_siemens - target.conductance_min_siemens
    return int(min(target.limits.max_pulses_per_device,
                   math.ceil(0.75 * span / target.step_siemens)))


def add_recenter(est: Estimate, target: Target, devices: int, max_pulses: int,
                 count: int = 1) -> None:
    """Upper bound of what :func:`recenter_walls` may do, ``count`` times."""
    if max_pulses <= 0:
        return
    est.add_shape(target.nominal_pulse)
    est.add_apply(max_pulses, devices, count)
    est.add_reads(devices, RECENTER_AVERAGES, RECENTER_ITERATIONS * count)


def periodic_cap(first_cap: int, pulses_since: int) -> int:
    """Budget of a re-centring after ``pulses_since`` pulses per device: the walls cannot
    have wandered much further than those pulses moved them, so twice that suffices."""
    return min(first_cap, 2 * pulses_since)
