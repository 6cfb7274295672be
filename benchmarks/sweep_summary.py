"""One sweep table over several sweep folders of the same config (seeds run as separate
sweeps, one per core): sweep.csv, sweep.md and accuracy_vs_bits.png written to ``--out``,
from the ``result.json`` of every finished run, with the summary of ``dwlab sweep``.

    python benchmarks/sweep_summary.py --out runs/both runs/seed0 runs/seed1
    python benchmarks/sweep_summary.py --part bench --out runs/both runs/p0 runs/p1

``--part`` names the subfolder of a ``benchmarks/precision_sweep.py`` folder (``bench`` or
``fixed_range``); a ``dwlab sweep`` folder has none.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from dwlab.app.commands.sweep import summarise
from dwlab.app.training.results import read_result
from dwlab.app.training.runs import open_run_folder


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("folders", type=Path, nargs="+", help="sweep folders (same config)")
    p.add_argument("--part", default="", help="subfolder of each (precision_sweep.py)")
    p.add_argument("--out", type=Path, required=True, help="where the table goes")
    args = p.parse_args(argv)
    folders = [f / args.part for f in args.folders]
    for folder in folders:
        if not (folder / "metadata.json").exists():
            p.error(f"{folder} is not a sweep folder (no metadata.json)")
    first = open_run_folder(folders[0])
    outcomes = [outcome for folder in folders for run in sorted(folder.iterdir())
                if run.is_dir() for outcome in [read_result(run)] if outcome is not None]
    args.out.mkdir(parents=True, exist_ok=True)
    print(summarise(dataclasses.replace(first, path=args.out), outcomes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
