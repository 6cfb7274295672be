"""The calibration verdict: PASS, MISFIT or INSUFFICIENT DATA, with its reasons.

MISFIT when any condition fails a held-out test (:mod:`.goodness`), or the fit itself shows
the model straining: fitted thresholds piled at the search bound, device-to-device spreads
too large for the model's own Gaussian spread (it clamps values at 5 % of nominal), or
condition means that the fitted drive law misses by more than the Bonferroni bound of their
standard errors (from device means). Each failed condition is named with the physics its
failed tests point to. INSUFFICIENT DATA when too few devices, steps or conditions remain
for the tests to mean anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from dwlab.sim.calibration.device_fit import V_TH_SEARCH
from dwlab.sim.calibration.estimate import Calibration, model_mean_step
from dwlab.sim.calibration.goodness import ConditionCheck

PASS, MISFIT, INSUFFICIENT = "PASS", "MISFIT", "INSUFFICIENT DATA"
MIN_DEVICES = 8
"""Fewer devices than this cannot test device-to-device spread."""
MIN_CONDITIONS = 4
MAX_PLAUSIBLE_SPREAD = 0.5
"""A relative spread beyond this is outside what the model's Gaussian spread describes."""
AT_BOUND_FRACTION = 0.25
"""More devices than this fraction with a threshold at a search bound is a flag."""


@dataclass
class Verdict:
    verdict: str
    reasons: list[str]
    checks: list[ConditionCheck]
    flags: list[str] = field(default_factory=list)
    """Problems of the fit itself (bounds, spreads, systematic residuals)."""

    @property
    def passed(self) -> bool:
        return self.verdict == PASS

    def to_data(self) -> dict:
        return {"verdict": self.verdict, "reasons": list(self.reasons),
                "failed_conditions": [c.label for c in self.checks if not c.passed],
                "conditions": len(self.checks), "flags": list(self.flags)}


def physics_of(check: ConditionCheck, model_moves: bool) -> list[str]:
    """What a failed condition's tests point to. ``model_moves``: the fitted model predicts
    wall motion at this condition (above the threshold of most devices)."""
    failed, out = check.failed, []
    if "shape" in failed:
        kurt_m, kurt_s = check.excess_kurtosis
        out.append("heavy tails (steps not Gaussian)" if kurt_m > kurt_s + 0.5 else
                   "step distribution shape (several modes or truncation)")
    if "mean" in failed:
        out.append("drive law (mean step vs amplitude and width)" if model_moves else
                   "motion below the fitted threshold (creep)")
    if "variance" in failed:
        out.append("step spread vs drive" if model_moves else
                   "read noise (spread without wall motion)")
    if "spread" in failed and "mean" not in failed:
        out.append("device-to-device spread")
    return out


def fit_flags(cal: Calibration, alpha: float) -> list[str]:
    """Signs inside the fit that the model does not describe the devices."""
    from scipy.stats import norm

    flags = []
    a0 = cal.reference[0]
    v_th = cal.per_device["v_th"]
    for name, bound in (("lower", V_TH_SEARCH[0] * a0), ("upper", V_TH_SEARCH[1] * a0)):
        at = np.abs(v_th - bound) <= 1e-3 * a0
        if at.mean() > AT_BOUND_FRACTION:
            flags.append(f"threshold v_th at its {name} search bound ({bound:g} V) for "
                         f"{int(at.sum())} of {len(v_th)} devices")
    for name in ("mu_spread", "sigma_spread", "v_th_spread"):
        value = float(getattr(cal.params, name))
        if value > MAX_PLAUSIBLE_SPREAD:
            flags.append(f"{name} = {value:.2g}: implausibly large (the model's Gaussian "
                         f"spread holds up to about {MAX_PLAUSIBLE_SPREAD:g})")
    # Fitted condition means against the drive law, in standard errors from device means.
    conditions = cal.fit_conditions
    if conditions:
        z_max = float(norm.isf(alpha / (2 * len(conditions))))
        bad = []
        for c in conditions:
            z = (c["mean_siemens"] - model_mean_step(
                cal, c["amplitude_volts"], c["width_seconds"], int(c["polarity"]))) / max(
                c["se_siemens"], 1e-300)
            if abs(z) > z_max:
                bad.append(f"{_label(c)} ({z:+.1f} se)")
        if bad:
            flags.append(f"systematic residuals of the mean step against the fitted drive "
                         f"law (bound {z_max:.1f} se): {', '.join(bad)}")
    return flags


def _label(c: dict) -> str:
    return (f"{c['amplitude_volts']:g} V, {c['width_seconds']:g} s, "
            f"{'push' if c['polarity'] > 0 else 'pull'}")


def decide(cal: Calibration, checks: list[ConditionCheck], alpha: float, *,
           fit: bool = True) -> Verdict:
    """The verdict on a calibration and its held-out checks of a twin; ``fit=False`` judges
    the checks alone (a twin that is not the parametric fit, e.g. a jump table)."""
    devices = len(cal.per_device["device"])
    short = []
    if devices < MIN_DEVICES:
        short.append(f"{devices} devices calibrated; the tests need at least {MIN_DEVICES}")
    if len(checks) < MIN_CONDITIONS:
        short.append(f"{len(checks)} conditions with held-out steps of two or more per device; "
                     f"the tests need at least {MIN_CONDITIONS} (lower --heldout-every or "
                     f"raise repeats)")
    if short:
        return Verdict(INSUFFICIENT, short, checks)
    e = cal.per_device
    for c in checks:
        amplitude, width, _ = c.key
        moving = (amplitude - e["v_th"] > 0).mean() > 0.5
        c.disagreements = physics_of(c, bool(moving)) if c.failed else []
    flags = fit_flags(cal, alpha) if fit else []
    failed = [c for c in checks if not c.passed]
    if not failed and not flags:
        worst = min(min(c.p.values()) for c in checks)
        return Verdict(PASS, [f"all {len(checks)} conditions agree with the "
                              f"{'calibrated' if fit else 'jump-table'} twin "
                              f"(smallest p = {worst:.2g}, per-test level "
                              f"{checks[0].threshold:.2g})"], checks, flags)
    reasons = []
    by_physics: dict[str, list[str]] = {}
    for c in failed:
        for what in c.disagreements:
            by_physics.setdefault(what, []).append(c.label)
    for what, labels in by_physics.items():
        reasons.append(f"{what}: {len(labels)} condition(s): {'; '.join(labels)}")
    if failed:
        reasons.insert(0, f"{len(failed)} of {len(checks)} conditions disagree with the "
                          f"{'calibrated' if fit else 'jump-table'} twin")
    return Verdict(MISFIT, reasons + flags, checks, flags)
