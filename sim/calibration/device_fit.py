"""Per-device fits of the drive law: step means and spreads over pulse conditions."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np


@dataclass
class Conditions:
    """Per-condition aggregates of one device's steps (arrays over conditions)."""

    amplitude: np.ndarray
    width: np.ndarray
    polarity: np.ndarray
    n: np.ndarray
    mean: np.ndarray
    """Mean step in the pulse's direction (polarity * delta), siemens."""
    var: np.ndarray
    read_var: np.ndarray
    """Read-noise variance contained in each step."""


def aggregate_conditions(
    amp: np.ndarray, width: np.ndarray, pol: np.ndarray, delta: np.ndarray,
    read_var: np.ndarray,
) -> Conditions:
    """One device's steps (one entry per step) aggregated per condition."""
    keys: dict[tuple[float, float, float, float], list[int]] = defaultdict(list)
    for k, key in enumerate(zip(amp, width, pol, read_var, strict=True)):
        keys[key].append(k)
    cols: dict[str, list[float]] = defaultdict(list)
    for (a, w, s, rv), idx in keys.items():
        d = delta[idx] * s
        cols["amplitude"].append(a)
        cols["width"].append(w)
        cols["polarity"].append(s)
        cols["n"].append(len(idx))
        cols["mean"].append(d.mean())
        cols["var"].append(d.var(ddof=1) if len(idx) > 1 else rv)
        cols["read_var"].append(rv)
    return Conditions(**{k: np.asarray(v, dtype=float) for k, v in cols.items()})


V_TH_SEARCH = (0.0, 0.995)
"""The threshold search interval, as fractions of the reference amplitude."""


@dataclass
class DeviceFit:
    v_th: float
    mu: dict[int, float]
    """Polarity -> mean step at the reference pulse, siemens."""
    sigma: dict[int, float]
    """Polarity -> step spread at the reference pulse, siemens."""


def fit_device(c: Conditions, a0: float, w0: float) -> DeviceFit:
    """Weighted least squares of ``mean = k_s * max(A - v_th, 0) * w / w0``, profiled over a
    ``v_th`` shared by both polarities; then ``sigma_s^2`` from excess variance over drive."""
    weight = c.n / np.maximum(c.var, c.read_var)
    low, high = V_TH_SEARCH[0] * a0, V_TH_SEARCH[1] * a0
    grid = np.linspace(low, high, 400)

    def sse(v_th: np.ndarray) -> tuple[np.ndarray, dict[int, np.ndarray]]:
        x = np.clip(c.amplitude[None, :] - v_th[:, None], 0, None) * (c.width / w0)[None, :]
        total = np.zeros(len(v_th))
        slopes = {}
        for s in (1, -1):
            sel = c.polarity == s
            wx, xs, ys = weight[sel] * x[:, sel], x[:, sel], c.mean[sel]
            k = (wx * ys).sum(1) / np.maximum((wx * xs).sum(1), 1e-300)
            total += (weight[sel] * (ys - k[:, None] * xs) ** 2).sum(1)
            slopes[s] = k
        return total, slopes

    errors, _ = sse(grid)
    best = int(np.argmin(errors))
    step = grid[1] - grid[0]
    fine = np.linspace(max(grid[best] - step, low), min(grid[best] + step, high), 201)
    errors, slopes = sse(fine)
    j = int(np.argmin(errors))
    v_th = float(fine[j])
    mu, sigma = {}, {}
    for s in (1, -1):
        mu[s] = float(slopes[s][j] * (a0 - v_th))
        sel = c.polarity == s
        f = np.clip(c.amplitude[sel] - v_th, 0, None) / (a0 - v_th) * c.width[sel] / w0
        moving = f > 0
        excess = (c.n[sel] * (c.var[sel] - c.read_var[sel]))[moving].sum()
        drive = (c.n[sel] * f)[moving].sum()
        sigma[s] = float(np.sqrt(max(excess, 0.0) / drive)) if drive > 0 else 0.0
    return DeviceFit(v_th, mu, sigma)
