"""Time one push-pull apply of the jump-table twin at ResNet18 scale, against the
parametric twin's apply on the same plan, in one run.

    python benchmarks/jump_table_apply.py [--devices 11200000] [--budgets 8,32,128]
                                          [--repeats 1] [--exact] [--torch-device cpu|cuda]

The table is synthetic (64 source devices, one pulse shape, one position bin, 30 steps per
group, Gaussian steps of 0.01 +- 0.004 track, keys uniform): the time depends on its
shape, not on its values. Every device gets a budget of K pulses with ``n+ - n-``
Gaussian (spread 4 pulses); walls start in [0.4, 0.6] of the track. The jump-table twin
applies a plan through its sums (``JumpTableArray`` at ``SUMS_FROM`` devices or more;
``--exact`` also times the pulse-by-pulse path); the parametric twin (``TwinArray``,
continuous preset) applies the same plan. Prints the best of ``--repeats`` per budget and
the ratio jump table / parametric.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from dwlab.sim.jump_table import JumpTable, JumpTableArray
from dwlab.sim.twin import TwinArray

from dwlab.core.types import PulsePlan, PulseShape


def synthetic_table(devices: int = 64, bins: int = 1, per_group: int = 30) -> JumpTable:
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
    ap.add_argument("--exact", action="store_true", help="also time the pulse-by-pulse path")
    ap.add_argument("--torch-device", default="cpu")
    args = ap.parse_args()
    dev = torch.device(args.torch_device)
    n = args.devices
    shape = PulseShape(1.0, 1e-8)
    t0 = time.perf_counter()
    table = synthetic_table()
    twins = {"parametric": TwinArray(n, seed=1, torch_device=dev),
             "jump table": JumpTableArray(n, table, seed=1, torch_device=dev)}
    if args.exact:
        twins["exact"] = JumpTableArray(n, table, seed=1, torch_device=dev, sums_from=n + 1)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    print(f"devices {n:,}  torch {torch.__version__} on {name}, {torch.get_num_threads()} "
          f"threads; twins built in {time.perf_counter() - t0:.2f} s", flush=True)
    print(f"{'K':>5} " + " ".join(f"{k + ' s':>13}" for k in twins)
          + f" {'jump/param':>10}" + (f" {'exact/param':>11}" if args.exact else ""))
    gen = torch.Generator(device=dev).manual_seed(0)
    start = torch.rand(n, generator=gen, device=dev) * 0.2 + 0.4
    for k in (int(b) for b in args.budgets.split(",")):
        net = (torch.randn(n, generator=gen, device=dev) * 4).round().clamp(-k, k)
        push = ((k + net) / 2).floor().to(torch.int16)
        plan = PulsePlan.uniform(push, (k - push).to(torch.int16), shape)
        best = {}
        for label, twin in twins.items():
            for _ in range(args.repeats):
                twin.x = start.clone()
                sync(dev)
                t0 = time.perf_counter()
                twin.apply(plan)
                sync(dev)
                best[label] = min(best.get(label, float("inf")), time.perf_counter() - t0)
        ratio = best["jump table"] / best["parametric"]
        print(f"{k:>5} " + " ".join(f"{best[label]:13.3f}" for label in twins)
              + f" {ratio:10.1f}"
              + (f" {best['exact'] / best['parametric']:11.1f}" if args.exact else ""),
              flush=True)


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


if __name__ == "__main__":
    main()
