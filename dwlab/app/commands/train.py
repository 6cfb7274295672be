"""``dwlab train``: train a model through the configured arrays; ``--resume`` continues."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from dwlab.app.commands import ExitCode
from dwlab.app.logs import show_progress
from dwlab.app.simulate import (
    add_simulate_option,
    apply_simulate,
    record_simulation,
    simulate_refused_on_resume,
)
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
from dwlab.app.training.distributed import from_environment, leave
from dwlab.core.errors import ConfigError
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
    p.add_argument("--shards", type=int,
                   help="split every batch and every twin array into this many shards, "
                        "shared by the ranks of torchrun (default: the world size; fixed "
                        "for the run: the same seed and shards give the same training on "
                        "any world size that divides them)")
    add_training_options(p)
    add_simulate_option(p)
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
        if args.simulate:
            return simulate_refused_on_resume()
        run = open_run_folder(args.resume)
        if args.shards not in (None, run.shards):
            raise ConfigError(f"the run is split into {run.shards} shard(s), not "
                              f"{args.shards}: resume without --shards",
                              file=str(run.path / "metadata.json"), key="distributed.shards")
        parallel = from_environment(run.loaded.config.training.torch_device, run.shards)
        run = dataclasses.replace(run, parallel=parallel)
    else:
        loaded, simulated = apply_simulate(config_with_overrides(args.config, args),
                                           args.simulate)
        cfg = loaded.config
        specs = train_specs(args.scheme or cfg.controller.scheme,
                            args.bits or cfg.controller.update_bits, cfg.seed,
                            cfg.training.compare_float and not args.no_float)
        parallel = from_environment(cfg.training.torch_device, args.shards)
        folder = args.run_dir or (new_run_dir(cfg.training.runs_dir, cfg.name)
                                  if parallel.is_main else None)
        folder = parallel.broadcast_object(folder)  # rank 0 names the folder
        run = start_run_folder(loaded, folder, "train", specs, parallel)
        if parallel.is_main:
            record_simulation(run.path, run.metadata, simulated)
    if not parallel.is_main:  # the others train alike, silently
        try:
            train_run_folder(run, progress=False)
        finally:
            leave()
        return ExitCode.OK
    cfg = run.loaded.config
    t = cfg.training
    print(f"dwlab train: {cfg.name}: {t.model} (width {t.width}) on {t.dataset}, "
          f"{t.epochs} epochs, records in {run.path}")
    try:
        results = train_run_folder(run, progress=show_progress(args))
    except KeyboardInterrupt:
        print(f"continue with: dwlab train --resume {run.path}", file=sys.stderr)
        raise
    finally:
        leave()
    load_run(run.path).to_netcdf()
    print(report(results, run.path))
    return ExitCode.OK


def report(results: list[RunOutcome], folder: Path) -> str:
    """The closing report: per run, the final weights' and the sample average's accuracy
    and calibration side by side, the posterior chain, pulses per weight, T_eff, saturation
    and weight resolution."""
    lines = ["", f"{'':<22} {'final weights':^25} {'model average (BMA)':^25}",
             f"{'run':<22} {'accuracy':>9} {'NLL':>7} {'ECE':>7} {'accuracy':>9} {'NLL':>7} "
             f"{'ECE':>7} {'samples':>7} {'ESS':>5} {'pulses/weight':>14} {'T_eff':>9} "
             f"{'saturated':>9} {'res. bits':>9} {'train s':>8}"]
    notes = []
    for r in results:
        if isinstance(r, FailedRun):  # only in a sweep's folder resumed by train
            lines.append(f"{r.label:<22} failed: {r.failed}")
            continue
        device = r.device_backed
        pulses = f"{r.pulses_per_weight:.1f}" if device else "-"
        t_eff = f"{r.effective_temperature_mean:.3g}" if device else "-"
        saturated = f"{100 * r.saturated_fraction:.1f}%" if device else "-"
        bits = f"{r.precision['resolution_bits']:.1f}" if device and r.precision else "-"
        bma = (f"{_metrics(r.bma)}" if r.bma else f"{'-':>9} {'-':>7} {'-':>7}")
        chain = r.chain or {}
        ess = chain.get("ess_samples")
        lines.append(
            f"{r.label:<22} {_metrics(r.final_weights)} {bma} {r.samples:7d} "
            f"{'-' if ess is None else f'{ess:.1f}':>5} {pulses:>14} {t_eff:>9} "
            f"{saturated:>9} {bits:>9} {r.train_seconds:8.1f}")
        if r.tensor_temperatures:
            notes.append(f"{r.label}: {_temperatures_line(r.tensor_temperatures)}")
        if r.chain:
            notes.append(f"{r.label}: {_chain_line(r.chain)}")
            notes.extend(f"{r.label}: WARNING: {w}" for w in r.chain["warnings"])
    lines.extend(notes)
    lines.append("metrics on the test set; BMA: softmax averaged over the posterior samples; "
                 "ESS: independent draws the kept samples hold (kept samples x thinning / "
                 "autocorrelation time, at most their number)")
    lines.append("T_eff: mean effective temperature of the device weights (device noise and "
                 "the rounding of pulse counts); saturated: devices at a track end after the "
                 "last step; res. bits: weight resolution, log2(window / one step)")
    lines.append(f"records: {folder} (config.yaml, metadata.json, per-run steps.csv, "
                 "epochs.csv, result.json, device_events.jsonl, checkpoints; "
                 "learning_curves.png; all tables in records.nc); live view: "
                 f"dwlab watch {folder}")
    return "\n".join(lines)


def _metrics(m: dict[str, float]) -> str:
    return f"{100 * m['accuracy']:8.2f}% {m['nll']:7.4f} {m['ece']:7.4f}"


def _temperatures_line(temperatures: dict[str, float]) -> str:
    """The coolest and the hottest tensor, and the last (the classifier in the models
    here)."""
    coolest = min(temperatures, key=temperatures.__getitem__)
    hottest = max(temperatures, key=temperatures.__getitem__)
    last = list(temperatures)[-1]
    return (f"device-noise temperature by tensor from {temperatures[coolest]:.3g} ({coolest}) "
            f"to {temperatures[hottest]:.3g} ({hottest}); last tensor {last} "
            f"{temperatures[last]:.3g} (all in result.json)")


def _chain_line(chain: dict) -> str:
    """Where sampling started and why, the thinning, the autocorrelation time."""
    if chain["sampling_from_step"] is None:
        return "no sampling phase"
    z = chain["stationarity_z"]
    test = "" if z is None else f" (training loss stationary: |z| = {abs(z):.2f})"
    tau = chain["autocorrelation_steps"]
    tau_text = "-" if tau is None else f"{tau:.1f}"
    return (f"sampling from step {chain['sampling_from_step']}{test}, every "
            f"{chain['thinning_steps']} steps; weight autocorrelation time {tau_text} steps")
