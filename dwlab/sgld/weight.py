"""One weight tensor and the device array that holds it: ``w = alpha * (G - G_ref)`` for
one device per weight, ``w = alpha * (G+ - G-)`` for a differential pair."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TypedDict

import torch

from dwlab.core.device import DeviceArray
from dwlab.core.types import PulseReceipt, PulseShape
from dwlab.sgld.planner import DeviceScale
from dwlab.sgld.readback import conductance_after

SATURATION_MARGIN = 0.05
"""A device within this fraction of the conductance range of a track end counts as saturated."""
PROGRAM_MARGIN = 0.02
"""Initial targets are kept this fraction of the range away from the track ends."""


class ProgramReport(TypedDict):
    """How program-and-verify went for one tensor."""

    rounds: int
    pulses: int
    rms_error_weight: float
    weight_window: float
    """Largest weight span the conductance window holds."""


@dataclass
class DeviceWeight:
    """One weight tensor and the device array that holds it."""

    name: str
    array_name: str
    param: torch.Tensor
    array: DeviceArray
    pair: bool
    alpha: float
    """Weight per siemens."""
    g_mid: float
    """Centre of the nominal conductance window (``G_ref`` of single devices)."""
    g_half: float
    """Half the nominal conductance range."""
    mu_push: torch.Tensor
    """Each device's mean conductance change of one push (S, array shape), measured while
    programming (the nominal step until then)."""
    mu_pull: torch.Tensor
    sigma: float
    """Conductance spread of one update pulse (S), from ``describe()`` scaled to its width."""
    pulse: PulseShape
    """The update pulse (:func:`dwlab.sgld.maths.update_pulse`)."""
    last_read: torch.Tensor = field(default_factory=lambda: torch.empty(0))
    """Conductances of the last read-back (array shape, on the parameter's device)."""
    program_report: ProgramReport | None = None
    refine_state: torch.Tensor | None = None
    """What refines the steps during training (:mod:`dwlab.sgld.refine`); None until
    programmed."""
    read_variance: float = 0.0
    """Variance of one read-back (S^2), measured while programming."""
    _mean_step: float = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._mean_step = 0.5 * float(self.mu_push.mean() + self.mu_pull.mean())

    @property
    def n_weights(self) -> int:
        return self.param.numel()

    @property
    def mean_step(self) -> float:
        """The array's mean step, push and pull alike (S), as the steps were last set
        (calibration, checkpoint). Refining them in training leaves it: that moves each
        device's push and pull steps apart, by a few per cent, not their mean."""
        return self._mean_step

    def precision(self, budget: int) -> dict[str, float]:
        """What ``budget`` pulses per update mean for this tensor, in weight units:
        the window, one rounding unit (one more push for one fewer pull on one device), the
        largest update (every device of a weight all one way), and the weight resolution
        ``log2(window / unit)`` in bits."""
        window = self.alpha * self.g_half * 2 * (2 if self.pair else 1)
        unit = self.alpha * 2 * self.mean_step
        largest = self.alpha * budget * self.mean_step * (2 if self.pair else 1)
        return {"weight_window": window, "weight_unit": unit, "largest_update": largest,
                "largest_update_fraction": largest / window,
                "resolution_bits": math.log2(window / unit)}

    def scale(self) -> DeviceScale:
        return DeviceScale(self.alpha, self.mu_push, self.mu_pull)

    def set_steps(self, mu_push: torch.Tensor | float, mu_pull: torch.Tensor | float) -> None:
        """Take per-device steps (or one step for every device), in the array's shape."""
        shape = (2, *self.param.shape) if self.pair else tuple(self.param.shape)
        device, dtype = self.param.device, self.param.dtype
        self.mu_push = torch.as_tensor(mu_push, dtype=dtype, device=device).expand(shape).clone()
        self.mu_pull = torch.as_tensor(mu_pull, dtype=dtype, device=device).expand(shape).clone()
        self._mean_step = 0.5 * float(self.mu_push.mean() + self.mu_pull.mean())

    def write_weights(self) -> None:
        """Set the parameter to the weights the devices hold (from ``last_read``)."""
        g = self.last_read
        with torch.no_grad():
            if self.pair:
                torch.sub(g[0], g[1], out=self.param.data)
            else:
                torch.sub(g, self.g_mid, out=self.param.data)
            self.param.data.mul_(self.alpha)

    def target_conductance(self, weights: torch.Tensor) -> torch.Tensor:
        """Conductances that represent ``weights``, kept inside the window."""
        lo = self.g_mid - self.g_half * (1 - 2 * PROGRAM_MARGIN)
        hi = self.g_mid + self.g_half * (1 - 2 * PROGRAM_MARGIN)
        if self.pair:
            half = weights / (2 * self.alpha)
            target = torch.stack((self.g_mid + half, self.g_mid - half))
        else:
            target = self.g_mid + weights / self.alpha
        return target.clamp_(lo, hi)

    def read(self, n_averages: int, after: PulseReceipt | None = None) -> torch.Tensor:
        """The conductances now; ``after`` an apply, from its receipt where it has them."""
        if after is None:
            g = self.array.read(n_averages=n_averages).conductance_siemens
        else:
            g = conductance_after(self.array, after, n_averages)
        return g.to(self.param.device, self.param.dtype)

    def accept_read(self, g: torch.Tensor) -> None:
        """Take a read-back: remember it and set the weights."""
        self.last_read = g
        self.write_weights()

    def meta(self) -> dict[str, str | bool | float]:
        """The mapping onto the array (stored with the controller's state)."""
        return {
            "array": self.array_name, "pair": self.pair, "alpha": self.alpha,
            "g_mid": self.g_mid, "g_half": self.g_half,
            "mu_push": float(self.mu_push.mean()), "mu_pull": float(self.mu_pull.mean()),
            "mu_push_spread": float(self.mu_push.std()) if self.mu_push.numel() > 1 else 0.0,
            "sigma": self.sigma,
            "pulse_width_seconds": self.pulse.width_seconds,
        }
