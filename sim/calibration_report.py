"""The fit report of a calibration: parameter table, goodness of fit, residual and overlay
plots (measured vs simulated), written into one folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from dwlab.sim.calibration import (
    FITTED,
    UNITS,
    Calibration,
    ConditionKey,
    KSResult,
    Steps,
    model_mean_step,
)

from dwlab.records import TableWriter, atomic_write_text


def _label(key: ConditionKey) -> str:
    from dwlab.records.plots import eng

    return f"{eng(key[0], 'V')}, {eng(key[1], 's')}, {'push' if key[2] > 0 else 'pull'}"


def write_report(folder: Path, cal: Calibration, ks: list[KSResult],
                 simulated: dict[ConditionKey, Steps], alpha: float, passed: bool) -> list[Path]:
    """Write tables, a markdown summary and PNG plots; returns the files written."""
    from dwlab.records.plots import eng, engineering, integer_ticks, plt, save_png, subplot_grid

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    with TableWriter(folder / "parameters.csv", ["name", "value", "stderr", "unit"]) as t:
        t.append_rows([{"name": n, "value": f"{getattr(cal.params, n):.6g}",
                        "stderr": f"{cal.stderr[n]:.3g}", "unit": UNITS[n]} for n in FITTED])
    written.append(folder / "parameters.csv")
    with TableWriter(folder / "goodness_of_fit.csv",
                     ["amplitude_volts", "width_seconds", "polarity", "n_measured",
                      "n_simulated", "ks_statistic", "p_value", "p_value_iid",
                      "design_effect_measured", "design_effect_simulated"]) as t:
        t.append_rows([{"amplitude_volts": r.amplitude_volts, "width_seconds": r.width_seconds,
                        "polarity": r.polarity, "n_measured": r.n_measured,
                        "n_simulated": r.n_simulated, "ks_statistic": f"{r.statistic:.4f}",
                        "p_value": f"{r.p_value:.4g}", "p_value_iid": f"{r.p_value_iid:.4g}",
                        "design_effect_measured": f"{r.design_effect_measured:.3f}",
                        "design_effect_simulated": f"{r.design_effect_simulated:.3f}"}
                       for r in ks])
    written.append(folder / "goodness_of_fit.csv")

    # 1. held-out measured vs simulated step distributions, overlaid
    keys = [(r.amplitude_volts, r.width_seconds, r.polarity) for r in ks]
    p_of = {k: r.p_value for k, r in zip(keys, ks, strict=True)}
    fig, axes = subplot_grid(len(keys), 6, (2.8, 2.9), layout="constrained")
    for ax, key in zip(axes.flat, keys, strict=False):
        m, s = cal.heldout[key].delta, simulated[key].delta
        bins = np.histogram_bin_edges(np.concatenate([m, s]), bins=25)
        ax.hist(m, bins=bins, density=True, alpha=0.5, color="tab:blue", label="measured")
        ax.hist(s, bins=bins, density=True, histtype="step", lw=1.5, color="tab:red",
                label="simulated")
        ax.set_title(f"{_label(key)}\nKS p = {p_of[key]:.2g}", fontsize=7)
        engineering(ax, "x", "S", max_ticks=4)
        ax.set_yticks([])  # densities per siemens are unreadable numbers; shapes matter
        ax.tick_params(labelsize=6)
    axes.flat[0].legend(fontsize=6)
    fig.supylabel("density")
    fig.supxlabel("conductance step, held-out measurements vs twin from calibration")
    written.append(save_png(fig, folder / "overlay_step_distributions.png"))

    # 2. mean and spread of steps vs amplitude: measured, model, simulated
    fit = cal.fit_conditions
    widths = sorted({c["width_seconds"] for c in fit})
    fig, axes = plt.subplots(2, len(widths), figsize=(4.2 * len(widths), 6.5), squeeze=False,
                             layout="constrained")
    amps = np.linspace(min(c["amplitude_volts"] for c in fit),
                       max(c["amplitude_volts"] for c in fit), 100)
    for j, w in enumerate(widths):
        for pol, colour in ((1, "tab:red"), (-1, "tab:blue")):
            cs = sorted((c for c in fit if c["width_seconds"] == w and c["polarity"] == pol),
                        key=lambda c: c["amplitude_volts"])
            a = [c["amplitude_volts"] for c in cs]
            name = "push" if pol > 0 else "pull"
            se = [c["sd_siemens"] / np.sqrt(c["n"]) for c in cs]
            axes[0, j].errorbar(a, [c["mean_siemens"] for c in cs], yerr=se, fmt="o",
                                color=colour, label=f"measured {name}")
            axes[0, j].plot(amps, [model_mean_step(cal, x, w, pol) for x in amps], "-",
                            color=colour, lw=1, label=f"model {name}")
            sim = [simulated.get((x, w, pol)) for x in a]
            axes[0, j].plot([x for x, v in zip(a, sim, strict=True) if v is not None],
                            [v.delta.mean() for v in sim if v is not None], "x", ms=9,
                            color="k", label="simulated" if pol > 0 else None)
            axes[1, j].plot(a, [c["sd_siemens"] for c in cs], "o", color=colour,
                            label=f"measured {name}")
            axes[1, j].plot([x for x, v in zip(a, sim, strict=True) if v is not None],
                            [v.delta.std(ddof=1) for v in sim if v is not None], "x",
                            ms=9,
                            color="k", label="simulated" if pol > 0 else None)
        axes[0, j].set_title(f"width {eng(w, 's')}", fontsize=9)
        axes[0, j].set_ylabel("mean step")
        axes[1, j].set_ylabel("step sd")
        axes[1, j].set_xlabel("amplitude")
        for row, axis, unit in ((0, "y", "S"), (1, "y", "S"), (0, "x", "V"), (1, "x", "V")):
            engineering(axes[row, j], axis, unit)
    axes[0, 0].legend(fontsize=6)
    axes[1, 0].legend(fontsize=6)
    fig.suptitle("Step mean and spread: measured (fit set), fitted model, simulated twin")
    written.append(save_png(fig, folder / "overlay_step_moments.png"))

    # 3. residuals of the condition means against the model, in standard errors
    fig, ax = plt.subplots(figsize=(7, 3.8), layout="constrained")
    for pol, marker in ((1, "o"), (-1, "s")):
        for w in widths:
            cs = [c for c in fit if c["width_seconds"] == w and c["polarity"] == pol]
            res = [(c["mean_siemens"] - model_mean_step(cal, c["amplitude_volts"], w, pol))
                   / (c["sd_siemens"] / np.sqrt(c["n"])) for c in cs]
            ax.plot([c["amplitude_volts"] for c in cs], res, marker, alpha=0.7,
                    label=f"{'push' if pol > 0 else 'pull'}, {eng(w, 's')}")
    ax.axhline(0, color="k", lw=0.8)
    for y in (-2, 2):
        ax.axhline(y, color="grey", lw=0.6, ls="--")
    ax.set_xlabel("amplitude")
    engineering(ax, "x", "V")
    ax.set_ylabel("(measured - model) / se")
    ax.set_title("Residuals of mean step")
    ax.legend(fontsize=6, ncol=2)
    written.append(save_png(fig, folder / "residuals.png"))

    # 4. per-device estimates (device-to-device spread)
    e = cal.per_device
    panels: list[tuple[str, str, str | None]] = [  # key, title, unit
        ("mu_push", "mu push (track fraction)", None),
        ("mu_pull", "mu pull (track fraction)", None),
        ("v_th", "v_th", "V"), ("g_max", "G_P", "S"), ("g_min", "G_AP", "S")]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 2.8),
                             layout="constrained")
    for ax, (k, title, panel_unit) in zip(axes, panels, strict=True):
        ax.hist(e[k], bins=15)
        ax.set_title(title, fontsize=8)
        if panel_unit:
            engineering(ax, "x", panel_unit, max_ticks=4)
        integer_ticks(ax, "y")  # device counts
        ax.tick_params(labelsize=6)
    fig.suptitle("Per-device estimates")
    written.append(save_png(fig, folder / "device_estimates.png"))

    lines = ["# Twin calibration report", "",
             f"Reference pulse: {cal.reference[0]:g} V, {cal.reference[1]:g} s",
             f"Sources: {', '.join(cal.sources)}", f"Devices: {len(e['device'])}", "",
             "| parameter | value | stderr | unit |", "|---|---|---|---|"]
    lines += [f"| {n} | {getattr(cal.params, n):.5g} | {cal.stderr[n]:.2g} | {UNITS[n]} |"
              for n in FITTED]
    lines += ["", f"Goodness of fit on held-out steps: two-sample KS per condition, "
              f"Bonferroni alpha {alpha:g} / {len(ks)}: **{'PASS' if passed else 'FAIL'}** "
              f"(smallest p = {min((r.p_value for r in ks), default=float('nan')):.3g}).",
              "Steps of one device share its parameters, so each KS p-value uses effective "
              "sample sizes n / design effect (intra-class correlation by device); the plain "
              "p-values are in goodness_of_fit.csv as p_value_iid.", ""]
    atomic_write_text(folder / "report.md", "\n".join(lines) + "\n")
    written.append(folder / "report.md")
    return written
