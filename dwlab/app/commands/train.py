"""``dwlab train``: train a model through the configured arrays; ``--resume`` continues."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dwlab.app.commands import ExitCode
from dwlab.app.logs import show_progress
from dwlab.app.training import (
    FLOAT_SCHEMES,
    FailedRun,
    RunOutcome,
    RunSpec,
    add_training_options,
    config_with_overrides,
    open_run_folder,
    start_run_folder,
    train_run_folder,
)
from dwlab.core.schemes import Scheme
from dwlab.records import new_run_dir
from dwlab.records.export import load_run


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
    add_training_options(p)
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
        run = open_run_folder(args.resume)
    else:
        loaded = config_with_overrides(args.config, args)
        cfg = loaded.config
        specs = train_specs(args.scheme or cfg.controller.scheme,
                            args.bits or cfg.controller.update_bits, cfg.seed,
                            cfg.training.compare_float and not args.no_float)
        folder = args.run_dir or new_run_dir(cfg.training.runs_dir, cfg.name)
        run = start_run_folder(loaded, folder, "train", specs)
    cfg = run.loaded.config
    t = cfg.training
    print(f"dwlab train: {cfg.name}: {t.model} (width {t.width}) on {t.dataset}, "
          f"{t.epochs} epochs, records in {run.path}")
    try:
        results = train_run_folder(run, progress=show_progress(args))
    except KeyboardInterrupt:
        print(f"continue with: dwlab train --resume {run.path}", file=sys.stderr)
        raise
    load_run(run.path).to_netcdf()
    print(report(results, run.path))
    return ExitCode.OK


def report(results: list[RunOutcome], folder: Path) -> str:
    """The closing report: accuracy and calibration per run, pulses per weight, records."""
    lines = ["", f"{'run':<22} {'accuracy':>9} {'NLL':>7} {'ECE':>7} {'entropy':>8} "
             f"{'samples':>7} {'pulses/weight':>14} {'train s':>8}"]
    for r in results:
        if isinstance(r, FailedRun):  # only in a sweep's folder resumed by train
            lines.append(f"{r.label:<22} failed: {r.failed}")
            continue
        pulses = f"{r.pulses_per_weight:.1f}" if r.device_backed else "-"
        lines.append(
            f"{r.label:<22} {100 * r.accuracy:8.2f}% {r.nll:7.4f} {r.ece:7.4f} "
            f"{r.entropy:8.4f} {r.samples:7d} {pulses:>14} {r.train_seconds:8.1f}")
    lines.append("accuracy, NLL, ECE and entropy: Bayesian model average over the posterior "
                 "samples (SGLD schemes) or the final weights (float SGD), on the test set")
    lines.append(f"records: {folder} (config.yaml, metadata.json, per-run steps.csv, "
                 "epochs.csv, device_events.jsonl, checkpoints; learning_curves.png; all tables "
                 f"in records.nc); live view: dwlab watch {folder}")
    return "\n".join(lines)
