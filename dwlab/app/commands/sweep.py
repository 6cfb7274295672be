"""``dwlab sweep``: the precision experiment.

The same training (config, epochs, seeds) with float SGD, float SGLD, and the configured
device scheme (push-pull SGLD through the arrays) at several update precisions, all at the
config's precision (``controller.precision``: bench, the nominal pulse; or fixed_range,
``controller.update_range``: more bits, finer steps); writes
``sweep.csv`` (one row per run), ``sweep.md`` (mean and spread over seeds, and the gap to
float SGD) and ``accuracy_vs_bits.png`` into the run folder.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
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
    RunFolder,
    RunOutcome,
    RunResult,
    RunSpec,
    add_training_options,
    config_with_overrides,
    open_run_folder,
    start_run_folder,
    train_run_folder,
)
from dwlab.config import LoadedConfig
from dwlab.core.schemes import Scheme
from dwlab.records import TableWriter, atomic_write_text, new_run_dir, plots
from dwlab.records.export import load_run

DEVICE_SCHEMES = Scheme.device_names()
RESULT_COLUMNS = ["label", "scheme", "update_bits", "seed", "accuracy", "nll", "ece",
                  "entropy", "final_weights_accuracy", "samples", "pulses_per_weight",
                  "train_seconds"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sweep", help="accuracy against update precision (the precision experiment)",
        description=__doc__.split("\n\n")[1] if __doc__ else None)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--config", type=Path, help="lab config YAML")
    src.add_argument("--resume", type=Path, metavar="RUN_DIR",
                     help="continue a sweep folder from its last checkpoints")
    p.add_argument("--bits", type=int, nargs="+", default=DEFAULT_BITS,
                   help="update precisions of the device scheme (default: 1 to 8)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1],
                   help="seeds; each run of the sweep is repeated per seed (default: 0 1)")
    p.add_argument("--scheme", choices=DEVICE_SCHEMES,
                   help="device scheme (default: the config's controller.scheme)")
    p.add_argument("--no-float-sgld", action="store_true",
                   help="leave out the float SGLD reference")
    add_training_options(p)
    add_simulate_option(p)
    p.set_defaults(func=run_sweep)


DEFAULT_BITS = list(range(1, 9))
"""1 to 8 bits: the papers' 4-8 and, below them, where the resolution runs out."""


def sweep_specs(scheme: str, bits: list[int], seeds: list[int],
                float_sgld: bool = True) -> list[RunSpec]:
    """Float references first (per seed), then the device scheme at every precision.

    Under bench precision the bits set the pulse budget of the nominal pulse; under
    fixed_range the controller scales the width so the bits change only the resolution.
    """
    if scheme not in DEVICE_SCHEMES:
        raise ValueError(f"the sweep needs a device scheme ({', '.join(DEVICE_SCHEMES)}), "
                         f"got '{scheme}'")
    top = max(bits)
    specs = []
    for seed in seeds:
        specs.append(RunSpec(f"float_sgd-s{seed}", "float_sgd", top, seed))
        if float_sgld:
            specs.append(RunSpec(f"float_sgld-s{seed}", "float_sgld", top, seed))
        for b in sorted(bits):
            specs.append(RunSpec(f"{scheme}-{b}bit-s{seed}", scheme, b, seed))
    return specs


def start_sweep(loaded: LoadedConfig, specs: list[RunSpec], run_dir: Path | None
                ) -> RunFolder:
    folder = run_dir or new_run_dir(loaded.config.training.runs_dir, f"sweep-{loaded.config.name}")
    return start_run_folder(loaded, folder, "sweep", specs)


def run_sweep(args: argparse.Namespace) -> int:
    if args.resume is not None:
        if args.simulate:
            return simulate_refused_on_resume()
        run = open_run_folder(args.resume)
    else:
        loaded, simulated = apply_simulate(config_with_overrides(args.config, args),
                                           args.simulate)
        scheme = args.scheme or loaded.config.controller.scheme
        specs = sweep_specs(scheme, args.bits, args.seeds, not args.no_float_sgld)
        run = start_sweep(loaded, specs, args.run_dir)
        record_simulation(run.path, run.metadata, simulated)
    print(f"dwlab sweep: records in {run.path}")
    try:
        results = train_run_folder(run, progress=show_progress(args), keep_going=True)
    except KeyboardInterrupt:
        print(f"continue with: dwlab sweep --resume {run.path}", file=sys.stderr)
        raise
    print(summarise(run, results))
    load_run(run.path).to_netcdf()
    return ExitCode.OK


def _method(r: RunResult) -> tuple[str, int | None]:
    """Group key: float references ignore bits; device runs are grouped by bits."""
    return (r.scheme, None) if r.scheme.startswith("float") else (r.scheme, r.update_bits)


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def _accuracy(mean: float, sd: float, runs: int) -> str:
    """Accuracy in percent, with the spread only when there is one (two runs or more)."""
    return f"{100 * mean:.2f} ± {100 * sd:.2f}" if runs > 1 else f"{100 * mean:.2f}"


def summarise(run: RunFolder, outcomes: list[RunOutcome]) -> str:
    """Write sweep.csv, sweep.md and accuracy_vs_bits.png; return the markdown table.

    Failed runs (diverged, refused plans) are listed under the table, not averaged.
    """
    folder = run.path
    failed = [r for r in outcomes if isinstance(r, FailedRun)]
    results = [r for r in outcomes if isinstance(r, RunResult)]
    csv_path = folder / "sweep.csv"
    csv_path.unlink(missing_ok=True)  # derived from result.json files; rewritten whole
    with TableWriter(csv_path, RESULT_COLUMNS) as table:
        for r in results:
            table.append({**{k: v for k, v in dataclasses.asdict(r).items()
                             if k in RESULT_COLUMNS},
                          # float runs have no update precision (their spec carries one)
                          "update_bits": "" if r.scheme in FLOAT_SCHEMES else r.update_bits,
                          "final_weights_accuracy": r.final_weights["accuracy"]})
    groups: dict[tuple[str, int | None], list[RunResult]] = {}
    for r in results:
        groups.setdefault(_method(r), []).append(r)
    float_sgd = groups.get(("float_sgd", None))
    reference = _mean_std([r.accuracy for r in float_sgd])[0] if float_sgd else None
    t, c = run.loaded.config.training, run.loaded.config.controller
    precision = ("bench (nominal pulse)" if c.update_range is None
                 else f"fixed range {c.update_range:g}")
    lines = [
        f"Test accuracy, {t.model} (width {t.width}) on {t.dataset}, {t.epochs} epochs, "
        f"seeds {sorted({r.seed for r in results})}; lr {c.lr:g}, precision {precision}, "
        f"weight range {c.weight_range:g}. Rows with samples > 0: Bayesian "
        "model average over that many posterior samples; otherwise the final weights. "
        "T_eff: mean effective temperature of the device weights (device noise and the "
        "rounding of pulse counts); saturated: devices at a track end after the last step; "
        "res. bits: weight resolution, log2(window / one step). Accuracy: mean ± "
        "standard deviation over the runs (seeds); a single run has no spread to show.",
        "",
        "| method | bits | accuracy (%) | vs float SGD (pp) | NLL | ECE | pulses/weight "
        "| T_eff | saturated (%) | res. bits | samples | runs |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (scheme, bits), rs in sorted(groups.items(),
                                     key=lambda kv: (kv[0][1] is not None, kv[0][1] or 0,
                                                     kv[0][0])):
        acc, acc_sd = _mean_std([r.accuracy for r in rs])
        nll = statistics.fmean(r.nll for r in rs)
        ece = statistics.fmean(r.ece for r in rs)
        gap = f"{100 * (acc - reference):+.2f}" if reference is not None else "-"
        pulses = (f"{statistics.fmean(r.pulses_per_weight for r in rs):.0f}"
                  if rs[0].device_backed else "-")
        t_eff = (f"{statistics.fmean(r.effective_temperature_mean for r in rs):.3g}"
                 if rs[0].device_backed else "-")
        saturated = (f"{100 * statistics.fmean(r.saturated_fraction for r in rs):.1f}"
                     if rs[0].device_backed else "-")
        res_bits = (f"{statistics.fmean(r.precision['resolution_bits'] for r in rs):.1f}"
                    if rs[0].device_backed and rs[0].precision else "-")
        samples = statistics.fmean(r.samples for r in rs)
        lines.append(f"| {scheme} | {bits if bits is not None else '-'} | "
                     f"{_accuracy(acc, acc_sd, len(rs))} | {gap} | {nll:.4f} | {ece:.4f} | "
                     f"{pulses} | {t_eff} | {saturated} | {res_bits} | {samples:g} | "
                     f"{len(rs)} |")
    lines += [f"- failed: {r.label}: {r.failed}" for r in failed]
    table_md = "\n".join(lines) + "\n"
    atomic_write_text(folder / "sweep.md", table_md)
    by_bits = [(k, v) for k, v in groups.items() if k[1] is not None]
    # the plot follows the scheme run at the most precisions (ablation rows stay in the table)
    main = max((k[0] for k, _ in by_bits), default=None,
               key=lambda name: sum(k[0] == name for k, _ in by_bits))
    device = sorted(((k[1] or 0, v) for k, v in by_bits if k[0] == main),
                    key=lambda kv: kv[0])
    if device:
        refs = {}
        for name in ("float_sgd", "float_sgld"):
            if (name, None) in groups:
                refs[name.replace("_", " ")] = _mean_std(
                    [r.accuracy for r in groups[(name, None)]])[0]
        stats = [_mean_std([r.accuracy for r in rs]) for _, rs in device]
        plots.accuracy_vs_bits([bits for bits, _ in device], [s[0] for s in stats],
                               [s[1] for s in stats], refs, folder / "accuracy_vs_bits.png",
                               title=f"{t.model} on {t.dataset}")
    return table_md
