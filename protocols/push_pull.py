"""Protocols that drive whole push-pull updates: push-pull noise (the SGLD update's mean and
variance) and endurance (many push-pull cycles)."""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from dwlab.protocols.base import (
    Estimate,
    Protocol,
    ProtocolParams,
    RunContext,
    Tables,
    Target,
    add_recenter,
    amplitude_param,
    float_column,
    param,
    pulse_or_nominal,
    recenter_param,
    save_figure,
    width_param,
)


@dataclass(frozen=True)
class PushPullParams(ProtocolParams):
    budgets: list[int] = param([8, 16, 32], min=1, help="pulse budgets K = n+ + n-")
    net_fractions: list[float] = param(
        [-1.0, -0.5, 0.0, 0.5, 1.0], min=-1.0, max=1.0,
        help="n+ - n- as a fraction of K (rounded to the parity of K)")
    repeats: int = param(10, min=1, help="repeats of every (K, n+ - n-) update")
    n_averages: int = param(8, min=1, help="reads averaged before and after each update")
    amplitude_volts: float | None = amplitude_param()
    width_seconds: float | None = width_param()
    recenter_max_pulses: int | None = recenter_param()


def _nets(budget: int, fractions: list[float]) -> list[int]:
    """Distinct n+ - n- values with the parity of K, ordered +/- alternately (no drift)."""
    nets = []
    for f in fractions:
        net = int(round(f * budget))
        if (net - budget) % 2:
            net -= 1 if net > 0 else -1
        if net not in nets:
            nets.append(net)
    return sorted(nets, key=lambda v: (-abs(v), -v))


class PushPullNoise(Protocol[PushPullParams]):
    name = "push_pull_noise"
    summary = ("mean update vs n+ - n- and variance vs pulse budget K: the check that the "
               "device can carry SGLD")
    Params = PushPullParams
    tables = {"updates": ("budget", "net", "n_push", "n_pull", "repeat", "device",
                          "delta_siemens")}

    def estimate(self, target: Target) -> Estimate:
        p, n = self.params, self.devices(target)
        est = Estimate()
        est.add_shape(pulse_or_nominal(p, target.nominal_pulse))
        updates = sum(len(_nets(k, p.net_fractions)) for k in p.budgets) * p.repeats
        add_recenter(est, target, n, self.recenter_cap(target), len(p.budgets) * p.repeats)
        for k in p.budgets:
            est.add_apply(k, n, len(_nets(k, p.net_fractions)) * p.repeats)
        est.add_reads(n, p.n_averages, updates + len(p.budgets) * p.repeats)
        est.steps = updates
        return est

    def run(self, ctx: RunContext) -> Generator[None, None, None]:
        p = self.params
        shape = pulse_or_nominal(p, ctx.target.nominal_pulse)
        for k in p.budgets:
            for r in range(p.repeats):
                ctx.recenter(self.recenter_cap(ctx.target))
                g = ctx.read(p.n_averages)
                for net in _nets(k, p.net_fractions):
                    n_push, n_pull = (k + net) // 2, (k - net) // 2
                    ctx.apply(n_push, n_pull, shape)
                    after = ctx.read(p.n_averages)
                    ctx.write("updates", ctx.device_rows(
                        {"budget": k, "net": net, "n_push": n_push, "n_pull": n_pull,
                         "repeat": r}, delta_siemens=after - g))
                    g = after
                    yield

    def plot(self, folder: Path, tables: Tables) -> list[Path]:
        from dwlab.records.plots import engineering, integer_ticks, plt

        rows = tables["updates"]
        k, net = float_column(rows, "budget"), float_column(rows, "net")
        delta = float_column(rows, "delta_siemens")
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
        for budget in sorted(set(k)):
            nets = sorted(set(net[k == budget]))
            means = [delta[(k == budget) & (net == v)].mean() for v in nets]
            a1.plot(nets, means, "o-", label=f"K = {budget:g}")
        a1.set_xlabel("n+ - n-")
        a1.set_ylabel("mean update")
        engineering(a1, "y", "S")
        integer_ticks(a1)
        a1.legend(fontsize=8)
        budgets = sorted(set(k))
        # Cycle-to-cycle variance: over repeats of one update on one device (device-to-device
        # differences of the mean would otherwise grow like K^2), pooled over nets and devices.
        device = float_column(rows, "device")
        variances = []
        for budget in budgets:
            on = k == budget
            parts = [delta[on & (net == v) & (device == d)]
                     for v in set(net[on]) for d in set(device[on])]
            variances.append(1e12 * np.mean([np.var(part, ddof=1) for part in parts
                                             if len(part) > 1]))  # in (µS)²
        a2.plot(budgets, variances, "o", label="measured")
        if len(budgets) > 1:
            slope, icpt = np.polyfit(budgets, variances, 1)
            xs = np.linspace(0, max(budgets), 50)
            a2.plot(xs, slope * xs + icpt, "-", label=f"linear fit, {slope:.3g} (µS)²/pulse")
        a2.set_xlabel("pulse budget K")
        a2.set_ylabel("update variance ((µS)²)")
        integer_ticks(a2)
        a2.legend(fontsize=8)
        fig.suptitle("Push-pull noise")
        return [save_figure(fig, folder / "push_pull_noise.png")]


# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class EnduranceParams(ProtocolParams):
    cycles: int = param(100, min=1, help="push-pull cycles")
    pulses_per_cycle: int = param(10, min=1, help="pulses per half-cycle")
    n_averages: int = param(1, min=1, help="reads averaged after each half-cycle")
    amplitude_volts: float | None = amplitude_param()
    width_seconds: float | None = width_param()


class Endurance(Protocol[EnduranceParams]):
    name = "endurance"
    summary = "many push-pull cycles: conductance after each half-cycle vs cycle number"
    Params = EnduranceParams
    tables = {"cycles": ("cycle", "device", "g_after_push_siemens", "g_after_pull_siemens")}

    def estimate(self, target: Target) -> Estimate:
        p, n = self.params, self.devices(target)
        est = Estimate()
        est.add_shape(pulse_or_nominal(p, target.nominal_pulse))
        est.add_apply(p.pulses_per_cycle, n, 2 * p.cycles)
        est.add_reads(n, p.n_averages, 2 * p.cycles)
        est.steps = p.cycles
        return est

    def run(self, ctx: RunContext) -> Generator[None, None, None]:
        p = self.params
        shape = pulse_or_nominal(p, ctx.target.nominal_pulse)
        for c in range(p.cycles):
            ctx.apply(p.pulses_per_cycle, 0, shape)
            high = ctx.read(p.n_averages)
            ctx.apply(0, p.pulses_per_cycle, shape)
            low = ctx.read(p.n_averages)
            ctx.write("cycles", ctx.device_rows(
                {"cycle": c}, g_after_push_siemens=high, g_after_pull_siemens=low))
            yield

    def plot(self, folder: Path, tables: Tables) -> list[Path]:
        from dwlab.records.plots import engineering, integer_ticks, plt

        rows = tables["cycles"]
        cycle = float_column(rows, "cycle")
        high = float_column(rows, "g_after_push_siemens")
        low = float_column(rows, "g_after_pull_siemens")
        cycles = sorted(set(cycle))
        fig, ax = plt.subplots(figsize=(7, 4), layout="constrained")
        ax.plot(cycles, [high[cycle == c].mean() for c in cycles], ".-", label="after push")
        ax.plot(cycles, [low[cycle == c].mean() for c in cycles], ".-", label="after pull")
        ax.set_xlabel("cycle")
        ax.set_ylabel("mean conductance")
        engineering(ax, "y", "S")
        integer_ticks(ax)
        ax.set_title("Endurance")
        ax.legend()
        return [save_figure(fig, folder / "endurance.png")]
