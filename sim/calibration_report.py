"""The fit report of a calibration, in one folder: ``report.md`` (verdict and its reasons
first), parameter and per-condition tables, and PNG plots: measured vs simulated step
distributions per condition with each condition's test result, step moments, residuals,
per-device estimates."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from dwlab.sim.calibration import (
    FITTED,
    UNITS,
    Calibration,
    ConditionKey,
    Steps,
    model_mean_step,
)
from dwlab.sim.calibration.goodness import TESTS, ConditionCheck
from dwlab.sim.calibration.verdict import Verdict

from dwlab.records import TableWriter, atomic_write_text


@dataclass
class JumpTableCheck:
    """The jump-table twin offered on MISFIT: its file and its own held-out check."""

    path: Path
    verdict: Verdict
    simulated: dict[ConditionKey, Steps]


def _label(key: ConditionKey) -> str:
    from dwlab.records.plots import eng

    return f"{eng(key[0], 'V')}, {eng(key[1], 's')}, {'push' if key[2] > 0 else 'pull'}"


def _checks_table(path: Path, checks: list[ConditionCheck]) -> Path:
    columns = ["amplitude_volts", "width_seconds", "polarity", "n_measured", "n_simulated",
               "devices_measured", "devices_simulated", "mean_measured_siemens",
               "mean_simulated_siemens", "sd_measured_siemens", "sd_simulated_siemens",
               "mean_z", "sd_ratio", "kurtosis_measured", "kurtosis_simulated",
               *[f"p_{t}" for t in TESTS], "level", "passed", "disagreements"]
    with TableWriter(path, columns) as t:
        t.append_rows([{
            "amplitude_volts": c.key[0], "width_seconds": c.key[1], "polarity": c.key[2],
            "n_measured": c.n_measured, "n_simulated": c.n_simulated,
            "devices_measured": c.devices_measured, "devices_simulated": c.devices_simulated,
            "mean_measured_siemens": f"{c.mean_measured:.5g}",
            "mean_simulated_siemens": f"{c.mean_simulated:.5g}",
            "sd_measured_siemens": f"{c.sd_measured:.5g}",
            "sd_simulated_siemens": f"{c.sd_simulated:.5g}", "mean_z": f"{c.mean_z:.3f}",
            "sd_ratio": f"{c.sd_ratio:.3f}", "kurtosis_measured": f"{c.excess_kurtosis[0]:.3f}",
            "kurtosis_simulated": f"{c.excess_kurtosis[1]:.3f}",
            **{f"p_{t}": f"{c.p[t]:.4g}" for t in TESTS}, "level": f"{c.threshold:.3g}",
            "passed": int(c.passed), "disagreements": "; ".join(c.disagreements)}
            for c in checks])
    return path


def _overlay(path: Path, cal: Calibration, verdict: Verdict,
             simulated: dict[ConditionKey, Steps], what: str) -> Path:
    """Held-out measured vs simulated step histograms, one panel per condition, each
    titled with the condition's result and its four p-values."""
    from dwlab.records.plots import save_png, subplot_grid

    checks = verdict.checks
    fig, axes = subplot_grid(len(checks), 6, (2.9, 3.1), layout="constrained")
    for ax, c in zip(axes.flat, checks, strict=False):
        m, s = cal.heldout[c.key].delta * 1e6, simulated[c.key].delta * 1e6
        bins = np.histogram_bin_edges(np.concatenate([m, s]), bins=30)
        ax.hist(m, bins=bins, density=True, alpha=0.5, color="tab:blue", label="measured")
        ax.hist(s, bins=bins, density=True, histtype="step", lw=1.5, color="tab:red",
                label=what)
        result = "pass" if c.passed else "FAIL " + ",".join(c.failed)
        ax.set_title(f"{_label(c.key)}: {result}\n" + " ".join(
            f"{t[:4]} {c.p[t]:.1g}" for t in TESTS), fontsize=6.5,
            color="black" if c.passed else "tab:red")
        ax.set_yscale("log")
        ax.tick_params(labelsize=6)
    axes.flat[0].legend(fontsize=6)
    fig.suptitle(f"{verdict.verdict}: held-out measured steps vs {what} (log density; "
                 f"p-values of mean, variance, spread, shape; level {checks[0].threshold:.2g})",
                 fontsize=9)
    fig.supxlabel("step (uS)")
    return save_png(fig, path)


def write_report(folder: Path, cal: Calibration, verdict: Verdict,
                 simulated: dict[ConditionKey, Steps], alpha: float,
                 jump: JumpTableCheck | None = None, *, figures: bool = True) -> list[Path]:
    """Write tables, ``report.md`` and (``figures``) PNG plots; returns the files written."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    with TableWriter(folder / "parameters.csv", ["name", "value", "stderr", "unit"]) as t:
        t.append_rows([{"name": n, "value": f"{getattr(cal.params, n):.6g}",
                        "stderr": f"{cal.stderr[n]:.3g}", "unit": UNITS[n]} for n in FITTED])
    written.append(folder / "parameters.csv")
    written.append(_checks_table(folder / "goodness_of_fit.csv", verdict.checks))
    if jump is not None:
        written.append(_checks_table(folder / "goodness_of_fit_jump_table.csv",
                                     jump.verdict.checks))
    if figures and verdict.checks:
        written += _figures(folder, cal, verdict, simulated, jump)

    e = cal.per_device
    lines = [f"# Calibration verdict: {verdict.verdict}", ""]
    lines += [f"- {r}" for r in verdict.reasons]
    if jump is not None:
        lines += ["", f"The parametric twin does not describe these devices. A jump-table twin "
                  f"(steps replayed from the records per pulse shape, polarity and conductance "
                  f"bin) was built from the same records: `{jump.path}`. On the held-out steps "
                  f"it comes out **{jump.verdict.verdict}**"
                  + ("" if jump.verdict.passed else
                     f" ({'; '.join(jump.verdict.reasons)})") + ". Use it in a lab config with "
                  "`twin: {jump_table: <path to the .npz>}` (only the recorded pulse shapes).",
                  "Per-condition tests: goodness_of_fit_jump_table.csv; overlays: "
                  "overlay_jump_table.png."]
    lines += ["", f"Reference pulse: {cal.reference[0]:g} V, {cal.reference[1]:g} s",
              f"Sources: {', '.join(cal.sources)}", f"Devices: {len(e['device'])}", "",
              "## How the verdict is reached", "",
              f"Every recorded condition is re-run on a twin built from the fitted parameters "
              f"and compared with the held-out steps (every {cal.switching_params.get('repeats')}"
              f"-repeat record keeps one repeat in `heldout_every` back from the fit). Devices "
              f"are the independent units: Welch t-tests of per-device mean steps and of "
              f"per-device log variances, a KS test of the per-device means (device-to-device "
              f"spread) and a KS test of the standardised within-device residuals (shape). "
              f"A condition fails when any p-value is below alpha / (4 x conditions) = "
              f"{alpha:g} / {4 * len(verdict.checks)}. The fit itself is flagged for "
              f"thresholds at a search bound, implausible spreads and systematic residuals.",
              "", "| parameter | value | stderr | unit |", "|---|---|---|---|"]
    lines += [f"| {n} | {getattr(cal.params, n):.5g} | {cal.stderr[n]:.2g} | {UNITS[n]} |"
              for n in FITTED]
    lines += ["", "| condition | mean z | sd ratio | " + " | ".join(f"p {t}" for t in TESTS)
              + " | result |", "|---|---|---|" + "---|" * len(TESTS) + "---|"]
    lines += [f"| {c.label} | {c.mean_z:+.1f} | {c.sd_ratio:.2f} | "
              + " | ".join(f"{c.p[t]:.2g}" for t in TESTS)
              + f" | {'pass' if c.passed else 'FAIL: ' + ', '.join(c.disagreements)} |"
              for c in verdict.checks]
    atomic_write_text(folder / "report.md", "\n".join(lines) + "\n")
    written.append(folder / "report.md")
    return written


def _figures(folder: Path, cal: Calibration, verdict: Verdict,
             simulated: dict[ConditionKey, Steps], jump: JumpTableCheck | None) -> list[Path]:
    from dwlab.records.plots import eng, engineering, integer_ticks, plt, save_png

    written = [_overlay(folder / "overlay_step_distributions.png", cal, verdict, simulated,
                        "calibrated twin")]
    if jump is not None:
        written.append(_overlay(folder / "overlay_jump_table.png", cal, jump.verdict,
                                jump.simulated, "jump-table twin"))

    # mean and spread of steps vs amplitude: measured, model, simulated
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
            axes[0, j].errorbar(a, [c["mean_siemens"] * 1e6 for c in cs],
                                yerr=[c["se_siemens"] * 1e6 for c in cs], fmt="o",
                                color=colour, label=f"measured {name}")
            axes[0, j].plot(amps, [model_mean_step(cal, x, w, pol) for x in amps], "-",
                            color=colour, lw=1, label=f"model {name}")
            sim = [(x, simulated[(x, w, pol)]) for x in a if (x, w, pol) in simulated]
            axes[0, j].plot([x for x, _ in sim], [v.delta.mean() * 1e6 for _, v in sim], "x",
                            ms=9, color="k", label="simulated" if pol > 0 else None)
            axes[1, j].plot(a, [c["sd_siemens"] * 1e6 for c in cs], "o", color=colour,
                            label=f"measured {name}")
            axes[1, j].plot([x for x, _ in sim], [v.delta.std(ddof=1) * 1e6 for _, v in sim],
                            "x", ms=9, color="k", label="simulated" if pol > 0 else None)
        axes[0, j].set_title(f"width {w:g} s", fontsize=9)
        axes[0, j].set_ylabel("mean step (uS)")
        axes[1, j].set_ylabel("step sd (uS)")
        axes[1, j].set_xlabel("amplitude (V)")
    axes[0, 0].legend(fontsize=6)
    axes[1, 0].legend(fontsize=6)
    fig.suptitle("Step mean and spread: measured (fit set, +-1 se over devices), fitted "
                 "model, simulated twin")
    written.append(save_png(fig, folder / "overlay_step_moments.png"))

    # residuals of the condition means against the model, in standard errors over devices
    fig, ax = plt.subplots(figsize=(7, 3.8))
    for pol, marker in ((1, "o"), (-1, "s")):
        for w in widths:
            cs = [c for c in fit if c["width_seconds"] == w and c["polarity"] == pol]
            res = [(c["mean_siemens"] - model_mean_step(cal, c["amplitude_volts"], w, pol))
                   / c["se_siemens"] for c in cs]
            ax.plot([c["amplitude_volts"] for c in cs], res, marker, alpha=0.7,
                    label=f"{'push' if pol > 0 else 'pull'}, {eng(w, 's')}")
    ax.axhline(0, color="k", lw=0.8)
    for y in (-2, 2):
        ax.axhline(y, color="grey", lw=0.6, ls="--")
    ax.set_xlabel("amplitude")
    engineering(ax, "x", "V")
    ax.set_ylabel("(measured - model) / se")
    ax.set_title("Residuals of mean step (se from device means)")
    ax.legend(fontsize=6, ncol=2)
    written.append(save_png(fig, folder / "residuals.png"))

    # per-device estimates (device-to-device spread)
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
    return written
