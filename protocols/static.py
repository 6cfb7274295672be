"""Protocols about states rather than steps: read noise and disturb, retention, device map
(which tells walls at a track end from walls held by pinning)."""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
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

from dwlab.core.types import PulseShape


@dataclass(frozen=True)
class ReadNoiseParams(ProtocolParams):
    reads: int = param(200, min=2, help="single reads that measure read noise")
    disturb_reads: int = param(300, min=0,
                               help="further single reads that probe read disturb (drift)")
    recenter_max_pulses: int | None = recenter_param()


class ReadNoise(Protocol[ReadNoiseParams]):
    name = "read_noise"
    summary = ("repeated single reads of an unpulsed array: read noise, then read disturb "
               "(drift of the mean over many reads)")
    Params = ReadNoiseParams
    tables = {"reads": ("phase", "read", "device", "conductance_siemens")}

    def estimate(self, target: Target) -> Estimate:
        p, n = self.params, self.devices(target)
        est = Estimate()
        add_recenter(est, target, n, self.recenter_cap(target))
        est.add_reads(n, 1, p.reads + p.disturb_reads)
        est.steps = p.reads + p.disturb_reads
        return est

    def run(self, ctx: RunContext) -> Generator[None, None, None]:
        p = self.params
        ctx.recenter(self.recenter_cap(ctx.target))
        for i in range(p.reads + p.disturb_reads):
            g = ctx.read(1)
            phase = "noise" if i < p.reads else "disturb"
            ctx.write("reads", ctx.device_rows({"phase": phase, "read": i},
                                               conductance_siemens=g))
            yield

    def plot(self, folder: Path, tables: Tables) -> list[Path]:
        from dwlab.records.plots import eng, engineering, integer_ticks, plt

        rows = tables["reads"]
        g, device, read = (float_column(rows, k) for k in ("conductance_siemens", "device", "read"))
        noise = np.array([r["phase"] == "noise" for r in rows])
        devices = sorted(set(device))
        deviation = np.empty_like(g)
        for d in devices:
            sel = (device == d) & noise
            deviation[device == d] = g[device == d] - (g[sel].mean() if sel.any() else 0.0)
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
        a1.hist(deviation[noise], bins=40)
        sd = deviation[noise].std(ddof=1) if noise.sum() > 1 else float("nan")
        a1.set_title(f"read noise: sd {eng(sd, 'S')}")
        a1.set_xlabel("read minus device mean")
        engineering(a1, "x", "S")
        reads = sorted(set(read))
        a2.plot(reads, [deviation[read == i].mean() for i in reads], ".-", ms=3, lw=0.5)
        disturb = read[~noise]
        if disturb.size:
            a2.axvline(disturb.min(), color="C3", ls="--", lw=1, label="disturb reads start")
            a2.legend(fontsize=8)
        a2.set_xlabel("read number")
        a2.set_ylabel("mean deviation over devices")
        engineering(a2, "y", "S")
        integer_ticks(a2)
        a2.set_title("read disturb")
        return [save_figure(fig, folder / "read_noise.png")]


# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RetentionParams(ProtocolParams):
    times_seconds: list[float] = param([0.0, 1.0, 10.0, 100.0], unit="s", min=0.0,
                                       help="read times after programming")
    program_pulses: int = param(20, min=-4096, max=4096,
                                help="net nominal pulses applied from mid-track (push > 0)")
    n_averages: int = param(4, min=1, help="reads averaged per reading")
    recenter_max_pulses: int | None = recenter_param()

    def validate(self) -> None:
        super().validate()
        if list(self.times_seconds) != sorted(self.times_seconds):
            raise ValueError("times_seconds must be in increasing order")


class Retention(Protocol[RetentionParams]):
    name = "retention"
    summary = ("conductance over time after programming (simulated time on arrays offering "
               "advance_time, real waiting on hardware)")
    Params = RetentionParams
    tables = {"retention": ("time_seconds", "device", "conductance_siemens")}

    def estimate(self, target: Target) -> Estimate:
        p, n = self.params, self.devices(target)
        est = Estimate()
        add_recenter(est, target, n, self.recenter_cap(target))
        est.add_apply(abs(p.program_pulses), n)
        est.add_reads(n, p.n_averages, len(p.times_seconds))
        est.wait_seconds = max(p.times_seconds)
        est.steps = len(p.times_seconds)
        return est

    def run(self, ctx: RunContext) -> Generator[None, None, None]:
        p = self.params
        ctx.recenter(self.recenter_cap(ctx.target))
        if p.program_pulses:
            ctx.apply(max(p.program_pulses, 0), max(-p.program_pulses, 0),
                      ctx.target.nominal_pulse)
        start = ctx.clock.now()
        for t in p.times_seconds:
            ctx.clock.wait(start + t - ctx.clock.now())
            g = ctx.read(p.n_averages)
            elapsed = ctx.clock.now() - start
            ctx.write("retention", ctx.device_rows({"time_seconds": elapsed},
                                                   conductance_siemens=g))
            yield

    def plot(self, folder: Path, tables: Tables) -> list[Path]:
        from dwlab.records.plots import eng, engineering, plt

        rows = tables["retention"]
        t, g, device = (float_column(rows, k) for k in ("time_seconds", "conductance_siemens",
                                                    "device"))
        fig, ax = plt.subplots(figsize=(7, 4), layout="constrained")
        for d in sorted(set(device))[:16]:
            sel = device == d
            ax.plot(t[sel], g[sel], ".-", lw=0.8)
        ax.set_xscale("symlog", linthresh=1.0)
        times = sorted(set(t))  # ticks where it was read: a symlog axis picks odd ones
        ax.set_xticks(times, [eng(v, "s") for v in times])
        ax.set_xlabel("time after programming")
        ax.set_ylabel("conductance")
        engineering(ax, "y", "S")
        ax.set_title("Retention (first 16 devices)")
        return [save_figure(fig, folder / "retention.png")]


# ---------------------------------------------------------------------------


END_STATES = ("end", "pinned", "short", "unsettled")
"""How a device map leaves a wall at each end:

- ``end``: settled at the saturating drive, and the stronger probe burst did not move it;
- ``pinned``: settled at the saturating drive, but the probe burst moved it: pinning held
  it short of the end; the recorded conductance is where bursts at the probe drive left it;
- ``short``: settled and not moved by the probe, yet further than a quarter of the nominal
  range from the configured end of the conductance range: held by pinning beyond the
  probe drive, or a configured range that is off (it stays in the map: ``saturated``
  counts every settled end; the fit names the states when a range comes out empty);
- ``unsettled``: still moving after ``max_bursts`` bursts.
"""


@dataclass(frozen=True)
class DeviceMapParams(ProtocolParams):
    saturate_pulses: int = param(300, min=1,
                                 help="pulses per saturating burst towards a track end")
    max_bursts: int = param(4, min=2,
                            help="bursts per end at most; saturation is confirmed by a burst "
                                 "that no longer moves the conductance")
    settle_fraction: float = param(0.05, min=0.0, max=1.0,
                                   help="a burst moving G by less than this fraction of the "
                                        "nominal range (and less than a quarter of its nominal "
                                        "movement) means the wall is at the end")
    step_pulses: int = param(20, min=1, help="nominal pulses whose mean step is mapped")
    n_averages: int = param(16, min=1, help="reads averaged per reading")
    amplitude_volts: float | None = amplitude_param("saturating pulse amplitude; empty: nominal")
    width_seconds: float | None = width_param("saturating pulse width; empty: nominal")
    probe_factor: float = param(1.5, min=1.0, max=10.0,
                                help="a settled wall gets one burst at this times the "
                                     "saturating amplitude (capped at the amplitude limit): "
                                     "one that moves was held by pinning, not at the end")
    recenter_max_pulses: int | None = recenter_param()


class DeviceMap(Protocol[DeviceMapParams]):
    name = "device_map"
    summary = ("per device: conductance at both track ends (saturation confirmed, walls held "
               "by pinning told apart by a stronger probe burst) and mean step per nominal "
               "pulse of each polarity")
    Params = DeviceMapParams
    tables = {"devices": ("device", "index", "g_max_siemens", "g_min_siemens", "saturated",
                          "push_end", "pull_end", "step_push_siemens", "step_pull_siemens")}

    def _chunks(self, target: Target) -> list[int]:
        """One saturating burst split into applies the limits allow."""
        total, cap = self.params.saturate_pulses, target.limits.max_pulses_per_device
        return [cap] * (total // cap) + ([total % cap] if total % cap else [])

    def _probe_shape(self, target: Target) -> PulseShape:
        shape = pulse_or_nominal(self.params, target.nominal_pulse)
        amplitude = min(shape.amplitude_volts * self.params.probe_factor,
                        target.limits.max_amplitude_volts)
        return PulseShape(amplitude, shape.width_seconds)

    def estimate(self, target: Target) -> Estimate:
        p, n = self.params, self.devices(target)
        est = Estimate()
        est.add_shape(pulse_or_nominal(p, target.nominal_pulse))
        est.add_shape(self._probe_shape(target))
        est.add_shape(target.nominal_pulse)
        for chunk in self._chunks(target):
            # per end: up to max_bursts saturating bursts, then up to max_bursts probe ones
            est.add_apply(chunk, n, 4 * p.max_bursts)
        add_recenter(est, target, n, self.recenter_cap(target))
        est.add_apply(p.step_pulses, n, 2)
        est.add_reads(n, p.n_averages, 2 * (2 * p.max_bursts + 1) + 3)
        est.steps = 4
        return est

    def _bursts(self, ctx: RunContext, polarity: int, shape: PulseShape, g: torch.Tensor,
                tolerance: float, bursts: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Up to ``bursts`` bursts towards one end, until none moves any selected device;
        returns the conductances and which devices the last burst left in place."""
        settled = torch.zeros_like(g, dtype=torch.bool)
        for _ in range(bursts):
            for chunk in self._chunks(ctx.target):
                ctx.apply(chunk if polarity > 0 else 0, chunk if polarity < 0 else 0, shape)
            new = ctx.read(self.params.n_averages)
            settled = (new - g).abs() < tolerance
            g = new
            if bool(settled.all()):
                break
        return g, settled

    def _saturate(self, ctx: RunContext, polarity: int) -> tuple[torch.Tensor, list[str]]:
        """Drive every wall to one end; the conductances there and each wall's end state
        (:data:`END_STATES`)."""
        p = self.params
        t = ctx.target
        tolerance = p.settle_fraction * (t.conductance_max_siemens - t.conductance_min_siemens)
        if t.step_siemens > 0:  # a burst that still moves moves by about step x pulses
            tolerance = min(tolerance, 0.25 * t.step_siemens * p.saturate_pulses)
        g, settled = self._bursts(ctx, polarity, pulse_or_nominal(p, t.nominal_pulse),
                                  ctx.read(p.n_averages), tolerance, p.max_bursts)
        # A stronger burst tells pinning (it moves) from the track end (it cannot).
        g_probe, still = self._bursts(ctx, polarity, self._probe_shape(t), g, tolerance, 1)
        moved = ~still
        if bool(moved.any()):
            g_probe, still = self._bursts(ctx, polarity, self._probe_shape(t), g_probe,
                                          tolerance, p.max_bursts)
        end = t.conductance_max_siemens if polarity > 0 else t.conductance_min_siemens
        margin = 0.25 * (t.conductance_max_siemens - t.conductance_min_siemens)
        states = []
        for i in range(len(g)):
            if not bool(settled[i]) or not bool(still[i]):
                states.append("unsettled")
            elif bool(moved[i]):
                states.append("pinned")
            elif margin > 0 and abs(float(g_probe[i]) - end) > margin:
                states.append("short")
            else:
                states.append("end")
        return g_probe, states

    def run(self, ctx: RunContext) -> Generator[None, None, None]:
        p = self.params
        g_max, top = self._saturate(ctx, +1)
        yield
        g_min, bottom = self._saturate(ctx, -1)
        yield
        ctx.recenter(self.recenter_cap(ctx.target))
        before = ctx.read(p.n_averages)
        ctx.apply(p.step_pulses, 0, ctx.target.nominal_pulse)
        mid = ctx.read(p.n_averages)
        step_push = (mid - before) / p.step_pulses
        yield
        ctx.apply(0, p.step_pulses, ctx.target.nominal_pulse)
        after = ctx.read(p.n_averages)
        step_pull = (mid - after) / p.step_pulses
        shape = ctx.info.shape
        # settled at both ends, at some drive; 'short' stays in (the configured range may
        # be rough) and is named in the record for the fit's errors
        reached = torch.tensor([a != "unsettled" and b != "unsettled"
                                for a, b in zip(top, bottom, strict=True)])
        rows = ctx.device_rows({}, g_max_siemens=g_max, g_min_siemens=g_min,
                               saturated=reached.long(), step_push_siemens=step_push,
                               step_pull_siemens=step_pull)
        for row, push_end, pull_end in zip(rows, top, bottom, strict=True):
            index = np.unravel_index(int(row["device"]), shape)
            row["index"] = "x".join(str(int(i)) for i in index)
            row["push_end"], row["pull_end"] = push_end, pull_end
        ctx.write("devices", rows)
        yield

    def plot(self, folder: Path, tables: Tables) -> list[Path]:
        from dwlab.records.plots import crossbar_heatmap, engineering, integer_ticks, plt

        rows = tables["devices"]
        index = [tuple(int(v) for v in r["index"].split("x")) for r in rows]
        quantities = [("g_max_siemens", "G at push end"), ("g_min_siemens", "G at pull end"),
                      ("step_push_siemens", "push step"), ("step_pull_siemens", "pull step")]
        fig, axes = plt.subplots(1, 4, figsize=(17, 4), layout="constrained")
        for ax, (key, title) in zip(axes, quantities, strict=True):
            values = np.array([float(row[key]) for row in rows])
            if len(index[0]) == 2:  # a crossbar: the map as the chip lays it out
                grid = np.full(tuple(max(i[k] for i in index) + 1 for k in (0, 1)), np.nan)
                for (r, c), value in zip(index, values, strict=True):
                    grid[r, c] = value
                crossbar_heatmap(ax, grid, title=title)
            else:  # no layout to show: one bar per device
                ax.bar([int(r["device"]) for r in rows], values, color="C0")
                ax.set(xlabel="device", title=title)
                engineering(ax, "y", "S")
                integer_ticks(ax)
        fig.suptitle("Device-to-device map")
        return [save_figure(fig, folder / "device_map.png")]
