"""Goodness of fit: two-sample Kolmogorov-Smirnov tests of held-out measured steps
against simulated ones, with effective sample sizes because steps cluster by device."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from dwlab.sim.calibration.records import ConditionKey, Steps


@dataclass
class KSResult:
    amplitude_volts: float
    width_seconds: float
    polarity: int
    n_measured: int
    n_simulated: int
    statistic: float
    p_value: float
    """Two-sample KS p-value with effective sample sizes (steps cluster by device)."""
    p_value_iid: float
    """The textbook p-value, treating every step as independent."""
    design_effect_measured: float
    design_effect_simulated: float


def design_effect(values: np.ndarray, groups: np.ndarray) -> float:
    """``1 + (m - 1) * icc``: how much clustering by device inflates the variance of
    statistics of ``values`` (one-way ANOVA intra-class correlation, clipped to [0, 1])."""
    labels, counts = np.unique(groups, return_counts=True)
    k, n = len(labels), len(values)
    if k < 2 or n <= k:
        return 1.0
    means = np.array([values[groups == g].mean() for g in labels])
    msb = (counts * (means - values.mean()) ** 2).sum() / (k - 1)
    msw = sum(((values[groups == g] - mu) ** 2).sum()
              for g, mu in zip(labels, means, strict=True)) / (n - k)
    m0 = (n - (counts**2).sum() / n) / (k - 1)
    denominator = msb + (m0 - 1) * msw
    icc = (msb - msw) / denominator if denominator > 0 else 0.0
    return float(1.0 + (counts.mean() - 1.0) * min(max(icc, 0.0), 1.0))


def ks_compare(
    measured: dict[ConditionKey, Steps], simulated: dict[ConditionKey, Steps]
) -> list[KSResult]:
    """Two-sample KS test per (amplitude, width, polarity) present in both.

    Steps of one device share that device's parameters, so they are not independent; the
    p-value used for decisions replaces each sample size by ``n / design_effect`` in the
    asymptotic Kolmogorov distribution (the plain p-value is kept for reference).
    """
    from scipy.stats import ks_2samp, kstwobign

    out = []
    for key in sorted(set(measured) & set(simulated)):
        m, sim = measured[key], simulated[key]
        if len(m.delta) < 2 or len(sim.delta) < 2:
            continue
        res = ks_2samp(m.delta, sim.delta)
        de_m, de_s = design_effect(m.delta, m.device), design_effect(sim.delta, sim.device)
        n1, n2 = len(m.delta) / de_m, len(sim.delta) / de_s
        p = float(kstwobign.sf(res.statistic * np.sqrt(n1 * n2 / (n1 + n2))))
        out.append(KSResult(key[0], key[1], key[2], len(m.delta), len(sim.delta),
                            float(res.statistic), max(p, float(res.pvalue)),
                            float(res.pvalue), de_m, de_s))
    return out
