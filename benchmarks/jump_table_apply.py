"""Time one push-pull apply + read of the jump-table twin at ResNet18 scale.

    python benchmarks/jump_table_apply.py [--devices 11200000] [--budgets 8,32,128]
                                          [--repeats 1] [--torch-device cpu|cuda]

The table is synthetic (64 source devices, one pulse shape, 8 conductance bins, 30 steps
per group, Gaussian steps of 0.01 +- 0.004 track): the time depends on its shape, not on
its values. Every device gets a budget of K pulses with ``n+ - n-`` Gaussian (spread 4
pulses), applied one pulse at a time in the hardware order, vectorised over devices.
Prints the best of ``--repeats`` per budget, and device-pulses per second.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from dwlab.sim.jump_table import JumpTable, JumpTableArray

from dwlab.core.types import PulsePlan, PulseShape


def synthetic_table(devices: int = 64, bins: int = 8, per_group: int = 30) -> JumpTable:
    rng = np.random.default_rng(0)
    groups = devices * 2 * bins
    steps = 0.01 + 0.004 * rng.standard_normal(groups * per_group)
    sign = np.repeat(np.tile(np.repeat([1.0, -1.0], bins), devices), per_group)
    offsets = (np.arange(groups) * per_group).reshape(devices, 1, 2, bins)
    keys = np.sort(rng.uniform(-0.02, 0.02, (groups, per_group)), axis=1).ravel()
    return JumpTable(np.array([[1.0, 1e-8]]), np.full(devices, 2.5e-4),
                     np.full(devices, 5e-4), offsets, np.full_like(offsets, per_group),
                     (steps * sign).astype(np.float32), keys.astype(np.float32),
                     5e-7 * rng.standard_normal((devices, 100)), bins)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=11_200_000)
    ap.add_argument("--budgets", default="8,32,128")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--torch-device", default="cpu")
    args = ap.parse_args()
    dev = torch.device(args.torch_device)
    n = args.devices
    t0 = time.perf_counter()
    twin = JumpTableArray(n, synthetic_table(), seed=1, torch_device=dev)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    print(f"devices {n:,}  torch {torch.__version__} on {name}, {torch.get_num_threads()} "
          f"threads; twin built in {time.perf_counter() - t0:.2f} s")
    print(f"{'K':>5} {'apply s':>8} {'read s':>7} {'s/pulse':>8} {'device-pulses/s':>16}")
    gen = torch.Generator(device=dev).manual_seed(0)
    for k in (int(b) for b in args.budgets.split(",")):
        net = (torch.randn(n, generator=gen, device=dev) * 4).round().clamp(-k, k)
        push = ((k + net) / 2).floor().to(torch.int16)
        plan = PulsePlan.uniform(push, (k - push).to(torch.int16), PulseShape(1.0, 1e-8))
        best = None
        for _ in range(args.repeats):
            twin.x = torch.full((n,), 0.5, device=dev)
            sync(dev)
            t0 = time.perf_counter()
            twin.apply(plan)
            sync(dev)
            t1 = time.perf_counter()
            twin.read()
            sync(dev)
            t2 = time.perf_counter()
            if best is None or t1 - t0 < best[0]:
                best = (t1 - t0, t2 - t1)
        apply_s, read_s = best
        print(f"{k:>5} {apply_s:8.2f} {read_s:7.3f} {apply_s / k:8.3f} {k * n / apply_s:16.3g}",
              flush=True)


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


if __name__ == "__main__":
    main()
