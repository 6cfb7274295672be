"""``dwlab train``: train a model through the configured arrays; ``--resume`` continues."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from dwlab.app.training import (
    FLOAT_SCHEMES,
    RunSpec,
    open_run_folder,
    run_folder,
    start_run_folder,
    with_training_overrides,
)
from dwlab.config import load_config
from dwlab.core.schemes import Scheme
from dwlab.records import new_run_dir


def add_training_overrides(p: argparse.ArgumentParser) -> None:
    """Options shared by ``train`` and ``sweep`` that override the config's training part."""
    p.add_argument("--epochs", type=int, help="override training.epochs")
    p.add_argument("--width", type=int, help="override training.width")
    p.add_argument("--limit-train", type=int, help="use only the first N training images")
    p.add_argument("--limit-test", type=int, help="use only the first N test images")
    p.add_argument("--data-dir", help="override training.data_dir")
    p.add_argument("--device", help="torch device for the model and the twins: cpu, cuda")
    p.add_argument("--update-range", type=float,
                   help="override controller.update_range (largest update, as a fraction "
                        "of the conductance window)")
    p.add_argument("--bf16", action="store_true",
                   help="bf16 autocast of the forward pass")
    p.add_argument("--run-dir", type=Path,
                   help="write records here (default: a new folder under training.runs_dir)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def overrides(args: argparse.Namespace) -> dict[str, Any]:
    data_dir = str(Path(args.data_dir).resolve()) if args.data_dir else None
    return {"epochs": args.epochs, "width": args.width, "limit_train": args.limit_train,
            "limit_test": args.limit_test, "data_dir": data_dir, "torch_device": args.device,
            "bf16": args.bf16 or None}


def controller_overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {"update_range": args.update_range}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train", help="train a network through the configured device arrays",
        description="Train with the configured scheme (and float SGD beside it), print "
                    "a short report, and keep every record in a run folder.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--config", type=Path, help="lab config YAML")
    src.add_argument("--resume", type=Path, metavar="RUN_DIR",
                     help="continue a run folder from its last checkpoint")
    p.add_argument("--scheme", choices=Scheme.names(), help="override controller.scheme")
    p.add_argument("--bits", type=int, help="override controller.update_bits")
    p.add_argument("--no-float", action="store_true",
                   help="skip the float SGD reference run")
    add_training_overrides(p)
    p.set_defaults(func=run_train)


def train_specs(scheme: str, bits: int, seed: int, compare_float: bool) -> list[RunSpec]:
    main = RunSpec(label=scheme if scheme in FLOAT_SCHEMES else f"{scheme}-{bits}bit",
                   scheme=scheme, update_bits=bits, seed=seed)
    specs = [main]
    if compare_float and scheme != "float_sgd":
        specs.append(RunSpec(label="float_sgd", scheme="float_sgd", update_bits=bits,
                             seed=seed))
    return specs


def run_train(args: argparse.Namespace) -> int:
    if args.resume is not None:
        folder = args.resume
        loaded, _, _ = open_run_folder(folder)
    else:
        loaded = with_training_overrides(load_config(args.config),
                                         controller=controller_overrides(args), **overrides(args))
        cfg = loaded.config
        specs = train_specs(args.scheme or cfg.controller.scheme,
                            args.bits or cfg.controller.update_bits, cfg.seed,
                            cfg.training.compare_float and not args.no_float)
        folder = args.run_dir or new_run_dir(cfg.training.runs_dir, cfg.name)
        start_run_folder(loaded, folder, "train", specs)
    t = loaded.config.training
    print(f"dwlab train: {loaded.config.name}: {t.model} (width {t.width}) on {t.dataset}, "
          f"{t.epochs} epochs, records in {folder}")
    results = run_folder(folder, progress=not args.no_progress)
    print(report(results, folder))
    return 0


def report(results: list[dict[str, Any]], folder: Path) -> str:
    """The closing report: accuracy and calibration per run, pulses per weight, records."""
    lines = ["", f"{'run':<22} {'accuracy':>9} {'NLL':>7} {'ECE':>7} {'entropy':>8} "
             f"{'samples':>7} {'pulses/weight':>14} {'train s':>8}"]
    for r in results:
        pulses = f"{r['pulses_per_weight']:.1f}" if r["device_backed"] else "-"
        lines.append(
            f"{r['label']:<22} {100 * r['accuracy']:8.2f}% {r['nll']:7.4f} {r['ece']:7.4f} "
            f"{r['entropy']:8.4f} {r['samples']:7d} {pulses:>14} {r['train_seconds']:8.1f}")
    lines.append("accuracy, NLL, ECE and entropy: Bayesian model average over the posterior "
                 "samples (SGLD schemes) or the final weights (float SGD), on the test set")
    lines.append(f"records: {folder} (config.yaml, metadata.json, per-run steps.csv, "
                 "epochs.csv, device_events.jsonl, checkpoints; learning_curves.png)")
    return "\n".join(lines)
