"""The whole calibration: per-device fits, population values and bootstrap uncertainties,
with every ``heldout_every``-th repeat kept back for the goodness-of-fit test."""

from __future__ import annotations

import dataclasses
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from dwlab.sim.calibration.device_fit import aggregate_conditions, fit_device
from dwlab.sim.calibration.population import population_values, spread_stderr
from dwlab.sim.calibration.records import (
    STEP_COLUMNS,
    ConditionKey,
    Record,
    Steps,
    group_by_condition,
    need_records,
    rows_array,
    steps_of,
)
from dwlab.sim.presets import TwinParams

from dwlab.core.errors import DatasetError

FITTED = ("mu_push", "mu_pull", "sigma_push", "sigma_pull", "v_th_volts", "g_p_siemens",
          "g_ap_siemens", "read_noise_siemens", "mu_spread", "sigma_spread", "v_th_spread",
          "g_spread")
UNITS = {"mu_push": "track/pulse", "mu_pull": "track/pulse", "sigma_push": "track/pulse",
         "sigma_pull": "track/pulse", "v_th_volts": "V", "g_p_siemens": "S",
         "g_ap_siemens": "S", "read_noise_siemens": "S", "mu_spread": "relative",
         "sigma_spread": "relative", "v_th_spread": "relative", "g_spread": "relative"}


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
    heldout: dict[ConditionKey, Steps] = field(default_factory=dict)
    """Held-out measured steps per (amplitude, width, polarity)."""
    fitted: dict[ConditionKey, Steps] = field(default_factory=dict)
    """The steps the fit used, per condition (a jump table is built from them)."""
    step_read_var: float = 0.0
    """Read-noise variance (siemens^2) each measured step carries: two averaged reads."""
    read_traces: dict[int, np.ndarray] = field(default_factory=dict)
    """Per device: its single reads of the first ``read_noise`` record, less their mean (a
    trace of read noise in time order)."""

    def values(self) -> dict[str, float]:
        return {name: float(getattr(self.params, name)) for name in FITTED}


def _per_device_mean(
    records: list[Record], table: str, keys: tuple[str, ...]
) -> dict[int, np.ndarray]:
    """Per device: the mean over records of the ``keys`` columns of ``table``."""
    sums: dict[int, list[np.ndarray]] = defaultdict(list)
    for rec in records:
        for row in rec.tables[table]:
            sums[int(row["device"])].append(np.array([float(row[k]) for k in keys]))
    return {d: np.mean(v, axis=0) for d, v in sums.items()}


def calibrate(records: list[Record], base: TwinParams | None = None, *,
              heldout_every: int = 4, n_bootstrap: int = 300, seed: int = 0) -> Calibration:
    """Fit ``TwinParams`` (model and method: :mod:`dwlab.sim.calibration`). ``base``
    supplies the unfitted fields."""
    base = base or TwinParams()
    maps = need_records(records, "device_map")
    dev_map = _per_device_mean(maps, "devices", ("g_max_siemens", "g_min_siemens"))
    # A device whose wall did not reach both ends has no measured range: leave it out.
    ends = {int(row["device"]): (row.get("push_end", "?"), row.get("pull_end", "?"))
            for rec in maps for row in rec.tables["devices"]}
    unsettled = {int(row["device"]) for rec in maps for row in rec.tables["devices"]
                 if row.get("saturated") == "0"}
    dev_map = {d: v for d, v in dev_map.items() if d not in unsettled}
    if not dev_map:
        states = Counter(state for d in unsettled for state in ends.get(d, ()))
        raise DatasetError(
            "no device reached both track ends in the device_map record ("
            + ", ".join(f"{n} ends {state}" for state, n in sorted(states.items())) + "); "
            "walls still moving need more saturate_pulses, max_bursts or a wider pulse")
    # read noise: per-device variance of single reads about the device mean
    read_var: dict[int, list[float]] = defaultdict(list)
    read_traces: dict[int, np.ndarray] = {}
    for rec in need_records(records, "read_noise"):
        by_dev: dict[int, list[float]] = defaultdict(list)
        for row in rec.tables["reads"]:
            if row["phase"] == "noise":
                by_dev[int(row["device"])].append(float(row["conductance_siemens"]))
        for d, reads in by_dev.items():
            if len(reads) > 1:
                read_var[d].append(float(np.var(reads, ddof=1)))
                read_traces.setdefault(d, np.asarray(reads) - np.mean(reads))
    read_var_dev = {d: float(np.mean(v)) for d, v in read_var.items()}
    if not read_var_dev:
        raise DatasetError("the read_noise record has fewer than two reads per device")
    sigma_read2 = float(np.mean(list(read_var_dev.values())))

    switching = need_records(records, "switching_statistics")
    refs = {(float(r.meta["array"]["describe"]["nominal_pulse"]["amplitude_volts"]),
             float(r.meta["array"]["describe"]["nominal_pulse"]["width_seconds"]))
            for r in switching}
    if len(refs) != 1:
        raise DatasetError(f"switching_statistics records disagree on the nominal pulse "
                           f"{sorted(refs)}; calibrate them separately")
    (a0, w0), = refs
    cols: dict[str, list[np.ndarray]] = defaultdict(list)
    for rec in switching:
        data = rows_array(rec.tables["steps"], STEP_COLUMNS)
        n_avg = int(rec.meta["params"]["n_averages"])
        data["read_var"] = np.full(len(data["device"]), 2.0 * sigma_read2 / n_avg)
        for k, v in data.items():
            cols[k].append(v)
    s = {k: np.concatenate(v) for k, v in cols.items()}
    amplitudes = np.unique(s["amplitude_volts"])
    if len(amplitudes) < 2:
        raise DatasetError(f"switching_statistics: steps at {len(amplitudes)} amplitude(s) "
                           f"({', '.join(f'{a:g} V' for a in amplitudes)}); the drive law and "
                           f"its threshold need two or more")
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
            push_end, pull_end = ends.get(d, ("?", "?"))
            raise DatasetError(
                f"device {d}: g_max <= g_min in the device_map record (push end: {push_end}, "
                f"pull end: {pull_end}; 'pinned' or 'short' means pinning held the wall, '?' "
                f"a record from before end states were recorded)")
        for tag, mask in (("", fit_rows), ("_a", half_a), ("_b", half_b)):
            sel = on & mask
            c = aggregate_conditions(
                s["amplitude_volts"][sel], s["width_seconds"][sel], s["polarity"][sel],
                s["delta_siemens"][sel], s["read_var"][sel])
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

    values = population_values(per_device, np.arange(len(devices)))
    rng_boot = np.random.default_rng(seed)
    boots = [population_values(per_device, rng_boot.integers(0, len(devices), len(devices)))
             for _ in range(n_bootstrap)]
    stderr = {k: float(np.std([b[k] for b in boots], ddof=1)) for k in values}
    # With few devices the bootstrap understates the uncertainty of a spread; never report
    # less than its normal-theory standard error.
    for name, se in spread_stderr(per_device, values).items():
        stderr[name] = max(stderr[name], se)

    params = dataclasses.replace(base, nominal_amplitude_volts=a0, nominal_width_seconds=w0)
    params = params.replace(**values)

    fit_conditions = []
    calibrated = np.isin(s["device"], devices)
    for key, idx in group_by_condition(s, fit_rows & calibrated).items():
        d = s["delta_siemens"][idx]
        _, inverse, counts = np.unique(s["device"][idx], return_inverse=True,
                                       return_counts=True)
        device_means = np.bincount(inverse, d) / counts
        fit_conditions.append({"amplitude_volts": key[0], "width_seconds": key[1],
                               "polarity": key[2], "n": len(idx), "mean_siemens": d.mean(),
                               "sd_siemens": d.std(ddof=1),
                               "se_siemens": device_means.std(ddof=1) / np.sqrt(len(counts))})
    heldout = steps_of(s, held)
    fitted = steps_of(s, fit_rows)
    used = [r for r in records if r.protocol in ("device_map", "read_noise",
                                                 "switching_statistics")]
    return Calibration(params, stderr, (a0, w0), per_device,
                       sorted({str(r.folder) for r in used}),
                       dict(switching[0].meta["params"]),
                       dict(switching[0].meta["array"]["describe"]["limits"]), fit_conditions,
                       heldout, fitted, float(np.mean(s["read_var"])), read_traces)


def model_mean_step(cal: Calibration, amplitude: float, width: float, polarity: int) -> float:
    """Population-mean step (siemens) the per-device fits predict, signed by polarity."""
    e = cal.per_device
    a0, w0 = cal.reference
    mu = e["mu_push"] if polarity > 0 else e["mu_pull"]
    f = np.clip(amplitude - e["v_th"], 0, None) / (a0 - e["v_th"]) * width / w0
    return float(polarity * np.mean(mu * f * (e["g_max"] - e["g_min"])))
