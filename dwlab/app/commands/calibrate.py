"""``dwlab calibrate RECORD_DIR... -o lab_configs/calibrations/NAME.yaml [--write-anyway]``.

Fits the continuous twin to protocol records (``dwlab.sim.calibration``), then checks the
fit: a twin built from the fitted parameters re-runs every recorded condition of the same
``switching_statistics`` protocol, and its steps are compared with the held-out
measurements, condition by condition (mean, variance, device-to-device spread and shape
of the steps, with devices as the independent units). The verdict is PASS, MISFIT (naming
the conditions and the physics that disagree) or INSUFFICIENT DATA.

The calibration file is written only on PASS, unless ``--write-anyway`` (the verdict is
recorded in the file either way); the command exits 1 otherwise. On MISFIT a jump-table
twin (steps replayed from the records, ``dwlab.sim.jump_table``) is built from the same
records, checked the same way, and offered in the report. The report (verdict first,
parameter table, per-condition tests, overlay and residual plots) goes to its own folder.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from pathlib import Path

from dwlab.app.commands import ExitCode
from dwlab.app.logs import show_progress
from dwlab.core.device import DeviceArray
from dwlab.core.types import PulseLimits, PulseShape
from dwlab.protocols.base import run_protocol
from dwlab.protocols.pulsing import SwitchingStatistics
from dwlab.records import new_run_dir, read_table
from dwlab.sim.calibration import (
    FITTED,
    UNITS,
    Calibration,
    ConditionKey,
    Steps,
    calibrate,
    load_records,
    steps_by_condition,
)
from dwlab.sim.calibration.goodness import compare_steps
from dwlab.sim.calibration.verdict import MISFIT, Verdict, decide
from dwlab.sim.calibration_file import load_calibration_params, write_calibration
from dwlab.sim.calibration_report import JumpTableCheck, write_report
from dwlab.sim.jump_table import JumpTableArray, build_jump_table
from dwlab.sim.twin import PRESETS, TwinArray


@dataclass
class CalibrationRun:
    calibration: Calibration
    output: Path | None
    """The calibration file written, or None (a verdict other than PASS, not forced)."""
    report: Path
    verdict: Verdict
    simulated: dict[ConditionKey, Steps]
    jump_table: JumpTableCheck | None = None
    """On MISFIT: the jump-table twin built from the records and its own check."""

    @property
    def passed(self) -> bool:
        return self.verdict.passed


def simulate_switching(array: DeviceArray, cal: Calibration, folder: Path, seed: int,
                       heldout_every: int, progress: bool) -> dict[ConditionKey, Steps]:
    """Re-run the recorded switching protocol on ``array``; keep the repeats that were held
    out of the fit, so every device contributes as many steps as it did when measured."""
    protocol = SwitchingStatistics.from_data({**cal.switching_params, "devices": None})
    result = run_protocol(protocol, array, folder, seed=seed, progress=progress, plots=False)
    steps = steps_by_condition(read_table(result.folder / "steps.csv"))
    return {k: v.select(v.repeat % heldout_every == heldout_every - 1) if heldout_every > 1
            else v for k, v in steps.items()}


def run_calibration(
    record_dirs: list[str | Path], output: str | Path, *,
    report_parent: str | Path = "runs/calibrations",
    sim_devices: int = 256, alpha: float = 0.05, heldout_every: int = 4,
    n_bootstrap: int = 300, seed: int = 0, progress: bool = True,
    write_anyway: bool = False, figures: bool = True,
) -> CalibrationRun:
    output = Path(output)
    base = PRESETS["continuous_dw"]
    cal = calibrate(load_records(record_dirs), base, heldout_every=heldout_every,
                    n_bootstrap=n_bootstrap, seed=seed)
    report = new_run_dir(report_parent, output.stem)
    gof: dict = {"test": "held-out steps per condition: mean, variance, spread, shape",
                 "alpha": alpha, "heldout_every": heldout_every, "report": str(report)}
    draft = report / "calibration.yaml"
    write_calibration(draft, cal.values(), cal.stderr, UNITS, cal.reference, cal.sources,
                      {**gof, "verdict": None, "passed": None})

    # A twin built from the file just written re-runs every recorded condition.
    params = load_calibration_params(draft, base)
    limits = measured_limits(cal)
    twin = TwinArray((sim_devices,), params, seed=seed + 7919, limits=limits,
                     nominal_pulse=PulseShape(*cal.reference), name="calibrated-twin")
    simulated = simulate_switching(twin, cal, report / "simulated_switching", seed + 7919,
                                   heldout_every, progress)
    verdict = decide(cal, compare_steps(cal.heldout, simulated, alpha), alpha)
    gof.update(verdict.to_data(), passed=verdict.passed, simulated_devices=sim_devices)

    jump = None
    if verdict.verdict == MISFIT:
        table = build_jump_table(cal)
        path = table.save(report / "jump_table.npz")
        jt = JumpTableArray((sim_devices,), table, seed=seed + 104729, limits=limits,
                            nominal_pulse=table.nearest_shape(PulseShape(*cal.reference)))
        jsim = simulate_switching(jt, cal, report / "simulated_switching_jump_table",
                                  seed + 104729, heldout_every, progress)
        # copies of one source device are not independent: the tests count sources
        jchecks = compare_steps(cal.heldout, jsim, alpha, sources=jt.source.cpu().numpy())
        jverdict = decide(cal, jchecks, alpha, fit=False)
        jump = JumpTableCheck(path, jverdict, jsim)
        gof["jump_table"] = {"file": str(path), "verdict": jverdict.verdict}
    write_calibration(draft, cal.values(), cal.stderr, UNITS, cal.reference, cal.sources, gof)
    written = None
    if verdict.passed or write_anyway:
        write_calibration(output, cal.values(), cal.stderr, UNITS, cal.reference, cal.sources,
                          gof)
        written = output
    write_report(report, cal, verdict, simulated, alpha, jump, figures=figures)
    return CalibrationRun(cal, written, report, verdict, simulated, jump)


def measured_limits(cal: Calibration) -> PulseLimits:
    """The limits recorded with the measurement (the simulation must obey the same)."""
    lim = cal.limits
    return PulseLimits(**{f.name: lim[f.name] for f in dataclasses.fields(PulseLimits)})


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("calibrate", help="fit the twin to protocol records",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("records", nargs="+", help="protocol record folders (script runs or steps)")
    p.add_argument("-o", "--output", required=True, help="calibration YAML to write")
    p.add_argument("--write-anyway", action="store_true",
                   help="write the calibration file (and exit 0) even when the verdict is "
                        "MISFIT or INSUFFICIENT DATA; the verdict is recorded in the file")
    p.add_argument("--report-dir", default="runs/calibrations",
                   help="parent folder of the fit report")
    p.add_argument("--sim-devices", type=int, default=256,
                   help="devices of the simulated twin used for the goodness of fit")
    p.add_argument("--alpha", type=float, default=0.05,
                   help="family-wise significance of the held-out tests")
    p.add_argument("--heldout-every", type=int, default=4,
                   help="hold out every N-th repeat from the fit")
    p.add_argument("--bootstrap", type=int, default=300, help="bootstrap resamples")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    res = run_calibration(args.records, args.output, report_parent=args.report_dir,
                          sim_devices=args.sim_devices, alpha=args.alpha,
                          heldout_every=args.heldout_every, n_bootstrap=args.bootstrap,
                          seed=args.seed, write_anyway=args.write_anyway,
                          progress=show_progress(args))
    v = res.verdict
    print(f"verdict: {v.verdict}")
    for reason in v.reasons:
        print(f"  - {reason}")
    print(f"{'parameter':20s} {'value':>12s} {'stderr':>10s}  unit")
    for name in FITTED:
        print(f"{name:20s} {getattr(res.calibration.params, name):12.5g} "
              f"{res.calibration.stderr[name]:10.2g}  {UNITS[name]}")
    if res.jump_table is not None:
        print(f"jump-table twin from these records: {res.jump_table.verdict.verdict} on the "
              f"held-out steps; table: {res.jump_table.path}")
    if res.output is not None:
        print(f"calibration: {res.output}")
    else:
        print(f"calibration: not written ({v.verdict}; --write-anyway writes it)")
    print(f"report:      {res.report / 'report.md'}")
    return ExitCode.OK if res.output is not None else ExitCode.FAILED
