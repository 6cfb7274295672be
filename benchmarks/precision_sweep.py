"""The precision experiment: test accuracy, NLL and ECE against update precision, as on a
bench.

Trains a CIFAR-style ResNet18 on real Fashion-MNIST (full 60k/10k; or CIFAR-10 with
``--dataset cifar10 --data-dir FOLDER``) in two run folders under ``--run-dir``:

- ``bench/``: float SGD and float SGLD, push-pull SGLD on differential pairs at 1-8 bits
  with ``controller.precision: bench`` (every update pulse is the array's nominal pulse, so
  ``K = 2^b - 1`` pulses set both the largest update and its noise), and the scheme
  ablation at 7 bits (push-pull on one device, gradient-only pulses);
- ``fixed_range/``: the ablation that scales the pulse so ``K`` pulses always span
  ``--ablation-range`` of the window (more bits, finer steps at the same noise).

Each prints its table (accuracy, NLL, ECE, saturated devices, weight resolution, T_eff with
rounding) and writes sweep.md / sweep.csv / accuracy_vs_bits.png in its folder. A killed
sweep continues where it stopped: run the same command with the same ``--run-dir``.

    # the whole sweep on two CPU cores (see the config for the sizes)
    .venv/bin/python benchmarks/precision_sweep.py --run-dir runs/precision_bench
    # a smoke test of the whole pipeline (a minute or two)
    .venv/bin/python benchmarks/precision_sweep.py --quick --run-dir /tmp/sweep_smoke
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from dwlab.app.commands.sweep import DEFAULT_BITS, summarise, sweep_specs
from dwlab.app.training import (
    RunResult,
    RunSpec,
    add_training_options,
    config_with_overrides,
    open_run_folder,
    start_run_folder,
    train_run_folder,
    with_training_overrides,
)
from dwlab.config import LoadedConfig

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {"fashion_mnist": ROOT / "lab_configs" / "fashion_resnet18.yaml",
           "cifar10": ROOT / "lab_configs" / "cifar10_resnet18.yaml"}
ABLATION_SCHEMES = ("push_pull", "gradient_only")
"""The scheme ablation at 7 bits, beside the pair rows and float SGLD."""


def bench_specs(bits: list[int], seeds: list[int]) -> list[RunSpec]:
    specs = sweep_specs("push_pull_pair", bits, seeds)
    specs += [RunSpec(f"{scheme}-7bit-s{seed}", scheme, 7, seed)
              for seed in seeds for scheme in ABLATION_SCHEMES]
    return specs


def fixed_range_specs(bits: list[int], seeds: list[int]) -> list[RunSpec]:
    return [RunSpec(f"push_pull_pair-{b}bit-s{seed}", "push_pull_pair", b, seed)
            for seed in seeds for b in bits]


def run_part(folder: Path, loaded: LoadedConfig, specs: list[RunSpec], progress: bool
             ) -> list[RunResult]:
    """Train (or continue) one part of the sweep in ``folder`` and print its table."""
    run = (open_run_folder(folder) if (folder / "metadata.json").exists()
           else start_run_folder(loaded, folder, "sweep", specs))
    print(f"{folder.name}: {len(run.specs)} runs, records in {run.path}", flush=True)
    results = train_run_folder(run, progress=progress, keep_going=True)
    print(summarise(run, results), flush=True)
    return [r for r in results if isinstance(r, RunResult)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", choices=sorted(CONFIGS), default="fashion_mnist")
    p.add_argument("--config", type=Path, help="lab config (default: the dataset's)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--bits", type=int, nargs="+", default=DEFAULT_BITS)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--ablation-bits", type=int, nargs="+", default=[1, 4, 7],
                   help="precisions of the fixed-range ablation")
    p.add_argument("--ablation-range", type=float, default=0.005,
                   help="update range of the fixed-range ablation (fraction of the window)")
    p.add_argument("--quick", action="store_true",
                   help="smoke test: width 4, 512/256 images, 1 epoch, bits 1 and 7, 1 seed")
    add_training_options(p)
    args = p.parse_args(argv)
    if args.run_dir is None:
        p.error("--run-dir is required (it is also what a killed sweep resumes from)")

    changes = {"batch_size": args.batch_size}
    if args.quick:
        changes.update(width=4, epochs=1, limit_train=args.limit_train or 512,
                       limit_test=args.limit_test or 256, batch_size=args.batch_size or 64,
                       thinning_steps=2, checkpoint_every_steps=4, bf16=False)
        args.bits, args.ablation_bits, args.seeds = [1, 7], [7], args.seeds[:1]
    run_dir = args.run_dir
    args.run_dir = None
    loaded = config_with_overrides(args.config or CONFIGS[args.dataset], args, **changes)
    fixed = with_training_overrides(loaded, controller={"precision": "fixed_range",
                                                        "update_range": args.ablation_range})
    t = loaded.config.training
    print(f"precision sweep: {t.model} width {t.width} on {t.dataset}, {t.epochs} epochs, "
          f"bits {args.bits}, seeds {args.seeds}, device {t.torch_device}", flush=True)
    started = time.perf_counter()
    results = run_part(run_dir / "bench", loaded, bench_specs(args.bits, args.seeds),
                       not args.no_progress)
    results += run_part(run_dir / "fixed_range", fixed,
                        fixed_range_specs(args.ablation_bits, args.seeds),
                        not args.no_progress)
    print(f"wall time {time.perf_counter() - started:.0f} s; per run: "
          + ", ".join(f"{r.label} {r.train_seconds:.0f} s" for r in results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
