"""The precision experiment: ResNet18 test accuracy against update precision.

Trains a CIFAR-style ResNet18 on real Fashion-MNIST (or CIFAR-10 with ``--dataset
cifar10 --data-dir FOLDER``, FOLDER holding cifar-10-batches-py or
cifar-10-python.tar.gz) with float SGD, float SGLD and push-pull SGLD through the
domain-wall twin at 1 to 8 bits, same epochs, two seeds each, and prints one table (also
written as sweep.md / sweep.csv / accuracy_vs_bits.png in the run folder).

    # the full sweep on two CPU cores (under 40 minutes; see the config for the sizes)
    .venv/bin/python benchmarks/precision_sweep.py
    # on a GPU at full width
    .venv/bin/python benchmarks/precision_sweep.py --device cuda --width 64 --epochs 10
    # a smoke test of the whole pipeline (seconds)
    .venv/bin/python benchmarks/precision_sweep.py --quick

A killed sweep continues with ``dwlab sweep --resume RUN_DIR``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from dwlab.app.commands.sweep import DEFAULT_BITS, start_sweep, summarise, sweep_specs
from dwlab.app.training import (
    RunResult,
    add_training_options,
    config_with_overrides,
    train_run_folder,
)

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {"fashion_mnist": ROOT / "lab_configs" / "fashion_resnet18.yaml",
           "cifar10": ROOT / "lab_configs" / "cifar10_resnet18.yaml"}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", choices=sorted(CONFIGS), default="fashion_mnist")
    p.add_argument("--config", type=Path, help="lab config (default: the dataset's)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--bits", type=int, nargs="+", default=DEFAULT_BITS)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--quick", action="store_true",
                   help="smoke test: width 4, 512/256 images, 1 epoch, bits 4 and 8, 1 seed")
    add_training_options(p)
    args = p.parse_args(argv)

    changes = {"batch_size": args.batch_size}
    if args.quick:
        changes.update(width=4, epochs=1, limit_train=args.limit_train or 512,
                       limit_test=args.limit_test or 256, batch_size=args.batch_size or 64,
                       thinning_steps=2, checkpoint_every_steps=4)
        args.bits, args.seeds = [4, 8], args.seeds[:1]
    loaded = config_with_overrides(args.config or CONFIGS[args.dataset], args, **changes)
    specs = sweep_specs(loaded.config.controller.scheme, args.bits, args.seeds)
    run = start_sweep(loaded, specs, args.run_dir)
    t = loaded.config.training
    print(f"precision sweep: {t.model} width {t.width} on {t.dataset}, {t.epochs} epochs, "
          f"bits {args.bits}, seeds {args.seeds}, device {t.torch_device}; {len(specs)} runs; "
          f"records in {run.path}", flush=True)
    started = time.perf_counter()
    results = train_run_folder(run, progress=not args.no_progress, keep_going=True)
    print(summarise(run, results))
    print(f"wall time {time.perf_counter() - started:.0f} s; "
          "per run: " + ", ".join(f"{r.label} {r.train_seconds:.0f} s"
                                   for r in results if isinstance(r, RunResult)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
