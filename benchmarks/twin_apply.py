"""Time one push-pull apply + read of the continuous DW twin at ResNet18 scale.

    python benchmarks/twin_apply.py [--devices 22400000] [--budget 128] [--repeats 2]
                                    [--torch-device cpu|cuda]

Every device gets a budget of K pulses, ``n+ - n-`` Gaussian with a spread of
``--net-sd`` pulses, as a quantised gradient would be. Walls start spread over a band of
the track: ``centre`` [0.4, 0.6], ``mid`` [0.2, 0.8], ``full`` [0, 1]; walls that could
reach an end take the exact pulse-by-pulse paths, the rest the closed form. Two pulse
widths: the nominal one and 1 ns (smaller steps, so fewer walls near the ends). Prints
the best of ``--repeats`` per row, and how many devices took the slow paths.
"""

from __future__ import annotations

import argparse
import time

import torch
from dwlab.sim.twin import TwinArray

from dwlab.core.types import PulsePlan, PulseShape

BANDS = (("centre", 0.4, 0.6), ("mid", 0.2, 0.8), ("full", 0.0, 1.0))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=22_400_000)
    ap.add_argument("--budget", type=int, default=128, help="pulses per device (K)")
    ap.add_argument("--net-sd", type=float, default=4.0)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--torch-device", default="cpu")
    ap.add_argument("--bands", default="centre,mid,full", help="comma-separated bands")
    args = ap.parse_args()
    dev = torch.device(args.torch_device)
    n, k = args.devices, args.budget
    t0 = time.perf_counter()
    twin = TwinArray(n, seed=1, torch_device=dev)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    print(f"devices {n:,}  budget K={k}  torch {torch.__version__} on {name}, "
          f"{torch.get_num_threads()} threads; twin built in {time.perf_counter() - t0:.2f} s")
    gen = torch.Generator(device=dev).manual_seed(0)
    net = (torch.randn(n, generator=gen, device=dev) * args.net_sd).round().clamp(-k, k)
    push = ((k + net) / 2).floor().to(torch.int16)
    pull = (k - push).to(torch.int16)
    print(f"{'width':>7} {'band':>7} {'apply s':>8} {'read s':>7} {'total s':>8} "
          f"{'1-end %':>8} {'2-end %':>8} {'pulses/s':>9}")
    for width in (twin.nominal_pulse.width_seconds, 1e-9):
        plan = PulsePlan.uniform(push, pull, PulseShape(twin.nominal_pulse.amplitude_volts, width))
        for band, lo, hi in (b for b in BANDS if b[0] in args.bands.split(",")):
            start = lo + (hi - lo) * torch.rand(n, generator=gen, device=dev)
            best = None
            for _ in range(args.repeats):
                twin.x = start.clone()
                sync(dev)
                t0 = time.perf_counter()
                receipt = twin.apply(plan)
                sync(dev)
                t1 = time.perf_counter()
                twin.read()
                sync(dev)
                t2 = time.perf_counter()
                if best is None or t2 - t0 < sum(best[:2]):
                    best = (t1 - t0, t2 - t1, receipt.details)
            apply_s, read_s, details = best
            one = 100 * details.get("near_one_end", 0) / n
            both = 100 * details.get("near_both_ends", 0) / n
            print(f"{width * 1e9:5.0f}ns {band:>7} {apply_s:8.3f} {read_s:7.3f} "
                  f"{apply_s + read_s:8.3f} {one:8.2f} {both:8.3f} {k * n / apply_s:9.3g}")


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


if __name__ == "__main__":
    main()
