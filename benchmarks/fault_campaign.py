"""The fault campaign, kept: every category of every part, in one table.

Each part is a script of its own (``campaign_pulses.py``, ``campaign_configs.py``,
``campaign_faults.py``, ``campaign_runs.py``) that generates its cases from a fixed seed
and counts, per category: cases tried; handled (the case worked, or ended in one clear
dwlab error with the safety claims intact); failed (a safety or record claim broken: a
pulse over a limit delivered, an output on or a crosspoint closed and not reported, a
delivered pulse not recorded, a record lost); tracebacks (an exception that is not a dwlab
error). Exits 1 when any case failed or ended in a traceback.

    .venv/bin/python benchmarks/fault_campaign.py [--quick]
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time

PARTS = ("campaign_pulses", "campaign_configs", "campaign_faults", "campaign_runs")
COLUMNS = ("tried", "handled", "failed", "tracebacks")


def print_tally(tallies: dict[str, dict[str, int]]) -> None:
    """One part's table (each part's script prints it when run alone)."""
    print(f"{'category':<20} " + " ".join(f"{c:>10}" for c in COLUMNS))
    for category, tally in tallies.items():
        print(f"{category:<20} " + " ".join(f"{tally.get(c, 0):>10}" for c in COLUMNS))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small sample of each part")
    args = parser.parse_args(argv)
    rows: list[tuple[str, str, dict[str, int], float]] = []
    failures: list[str] = []
    for name in PARTS:
        part = importlib.import_module(name)
        start = time.perf_counter()
        tallies = part.run(quick=args.quick)
        seconds = time.perf_counter() - start
        for category, tally in tallies.items():
            rows.append((name.removeprefix("campaign_"), category, tally, seconds))
        failures += [f"{name}: {line}" for line in part.FAILURES]
    print(f"{'part':<8} {'category':<20} " + " ".join(f"{c:>10}" for c in COLUMNS) + "  part s")
    for part_name, category, tally, seconds in rows:
        print(f"{part_name:<8} {category:<20} "
              + " ".join(f"{tally.get(c, 0):>10}" for c in COLUMNS) + f"  {seconds:6.1f}")
    totals = {c: sum(t.get(c, 0) for _, _, t, _ in rows) for c in COLUMNS}
    print(f"{'all':<8} {'':<20} " + " ".join(f"{totals[c]:>10}" for c in COLUMNS))
    for line in failures:
        print("FAILED", line)
    return 1 if totals["failed"] or totals["tracebacks"] else 0


if __name__ == "__main__":
    sys.exit(main())
