"""``dwlab calibrate RECORD_DIR... -o lab_configs/calibrations/NAME.yaml``.

Fits the continuous twin to protocol records (``dwlab.sim.calibration``), writes the
calibration file, then checks it: a twin built from that file runs the same
``switching_statistics`` protocol, and its step distributions are compared with the
held-out measurements (two-sample KS, Bonferroni-corrected). The fit report (parameter
table, goodness of fit, residual and overlay plots) goes to its own folder.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from pathlib import Path

from dwlab.app.commands import ExitCode
from dwlab.app.logs import show_progress
from dwlab.core.types import PulseLimits, PulseShape
from dwlab.protocols.base import run_protocol
from dwlab.protocols.pulsing import SwitchingStatistics
from dwlab.records import new_run_dir, read_table
from dwlab.sim.calibration import (
    FITTED,
    UNITS,
    Calibration,
    KSResult,
    calibrate,
    ks_compare,
    load_records,
    steps_by_condition,
)
from dwlab.sim.calibration_file import load_calibration_params, write_calibration
from dwlab.sim.calibration_report import write_report
from dwlab.sim.twin import PRESETS, TwinArray


@dataclass
class CalibrationRun:
    calibration: Calibration
    output: Path
    report: Path
    ks: list[KSResult]
    passed: bool


def run_calibration(
    record_dirs: list[str | Path], output: str | Path, *,
    report_parent: str | Path = "runs/calibrations",
    sim_devices: int = 256, alpha: float = 0.05, heldout_every: int = 4,
    n_bootstrap: int = 300, seed: int = 0, progress: bool = True,
) -> CalibrationRun:
    output = Path(output)
    base = PRESETS["continuous_dw"]
    cal = calibrate(load_records(record_dirs), base, heldout_every=heldout_every,
                    n_bootstrap=n_bootstrap, seed=seed)
    report = new_run_dir(report_parent, output.stem)
    gof: dict = {"test": "ks_2samp on held-out steps per condition", "alpha": alpha,
                 "heldout_every": heldout_every, "report": str(report)}
    write_calibration(output, cal.values(), cal.stderr, UNITS, cal.reference, cal.sources,
                      {**gof, "passed": None})

    # A twin built from the file just written measures itself with the same protocol.
    params = load_calibration_params(output, base)
    measured_params = cal.switching_params
    limits = measured_limits(cal)
    twin = TwinArray((sim_devices,), params, seed=seed + 7919, limits=limits,
                     nominal_pulse=PulseShape(*cal.reference), name="calibrated-twin")
    protocol = SwitchingStatistics.from_data({**measured_params, "devices": None})
    result = run_protocol(protocol, twin, report / "simulated_switching", seed=seed + 7919,
                          progress=progress)
    simulated = steps_by_condition(read_table(result.folder / "steps.csv"))
    ks = ks_compare(cal.heldout, simulated)
    passed = bool(ks) and all(r.p_value >= alpha / len(ks) for r in ks)
    gof.update(passed=passed, conditions=len(ks),
               min_p_value=min((r.p_value for r in ks), default=None),
               simulated_devices=sim_devices)
    write_calibration(output, cal.values(), cal.stderr, UNITS, cal.reference, cal.sources, gof)
    write_report(report, cal, ks, simulated, alpha, passed)
    return CalibrationRun(cal, output, report, ks, passed)


def measured_limits(cal: Calibration) -> PulseLimits:
    """The limits recorded with the measurement (the simulation must obey the same)."""
    lim = cal.limits
    return PulseLimits(**{f.name: lim[f.name] for f in dataclasses.fields(PulseLimits)})


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("calibrate", help="fit the twin to protocol records",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("records", nargs="+", help="protocol record folders (script runs or steps)")
    p.add_argument("-o", "--output", required=True, help="calibration YAML to write")
    p.add_argument("--report-dir", default="runs/calibrations",
                   help="parent folder of the fit report")
    p.add_argument("--sim-devices", type=int, default=256,
                   help="devices of the simulated twin used for the goodness of fit")
    p.add_argument("--alpha", type=float, default=0.05, help="family-wise KS significance")
    p.add_argument("--heldout-every", type=int, default=4,
                   help="hold out every N-th repeat from the fit")
    p.add_argument("--bootstrap", type=int, default=300, help="bootstrap resamples")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    res = run_calibration(args.records, args.output, report_parent=args.report_dir,
                          sim_devices=args.sim_devices, alpha=args.alpha,
                          heldout_every=args.heldout_every, n_bootstrap=args.bootstrap,
                          seed=args.seed, progress=show_progress(args))
    print(f"{'parameter':20s} {'value':>12s} {'stderr':>10s}  unit")
    for name in FITTED:
        print(f"{name:20s} {getattr(res.calibration.params, name):12.5g} "
              f"{res.calibration.stderr[name]:10.2g}  {UNITS[name]}")
    worst = min(r.p_value for r in res.ks) if res.ks else float("nan")
    print(f"held-out KS over {len(res.ks)} conditions: smallest p = {worst:.3g} -> "
          f"{'PASS' if res.passed else 'FAIL'}")
    print(f"calibration: {res.output}")
    print(f"report:      {res.report}")
    return ExitCode.OK if res.passed else ExitCode.FAILED
