"""Diagnostics of one SGLD chain from a scalar trace (the training loss, a weight projection).

- :func:`autocorrelation_time`: the integrated autocorrelation time
  ``tau = 1 + 2 * sum_k rho_k``, summed up to Sokal's automatic window (the smallest ``M``
  with ``M >= c * tau(M)``), corrected for the bias of the mean's subtraction; the chain
  yields one independent draw per ``tau`` steps, so ``tau`` is the thinning that keeps
  samples nearly uncorrelated and ``n / tau`` the effective sample size.
- :func:`stationarity`: a Geweke-style test that the first and second halves of a window
  share their mean, with each half's variance of the mean corrected for its
  autocorrelation (both measured about a straight-line fit inside the half). A chain
  still descending fails it; one at its stationary regime passes (for ``|z| <= 2``: about
  95 % of uncorrelated traces, 90 % of AR(1) traces with ``phi = 0.5`` and 200 steps;
  tests/test_posterior.py measures both).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

SOKAL_WINDOW = 5.0
"""Sokal's window factor ``c``: sum the autocorrelations up to ``M >= c * tau(M)``."""


@dataclass(frozen=True)
class AutocorrelationTime:
    """``tau`` of a trace of ``n`` values; ``reliable`` is False when the trace was too
    short for Sokal's window (then ``tau`` is a lower bound)."""

    tau: float
    n: int
    reliable: bool

    @property
    def ess(self) -> float:
        """Effective sample size ``n / tau``."""
        return self.n / self.tau


def autocorrelation(trace: Sequence[float] | np.ndarray) -> np.ndarray:
    """Normalised autocorrelation ``rho_k`` for ``k = 0 .. n-1`` (FFT, biased estimator)."""
    x = np.asarray(trace, dtype=float)
    x = x - x.mean()
    n = len(x)
    if n < 2 or not np.any(x):
        return np.concatenate([[1.0], np.zeros(max(0, n - 1))])
    size = 1 << (2 * n - 1).bit_length()
    spectrum = np.fft.rfft(x, size)
    acov = np.fft.irfft(spectrum * np.conj(spectrum), size)[:n]
    return acov / acov[0]


def autocorrelation_time(trace: Sequence[float] | np.ndarray) -> AutocorrelationTime:
    """Integrated autocorrelation time with Sokal's automatic window (see module doc)."""
    rho = autocorrelation(trace)
    n = len(rho)
    if n < 2:
        return AutocorrelationTime(1.0, n, False)
    taus = 2.0 * np.cumsum(rho) - 1.0  # tau(M) = 1 + 2 sum_{k=1..M} rho_k
    windows = np.arange(n)
    fits = np.nonzero(windows >= SOKAL_WINDOW * taus)[0]
    if len(fits) == 0 or 2 * fits[0] >= n:  # too short to see the correlations end
        return AutocorrelationTime(max(1.0, float(taus[: n // 2 + 1].max())), n, False)
    window = fits[0]
    # Subtracting the trace's own mean lowers every rho_k by about tau / n, so tau(M) by
    # about 2 M tau / n; undone here (it matters on short traces: the stationarity test).
    tau = float(taus[window]) / (1.0 - 2.0 * window / n)
    return AutocorrelationTime(max(1.0, tau), n, True)


@dataclass(frozen=True)
class Stationarity:
    """Geweke-style comparison of a window's halves: ``z`` is the difference of their means
    over its standard error (autocorrelation-corrected); stationary when ``|z| <= limit``."""

    z: float
    limit: float
    steps: int

    @property
    def stationary(self) -> bool:
        return abs(self.z) <= self.limit


def stationarity(trace: Sequence[float] | np.ndarray, limit: float = 2.0) -> Stationarity:
    """Do the first and second halves of ``trace`` share their mean? (see module doc)."""
    x = np.asarray(trace, dtype=float)
    if len(x) < 8:
        raise ValueError(f"a stationarity test needs at least 8 values, got {len(x)}")
    half = len(x) // 2
    first, second = x[:half], x[-half:]
    var = sum(_variance_of_mean(part) for part in (first, second))
    diff = float(second.mean() - first.mean())
    z = diff / math.sqrt(var) if var > 0 else (0.0 if diff == 0 else math.copysign(math.inf, diff))
    return Stationarity(z=z, limit=limit, steps=len(x))


def _variance_of_mean(x: np.ndarray) -> float:
    """Variance of the mean of an autocorrelated trace, ``var * tau / n``, measured on the
    residuals of a straight-line fit: a trend inside a half would otherwise pass for
    autocorrelation and hide the descent the test is for (a false alarm only delays
    sampling; a missed descent samples the transient)."""
    t = np.arange(len(x), dtype=float)
    residuals = x - np.polyval(np.polyfit(t, x, 1), t)
    return float(residuals.var(ddof=2)) * autocorrelation_time(residuals).tau / len(x)
