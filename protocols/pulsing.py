"""Single-pulse protocols over an amplitude x width grid: pulse response and switching
statistics."""

from __future__ import annotations

from collections import defaultdict
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
    float_column,
    param,
    periodic_cap,
    recenter_param,
    save_figure,
)

from dwlab.core.types import PULL, PUSH, PulseShape


def _grid(amplitudes: list[float], widths: list[float]) -> list[PulseShape]:
    return [PulseShape(a, w) for a in amplitudes for w in widths]


# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PulseResponseParams(ProtocolParams):
    amplitudes_volts: list[float] = param([0.8, 1.0, 1.2], unit="V", min=0.0,
                                          help="pulse amplitudes (magnitudes)")
    widths_seconds: list[float] = param([1e-8], unit="s", min=0.0, help="pulse widths")
    pulses: int = param(30, min=1, help="pulses per polarity per grid point, read after each")
    n_averages: int = param(4, min=1, help="reads averaged per conductance reading")
    recenter_max_pulses: int | None = recenter_param()


class PulseResponse(Protocol[PulseResponseParams]):
    name = "pulse_response"
    summary = ("conductance vs pulse number over an amplitude x width grid: push then pull "
               "from mid-track")
    Params = PulseResponseParams
    tables = {"response": ("amplitude_volts", "width_seconds", "polarity", "pulse", "device",
                           "conductance_siemens")}

    def estimate(self, target: Target) -> Estimate:
        p, n = self.params, self.devices(target)
        est = Estimate()
        grid = _grid(p.amplitudes_volts, p.widths_seconds)
        for shape in grid:
            est.add_shape(shape)
        add_recenter(est, target, n, self.recenter_cap(target))
        add_recenter(est, target, n, periodic_cap(self.recenter_cap(target), 2 * p.pulses),
                     len(grid) - 1)
        est.add_apply(1, n, len(grid) * 2 * p.pulses)
        est.add_reads(n, p.n_averages, len(grid) * 2 * (p.pulses + 1))
        est.steps = len(grid) * 2 * p.pulses
        return est

    def run(self, ctx: RunContext) -> Generator[None, None, None]:
        p = self.params
        for i, shape in enumerate(_grid(p.amplitudes_volts, p.widths_seconds)):
            ctx.recenter(self.recenter_cap(ctx.target) if i == 0 else
                         periodic_cap(self.recenter_cap(ctx.target), 2 * p.pulses))
            for polarity in (PUSH, PULL):
                g = ctx.read(p.n_averages)
                self._rows(ctx, shape, polarity, 0, g)
                for k in range(1, p.pulses + 1):
                    ctx.apply(int(polarity == PUSH), int(polarity == PULL), shape)
                    self._rows(ctx, shape, polarity, k, ctx.read(p.n_averages))
                    yield

    def _rows(self, ctx: RunContext, shape: PulseShape, polarity: int, k: int, g) -> None:
        ctx.write("response", ctx.device_rows(
            {"amplitude_volts": shape.amplitude_volts, "width_seconds": shape.width_seconds,
             "polarity": polarity, "pulse": k}, conductance_siemens=g))

    def plot(self, folder: Path, tables: Tables) -> list[Path]:
        from dwlab.records.plots import eng, engineering, integer_ticks, plt

        groups: dict[tuple[float, float], dict[int, list[float]]] = defaultdict(
            lambda: defaultdict(list))
        for r in tables["response"]:
            key = (float(r["amplitude_volts"]), float(r["width_seconds"]))
            step = int(r["pulse"]) + (0 if int(r["polarity"]) == PUSH else 10**6)
            groups[key][step].append(float(r["conductance_siemens"]))
        fig, ax = plt.subplots(figsize=(7, 4.5), layout="constrained")
        for (a, w), by_step in sorted(groups.items()):
            steps = sorted(by_step)
            n_push = max((s for s in steps if s < 10**6), default=0)
            xs = [s if s < 10**6 else n_push + (s - 10**6) for s in steps]
            ys = [np.mean(by_step[s]) for s in steps]
            ax.plot(xs, ys, ".-", label=f"{eng(a, 'V')}, {eng(w, 's')}")
        ax.set_xlabel("pulse number (push, then pull)")
        ax.set_ylabel("mean conductance")
        engineering(ax, "y", "S")
        integer_ticks(ax)
        ax.set_title("Pulse response")
        ax.legend(fontsize=7)
        return [save_figure(fig, folder / "pulse_response.png")]


# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SwitchingParams(ProtocolParams):
    amplitudes_volts: list[float] = param([0.4, 0.7, 1.0, 1.3], unit="V", min=0.0,
                                          help="pulse amplitudes (magnitudes)")
    widths_seconds: list[float] = param([5e-9, 1e-8, 2e-8], unit="s", min=0.0,
                                        help="pulse widths")
    repeats: int = param(40, min=1, help="push/pull pulse pairs per grid point")
    n_averages: int = param(8, min=1, help="reads averaged before and after each pulse")
    recenter_every: int = param(10, min=1, help="re-centre the walls every N repeats")
    recenter_max_pulses: int | None = recenter_param()
    depinning_threshold_siemens: float | None = param(
        None, unit="S", min=0.0,
        help="a step counts as depinned above this (plots); empty means 0.3 x the median "
             "|step| at the largest amplitude")


class SwitchingStatistics(Protocol[SwitchingParams]):
    name = "switching_statistics"
    summary = ("single-pulse step distribution per amplitude, width and polarity; depinning "
               "probability vs amplitude and width")
    Params = SwitchingParams
    tables = {"steps": ("amplitude_volts", "width_seconds", "polarity", "repeat", "device",
                        "g_before_siemens", "g_after_siemens", "delta_siemens")}

    def estimate(self, target: Target) -> Estimate:
        p, n = self.params, self.devices(target)
        grid = _grid(p.amplitudes_volts, p.widths_seconds)
        est = Estimate()
        for shape in grid:
            est.add_shape(shape)
        recenters = len(grid) * -(-p.repeats // p.recenter_every)
        add_recenter(est, target, n, self.recenter_cap(target))
        cap = self.recenter_cap(target)
        add_recenter(est, target, n, periodic_cap(cap, 2 * p.recenter_every), recenters - 1)
        est.add_apply(1, n, len(grid) * p.repeats * 2)
        est.add_reads(n, p.n_averages, len(grid) * p.repeats * 2 + recenters)
        est.steps = len(grid) * p.repeats
        return est

    def run(self, ctx: RunContext) -> Generator[None, None, None]:
        p = self.params
        first = True
        for shape in _grid(p.amplitudes_volts, p.widths_seconds):
            for r in range(p.repeats):
                if r % p.recenter_every == 0:  # always at r = 0: g is read before any use
                    cap = self.recenter_cap(ctx.target)
                    ctx.recenter(cap if first else periodic_cap(cap, 2 * p.recenter_every))
                    first = False
                    g = ctx.read(p.n_averages)
                rows = []
                for polarity in (PUSH, PULL):
                    ctx.apply(int(polarity == PUSH), int(polarity == PULL), shape)
                    after = ctx.read(p.n_averages)
                    rows += ctx.device_rows(
                        {"amplitude_volts": shape.amplitude_volts,
                         "width_seconds": shape.width_seconds, "polarity": polarity,
                         "repeat": r},
                        g_before_siemens=g, g_after_siemens=after, delta_siemens=after - g)
                    g = after
                ctx.write("steps", rows)
                yield

    def plot(self, folder: Path, tables: Tables) -> list[Path]:
        from dwlab.records.plots import eng, engineering, plt, subplot_grid

        rows = tables["steps"]
        meta_threshold = self.params.depinning_threshold_siemens
        delta = float_column(rows, "delta_siemens")
        amp, width = float_column(rows, "amplitude_volts"), float_column(rows, "width_seconds")
        pol = float_column(rows, "polarity")
        if meta_threshold is None:
            at_max = amp == amp.max()
            meta_threshold = 0.3 * float(np.median(np.abs(delta[at_max])))
        out = []
        fig, ax = plt.subplots(figsize=(6.5, 4.2), layout="constrained")
        for w in sorted(set(width)):
            for s, style in ((PUSH, "o-"), (PULL, "s--")):
                amps = sorted(set(amp))
                prob = [float(np.mean(np.abs(delta[(amp == a) & (width == w) & (pol == s)])
                                      > meta_threshold)) for a in amps]
                ax.plot(amps, prob, style,
                        label=f"{eng(w, 's')}, {'push' if s > 0 else 'pull'}")
        ax.set_xlabel("amplitude")
        engineering(ax, "x", "V")
        ax.set_ylabel(f"P(|step| > {eng(meta_threshold, 'S')})")
        ax.set_title("Depinning probability")
        ax.legend(fontsize=7)
        out.append(save_figure(fig, folder / "depinning.png"))
        keys = sorted({(a, w) for a, w in zip(amp, width, strict=True)})
        fig, axes = subplot_grid(len(keys), 4, (3.2, 2.5))
        for ax, (a, w) in zip(axes.flat, keys, strict=False):
            for s, colour in ((PUSH, "tab:red"), (PULL, "tab:blue")):
                sel = (amp == a) & (width == w) & (pol == s)
                ax.hist(delta[sel], bins=30, alpha=0.5, color=colour,
                        label="push" if s > 0 else "pull")
            ax.set_title(f"{eng(a, 'V')}, {eng(w, 's')}", fontsize=8)
            engineering(ax, "x", "S", max_ticks=4)
            ax.tick_params(labelsize=7)
        axes.flat[0].legend(fontsize=7)
        fig.supxlabel("conductance step")
        out.append(save_figure(fig, folder / "step_histograms.png"))
        return out
