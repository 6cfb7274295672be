"""Fit the continuous twin's ``TwinParams`` to protocol records, with uncertainties.

Inputs are record folders written by ``dwlab.protocols`` (read as data, never imported):
- ``device_map`` -> per-device conductance at both track ends (``g_p``, ``g_ap``, ``g_spread``);
- ``read_noise`` -> per-device spread of single reads (``read_noise_siemens``);
- ``switching_statistics`` -> single-pulse steps over amplitude x width x polarity.

Model (``sim/physics.py``): for device ``i`` a pulse of polarity ``s`` moves the wall by
``mu_s,i * f`` on average with spread ``sigma_s,i * sqrt(f)``, where
``f = max(A - v_th,i, 0) / (A0 - v_th,i) * w / w0`` and ``(A0, w0)`` is the reference
(nominal) pulse. Steps in siemens are divided by each device's measured range
``g_max,i - g_min,i`` to give track fractions. Each measured step also carries the read
noise of the two averaged readings around it, ``2 sigma_read^2 / n_averages``, which is
subtracted from the step variance.

Per device: ``v_th`` and the two slopes are fitted by weighted least squares on the
condition means (profiled over ``v_th``); ``sigma`` by the ratio of excess variance to drive.
Population values are device means. Device-to-device spreads are estimated without the
per-device estimation noise from the covariance of two independent halves of the repeats.
Uncertainties are bootstrap standard errors over devices (for the spreads, at least their
normal-theory standard error, since the bootstrap is optimistic with few devices). Every
``heldout_every``-th repeat is held out of the fit for the goodness-of-fit test (two-sample
Kolmogorov-Smirnov between measured and simulated step distributions, with effective sample
sizes because steps cluster by device).
"""

from __future__ import annotations

import dataclasses
import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from dwlab.sim.twin import TwinParams

from dwlab.core.errors import DatasetError
from dwlab.records import read_table

FITTED = ("mu_push", "mu_pull", "sigma_push", "sigma_pull", "v_th_volts", "g_p_siemens",
          "g_ap_siemens", "read_noise_siemens", "mu_spread", "sigma_spread", "v_th_spread",
          "g_spread")
UNITS = {"mu_push": "track/pulse", "mu_pull": "track/pulse", "sigma_push": "track/pulse",
         "sigma_pull": "track/pulse", "v_th_volts": "V", "g_p_siemens": "S",
         "g_ap_siemens": "S", "read_noise_siemens": "S", "mu_spread": "relative",
         "sigma_spread": "relative", "v_th_spread": "relative", "g_spread": "relative"}


# ---------------------------------------------------------------------------
# records


@dataclass
class Record:
    folder: Path
    meta: dict[str, Any]
    tables: dict[str, list[dict[str, str]]]

    @property
    def protocol(self) -> str:
        return self.meta.get("protocol", "")


def load_records(folders: list[str | Path]) -> list[Record]:
    """Every protocol record under the given folders (a script run or single steps)."""
    found = []
    for top in folders:
        top = Path(top)
        if not top.is_dir():
            raise DatasetError(f"{top}: not a record folder")
        for meta_path in sorted(top.rglob("metadata.json")):
            try:
                meta = json.loads(meta_path.read_text())
            except (OSError, json.JSONDecodeError) as exc:
                raise DatasetError(f"{meta_path}: unreadable metadata ({exc})") from None
            if meta.get("kind") != "protocol":
                continue
            tables = {name: read_table(meta_path.parent / f"{name}.csv")
                      for name in meta.get("tables", {})
                      if (meta_path.parent / f"{name}.csv").exists()}
            found.append(Record(meta_path.parent, meta, tables))
    return found


def _need(records: list[Record], protocol: str) -> list[Record]:
    chosen = [r for r in records if r.protocol == protocol and any(r.tables.values())]
    if not chosen:
        raise DatasetError(f"calibration needs a '{protocol}' record with data; none found")
    return chosen


# ---------------------------------------------------------------------------
# per-device fits


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


def _conditions(amp, width, pol, delta, read_var) -> Conditions:
    keys = defaultdict(list)
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
    grid = np.linspace(0.0, a0 * 0.995, 400)

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
    fine = np.linspace(max(grid[best] - step, 0.0), min(grid[best] + step, a0 * 0.995), 201)
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


# ---------------------------------------------------------------------------
# the whole calibration


@dataclass
class Steps:
    """Steps (siemens) of one condition and the device each came from."""

    delta: np.ndarray
    device: np.ndarray


@dataclass
class Calibration:
    params: TwinParams
    stderr: dict[str, float]
    reference: tuple[float, float]
    """Reference pulse (amplitude volts, width seconds) the step parameters refer to."""
    per_device: dict[str, np.ndarray]
    sources: list[str]
    switching_params: dict[str, Any]
    """Parameters of the switching record, so a simulation can repeat it exactly."""
    limits: dict[str, Any] = field(default_factory=dict)
    """Pulse limits of the measured array (from the switching record)."""
    fit_conditions: list[dict[str, float]] = field(default_factory=list)
    """Per (amplitude, width, polarity): measured mean/sd of the fitted steps (siemens)."""
    heldout: dict[tuple[float, float, int], Steps] = field(default_factory=dict)
    """Held-out measured steps per (amplitude, width, polarity)."""

    def values(self) -> dict[str, float]:
        return {name: float(getattr(self.params, name)) for name in FITTED}


def _rows_array(rows: list[dict[str, str]], keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    return {k: np.array([float(r[k]) for r in rows]) for k in keys}


def _per_device_mean(records: list[Record], table: str, keys: tuple[str, ...]) -> dict:
    sums: dict[int, list[np.ndarray]] = defaultdict(list)
    for rec in records:
        for row in rec.tables[table]:
            sums[int(row["device"])].append(np.array([float(row[k]) for k in keys]))
    return {d: np.mean(v, axis=0) for d, v in sums.items()}


def calibrate(records: list[Record], base: TwinParams | None = None, *,
              heldout_every: int = 4, n_bootstrap: int = 300, seed: int = 0) -> Calibration:
    """Fit ``TwinParams`` (see the module docstring). ``base`` supplies unfitted fields."""
    base = base or TwinParams()
    maps = _need(records, "device_map")
    dev_map = _per_device_mean(maps, "devices", ("g_max_siemens", "g_min_siemens"))
    # A device whose wall did not settle at both ends has no measured range: leave it out.
    unsettled = {int(row["device"]) for rec in maps for row in rec.tables["devices"]
                 if row.get("saturated") == "0"}
    dev_map = {d: v for d, v in dev_map.items() if d not in unsettled}
    if not dev_map:
        raise DatasetError("no device reached both track ends in the device_map record; "
                           "raise saturate_pulses, max_bursts or the saturating width")
    # read noise: per-device variance of single reads about the device mean
    read_var: dict[int, list[float]] = defaultdict(list)
    for rec in _need(records, "read_noise"):
        by_dev: dict[int, list[float]] = defaultdict(list)
        for row in rec.tables["reads"]:
            if row["phase"] == "noise":
                by_dev[int(row["device"])].append(float(row["conductance_siemens"]))
        for d, values in by_dev.items():
            if len(values) > 1:
                read_var[d].append(float(np.var(values, ddof=1)))
    read_var_dev = {d: float(np.mean(v)) for d, v in read_var.items()}
    if not read_var_dev:
        raise DatasetError("the read_noise record has fewer than two reads per device")
    sigma_read2 = float(np.mean(list(read_var_dev.values())))

    switching = _need(records, "switching_statistics")
    refs = {(float(r.meta["array"]["describe"]["nominal_pulse"]["amplitude_volts"]),
             float(r.meta["array"]["describe"]["nominal_pulse"]["width_seconds"]))
            for r in switching}
    if len(refs) != 1:
        raise DatasetError(f"switching_statistics records disagree on the nominal pulse "
                           f"{sorted(refs)}; calibrate them separately")
    (a0, w0), = refs
    cols: dict[str, list[np.ndarray]] = defaultdict(list)
    for rec in switching:
        data = _rows_array(rec.tables["steps"], ("amplitude_volts", "width_seconds",
                                                 "polarity", "repeat", "device",
                                                 "delta_siemens"))
        n_avg = int(rec.meta["params"]["n_averages"])
        data["read_var"] = np.full(len(data["device"]), 2.0 * sigma_read2 / n_avg)
        for k, v in data.items():
            cols[k].append(v)
    s = {k: np.concatenate(v) for k, v in cols.items()}
    rep = s["repeat"].astype(int)
    held = (rep % heldout_every == heldout_every - 1) if heldout_every > 1 else rep < 0
    fit_rows = ~held
    # two independent halves of the fitted repeats, for noise-free spread estimates
    fit_reps = np.unique(rep[fit_rows])
    half_a = np.isin(rep, fit_reps[0::2]) & fit_rows
    half_b = np.isin(rep, fit_reps[1::2]) & fit_rows

    devices = sorted(set(s["device"].astype(int)) & set(dev_map))
    if len(devices) < 3:
        raise DatasetError("calibration needs at least 3 devices present in both the "
                           "device_map and the switching_statistics records")
    est: dict[str, list[float]] = defaultdict(list)
    for d in devices:
        on = s["device"] == d
        g_max, g_min = dev_map[d]
        rng = g_max - g_min
        if rng <= 0:
            raise DatasetError(f"device {d}: g_max <= g_min in the device_map record")
        for tag, mask in (("", fit_rows), ("_a", half_a), ("_b", half_b)):
            sel = on & mask
            c = _conditions(s["amplitude_volts"][sel], s["width_seconds"][sel],
                            s["polarity"][sel], s["delta_siemens"][sel], s["read_var"][sel])
            fit = fit_device(c, a0, w0)
            est["v_th" + tag].append(fit.v_th)
            est["mu_push" + tag].append(fit.mu[1] / rng)
            est["mu_pull" + tag].append(fit.mu[-1] / rng)
            est["sigma_push" + tag].append(fit.sigma[1] / rng)
            est["sigma_pull" + tag].append(fit.sigma[-1] / rng)
        est["g_max"].append(g_max)
        est["g_min"].append(g_min)
        est["read_var"].append(read_var_dev.get(d, sigma_read2))
    per_device = {k: np.asarray(v) for k, v in est.items()}
    per_device["device"] = np.asarray(devices)

    values = _population(per_device, np.arange(len(devices)))
    rng_boot = np.random.default_rng(seed)
    boots = [_population(per_device, rng_boot.integers(0, len(devices), len(devices)))
             for _ in range(n_bootstrap)]
    stderr = {k: float(np.std([b[k] for b in boots], ddof=1)) for k in values}
    # With few devices the bootstrap understates the uncertainty of a spread; never report
    # less than its normal-theory standard error.
    for name, se in _spread_stderr(per_device, values).items():
        stderr[name] = max(stderr[name], se)

    params = dataclasses.replace(base, nominal_amplitude_volts=a0, nominal_width_seconds=w0)
    params = params.replace(**values)

    fit_conditions = []
    for key, idx in _group(s, fit_rows).items():
        d = s["delta_siemens"][idx]
        fit_conditions.append({"amplitude_volts": key[0], "width_seconds": key[1],
                               "polarity": key[2], "n": len(idx), "mean_siemens": d.mean(),
                               "sd_siemens": d.std(ddof=1)})
    heldout = {key: Steps(s["delta_siemens"][idx], s["device"][idx].astype(int))
               for key, idx in _group(s, held).items()}
    used = [r for r in records if r.protocol in ("device_map", "read_noise",
                                                 "switching_statistics")]
    return Calibration(params, stderr, (a0, w0), per_device,
                       sorted({str(r.folder) for r in used}),
                       dict(switching[0].meta["params"]),
                       dict(switching[0].meta["array"]["describe"]["limits"]), fit_conditions,
                       heldout)


def _group(s: dict[str, np.ndarray], mask: np.ndarray) -> dict:
    groups: dict[tuple[float, float, int], list[int]] = defaultdict(list)
    for k in np.flatnonzero(mask):
        groups[(float(s["amplitude_volts"][k]), float(s["width_seconds"][k]),
                int(s["polarity"][k]))].append(k)
    return {k: np.asarray(v) for k, v in sorted(groups.items())}


def _rel_spread_halves(a: np.ndarray, b: np.ndarray, mean: float) -> float:
    """Relative spread of the true per-device values: cov of independent halves / mean^2."""
    if len(a) < 2 or mean == 0:
        return 0.0
    return float(np.cov(a, b)[0, 1] / mean**2)


def _population(e: dict[str, np.ndarray], idx: np.ndarray) -> dict[str, float]:
    """Population parameters from per-device estimates of the devices ``idx``."""
    m = {k: e[k][idx] for k in e}
    out = {name: float(m[name].mean()) for name in ("mu_push", "mu_pull", "sigma_push",
                                                    "sigma_pull")}
    out["v_th_volts"] = float(m["v_th"].mean())
    out["g_p_siemens"] = float(m["g_max"].mean())
    out["g_ap_siemens"] = float(m["g_min"].mean())
    out["read_noise_siemens"] = float(np.sqrt(m["read_var"].mean()))
    for name, parts in (("mu_spread", ("mu_push", "mu_pull")),
                        ("sigma_spread", ("sigma_push", "sigma_pull"))):
        rel = [_rel_spread_halves(m[p + "_a"], m[p + "_b"], out[p]) for p in parts]
        out[name] = float(np.sqrt(max(np.mean(rel), 0.0)))
    out["v_th_spread"] = float(np.sqrt(max(
        _rel_spread_halves(m["v_th_a"], m["v_th_b"], out["v_th_volts"]), 0.0)))
    rel_g = [np.var(m["g_max"], ddof=1) / out["g_p_siemens"] ** 2,
             np.var(m["g_min"], ddof=1) / out["g_ap_siemens"] ** 2]
    out["g_spread"] = float(np.sqrt(np.mean(rel_g)))
    return out


def _spread_stderr(e: dict[str, np.ndarray], values: dict[str, float]) -> dict[str, float]:
    """Normal-theory standard errors of the relative spreads (delta method)."""
    n = len(e["device"])
    if n < 3:
        return {}

    def var_rel_cov(a: np.ndarray, b: np.ndarray, mean: float) -> float:
        c = np.cov(a, b)
        return float((c[0, 0] * c[1, 1] + c[0, 1] ** 2) / ((n - 1) * mean**4))

    def se_of_root(spread: float, var_square: float) -> float:
        se_square = np.sqrt(var_square)
        root = float(np.sqrt(se_square))
        return min(se_square / (2 * spread), root) if spread > 0 else root

    out = {}
    for name, parts in (("mu_spread", ("mu_push", "mu_pull")),
                        ("sigma_spread", ("sigma_push", "sigma_pull"))):
        var = sum(var_rel_cov(e[p + "_a"], e[p + "_b"], values[p]) for p in parts) / 4
        out[name] = se_of_root(values[name], var)
    out["v_th_spread"] = se_of_root(
        values["v_th_spread"], var_rel_cov(e["v_th_a"], e["v_th_b"], values["v_th_volts"]))
    var_g = sum(2 * (np.var(e[k], ddof=1) / values[m] ** 2) ** 2 / (n - 1)
                for k, m in (("g_max", "g_p_siemens"), ("g_min", "g_ap_siemens"))) / 4
    out["g_spread"] = se_of_root(values["g_spread"], var_g)
    return out


# ---------------------------------------------------------------------------
# goodness of fit


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


def ks_compare(measured: dict, simulated: dict) -> list[KSResult]:
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


def steps_by_condition(rows: list[dict[str, str]]) -> dict[tuple[float, float, int], Steps]:
    """Steps of a ``switching_statistics`` table per (amplitude, width, polarity)."""
    s = _rows_array(rows, ("amplitude_volts", "width_seconds", "polarity", "delta_siemens",
                           "device"))
    return {k: Steps(s["delta_siemens"][idx], s["device"][idx].astype(int))
            for k, idx in _group(s, np.ones(len(rows), dtype=bool)).items()}


def model_mean_step(cal: Calibration, amplitude: float, width: float, polarity: int) -> float:
    """Population-mean step (siemens) the per-device fits predict, signed by polarity."""
    e = cal.per_device
    a0, w0 = cal.reference
    mu = e["mu_push"] if polarity > 0 else e["mu_pull"]
    f = np.clip(amplitude - e["v_th"], 0, None) / (a0 - e["v_th"]) * width / w0
    return float(polarity * np.mean(mu * f * (e["g_max"] - e["g_min"])))
