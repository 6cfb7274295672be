"""The device weights of one step laid end to end, as the planner lays them.

A step's work beyond the plan (the common-mode shift, re-centring, the watch on saturated
devices, the read-back's statistics) is a few operations per tensor; at ResNet18's 21
small tensors their per-call cost, not their arithmetic, set the update's time. Here it
runs once over every device of one torch device and dtype: pairs as ``(2, n)`` (row 0 the
``+`` devices), single devices as ``(n,)``, tensor after tensor along ``n``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from dwlab.core.tensors import laid_end_to_end
from dwlab.sgld.planner import Segments
from dwlab.sgld.weight import SATURATION_MARGIN, DeviceWeight
from dwlab.sgld.workspace import Workspace


class JoinedWeights:
    """Device weights (one torch device and dtype, all pairs or all single devices) end to
    end: their steps, read-backs and per-tensor constants as whole vectors."""

    def __init__(self, weights: Sequence[DeviceWeight], work: Workspace):
        self.weights = list(weights)
        self.pair = self.weights[0].pair
        if any(dw.pair != self.pair for dw in self.weights):
            raise ValueError("joined weights must be all pairs or all single devices")
        self.rows = 2 if self.pair else 1
        self.sizes = [dw.n_weights for dw in self.weights]
        self.n = sum(self.sizes)
        self.segments = Segments.kept(work, self.sizes)
        self.work = work

    def per_weight(self, values: Sequence[float]) -> float | torch.Tensor:
        """One number per tensor, as one number when all agree, else one per weight."""
        if all(v == values[0] for v in values):
            return float(values[0])
        return self.segments.per_weight(values, self.weights[0].param.dtype)

    def constant(self, name: str) -> float | torch.Tensor:
        """A per-tensor attribute of the weights (``g_mid``, ``g_half``, ``alpha``,
        ``mean_step``) per weight."""
        return self.per_weight([getattr(dw, name) for dw in self.weights])

    def steps(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Every device's measured push and pull step, end to end (the same joined tensors
        as the planner's, which keeps them under these keys in the same workspace)."""
        push, pull = (self.work.end_to_end(which, [getattr(dw, which) for dw in self.weights],
                                           self.rows) for which in ("mu_push", "mu_pull"))
        return push, pull

    def bind(self, attr: str, lead: int = 0) -> torch.Tensor:
        """Every weight's tensor ``attr`` (``lead`` leading dims, then the array's shape)
        joined along the devices, ``(*lead dims, rows, n)`` (no ``rows`` dim for single
        devices), with each weight's tensor made a view of it: a write to either is a
        write to both, so nothing is copied back per tensor."""
        parts = [getattr(dw, attr) for dw in self.weights]
        base = laid_end_to_end(parts, self.rows, lead)
        if base is not None:
            return base
        lead_shape = parts[0].shape[:lead]
        rows = (self.rows,) if self.pair else ()
        joined = torch.cat([p.reshape(*lead_shape, *rows, -1) for p in parts], dim=-1)
        for (_, start, stop), dw, part in zip(self.segments.bounds(), self.weights, parts,
                                             strict=True):
            setattr(dw, attr, joined[..., start:stop].view(part.shape))
        return joined

    def read(self) -> torch.Tensor:
        """The last read-back of every device, end to end."""
        return self.work.end_to_end("joined_read", [dw.last_read for dw in self.weights],
                                    self.rows)

    def distance(self) -> torch.Tensor:
        """``|G - g_mid|`` of every device at the last read-back (computed once per
        read-back)."""
        g = self.read()
        return self.work.derived("joined_distance", [g],
                                 lambda: torch.sub(g, self.constant("g_mid")).abs_())

    def saturated(self, distance: torch.Tensor) -> torch.Tensor:
        """Which devices lie within :data:`SATURATION_MARGIN` of a track end."""
        return distance > self.constant("g_half") * (1 - 2 * SATURATION_MARGIN)

    def at_weights(self, values: float | torch.Tensor, weights: torch.Tensor
                   ) -> float | torch.Tensor:
        """A per-weight constant at some weight indices (a number stays a number)."""
        return values if isinstance(values, float) else values[weights]
