"""Calibration verdicts on records of known physics: false alarms and misfits.

    python benchmarks/calibration_verdicts.py [--twin-seeds 20] [--foreign-seeds 5]
        [--first-seed 0] [--models twin,heavy_tails,creep,pinning,telegraph] [--workers 2]
        [--keep DIR]

Per seed: an 8x8 array (the default continuous twin, or one of the foreign-physics models
of ``dwlab.sim.foreign``) runs the standard protocol script
(``lab_configs/protocols/standard.yaml``, figures skipped), then ``dwlab calibrate``'s
``run_calibration`` fits and checks it (256 simulated devices, alpha 0.05; on MISFIT the
jump-table twin built from the same records is checked on the same held-out steps).
Prints one line per run, then a table per model: verdict counts, conditions failed, the
physics named, and how often the jump-table twin passed. For the twin, the false-alarm
rate (runs not PASS) with its 95 % Clopper-Pearson interval; nominal is alpha = 0.05.
"""

from __future__ import annotations

import argparse
import tempfile
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

MODELS = ("twin", "heavy_tails", "creep", "pinning", "telegraph")
STANDARD = Path(__file__).resolve().parents[1] / "lab_configs" / "protocols" / "standard.yaml"


def one_run(model: str, seed: int, folder: str) -> dict:
    import torch
    from dwlab.protocols.script import load_script, run_script
    from dwlab.sim.calibration.goodness import compare_steps
    from dwlab.sim.foreign import ForeignArray
    from dwlab.sim.twin import TwinArray

    from dwlab.app.commands.calibrate import (
        measured_limits,
        run_calibration,
        simulate_switching,
    )

    def array_of(shape: tuple[int, ...], array_seed: int, **kwargs):
        return (TwinArray(shape, seed=array_seed, **kwargs) if model == "twin"
                else ForeignArray(shape, model, seed=array_seed, **kwargs))

    torch.set_num_threads(1)
    work = Path(folder) / f"{model}-{seed}"
    records = run_script(load_script(STANDARD), array_of((8, 8), seed), work / "records",
                         progress=False, plots=False)
    run = run_calibration([records.folder], work / "calibration.yaml",
                          report_parent=work / "reports", seed=seed, progress=False,
                          figures=False)
    cal = run.calibration
    truth = simulate_switching(array_of((256,), seed + 7919, limits=measured_limits(cal)), cal,
                               work / "true_model", seed + 7919, 4, progress=False)
    truth_failed = [c for c in compare_steps(cal.heldout, truth, 0.05) if not c.passed]
    v = run.verdict
    physics = sorted({p for c in v.checks for p in c.disagreements})
    return {"model": model, "seed": seed, "verdict": v.verdict,
            "failed": sum(not c.passed for c in v.checks), "conditions": len(v.checks),
            "physics": physics, "flags": len(v.flags),
            "jump": run.jump_table.verdict.verdict if run.jump_table else "-",
            "jump_failed": (sum(not c.passed for c in run.jump_table.verdict.checks)
                            if run.jump_table else 0),
            "truth_failed": len(truth_failed),
            "truth_labels": [f"{c.label} ({', '.join(c.failed)})" for c in truth_failed]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--twin-seeds", type=int, default=20)
    ap.add_argument("--foreign-seeds", type=int, default=5)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--first-seed", type=int, default=0,
                    help="seeds run from here (to split a sweep between machines or cores)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--keep", default=None, help="keep records and reports in this folder")
    args = ap.parse_args()
    models = args.models.split(",")
    # seed-major order, so a run cut short still covers every model
    jobs = [(m, args.first_seed + s) for s in range(max(args.twin_seeds, args.foreign_seeds))
            for m in models if s < (args.twin_seeds if m == "twin" else args.foreign_seeds)]
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or tmp
        with ProcessPoolExecutor(args.workers) as pool:
            futures = [pool.submit(one_run, m, s, folder) for m, s in jobs]
            results = []
            for f in futures:
                r = f.result()
                results.append(r)
                print(f"{r['model']:>12} seed {r['seed']:>2}: {r['verdict']:<17} "
                      f"{r['failed']:>2}/{r['conditions']} conditions failed, "
                      f"{r['flags']} fit flags; jump table {r['jump']} "
                      f"({r['jump_failed']} failed); true model {r['truth_failed']} failed "
                      f"{r['truth_labels']}; {'; '.join(r['physics'])}", flush=True)
    summarise(results, models)


def summarise(results: list[dict], models: list[str]) -> None:
    from scipy.stats import beta

    print()
    print(f"{'model':>12} {'runs':>4} {'PASS':>4} {'MISFIT':>6} {'INSUFF':>6} "
          f"{'failed cond. (min-max)':>22} {'jump PASS':>9} {'true model PASS':>15}  "
          "physics named (runs)")
    for m in models:
        rs = [r for r in results if r["model"] == m]
        if not rs:
            continue
        count = Counter(r["verdict"] for r in rs)
        failed = [r["failed"] for r in rs]
        named = Counter(p for r in rs for p in r["physics"])
        misfits = [r for r in rs if r["verdict"] == "MISFIT"]
        jump = sum(r["jump"] == "PASS" for r in misfits)
        truth = sum(r["truth_failed"] == 0 for r in rs)
        print(f"{m:>12} {len(rs):>4} {count['PASS']:>4} {count['MISFIT']:>6} "
              f"{count['INSUFFICIENT DATA']:>6} {min(failed):>12}-{max(failed):<2}/"
              f"{rs[0]['conditions']:<6} {jump:>4}/{len(misfits):<4} {truth:>10}/{len(rs):<4}  "
              + "; ".join(f"{p} ({n})" for p, n in named.most_common()))
    twin = [r for r in results if r["model"] == "twin"]
    if twin:
        k, n = sum(r["verdict"] != "PASS" for r in twin), len(twin)
        low = beta.ppf(0.025, k, n - k + 1) if k else 0.0
        high = beta.ppf(0.975, k + 1, n - k) if k < n else 1.0
        print(f"\nfalse-alarm rate on twin records: {k}/{n} = {k / n:.3f} "
              f"(95 % CI {low:.3f}-{high:.3f}); nominal alpha 0.05")


if __name__ == "__main__":
    main()
