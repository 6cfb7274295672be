"""Fault campaign, part "faults": instrument faults, safe state and lost records, measured
on the virtual lab (issue 13, items 2, 3 and 9).

Cases are generated from a clean run's conversation (``tests/fault_matrix_support.py``):

- instrument faults: each fault kind (timeout, drop, error-queue entry, garble, server
  killed) on each instrument (pulser, meter, switch matrix) at each of its messages of an
  apply (with read-back) or a read and the close after it; timeouts, drops and garbles
  also persistent;
- safe state: faults on the safe-state commands themselves (once, twice, for good) and a
  Ctrl-C at each safe-state call;
- lost records: a Ctrl-C before and after each call that delivers or confirms pulses, and
  floods (a 20 MB line, long lines, more errors than the queue holds, more lines than the
  log keeps) before an apply.

A case is *handled* when it ended in success or in dwlab errors with every claim kept
(outputs off and crosspoints open, or named as unconfirmed; every delivered pulse in the
event log and the receipt; bounded texts, logs and queues), *failed* when a claim broke,
*traceback* when it ended in another exception.

    .venv/bin/python benchmarks/campaign_faults.py [--quick]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import fault_matrix_support as matrix  # noqa: E402

CATEGORIES: dict[str, Callable[[], list[matrix.Case]]] = {
    "instrument faults": lambda: [*matrix.fault_cases("apply"), *matrix.fault_cases("read")],
    "safe state": lambda: [*matrix.safe_state_cases("apply"),
                           *matrix.safe_state_cases("read")],
    "lost records": lambda: list(matrix.record_cases()),
}
SEED = 13
QUICK_CASES = 10
"""Cases per category with ``--quick`` (drawn with ``SEED``)."""
WORKERS = 8
"""Cases run at once: they mostly wait for instrument timeouts."""

FAILURES: list[str] = []
"""One line per failed case (and per traceback), filled by :func:`run`."""


def run(quick: bool = False) -> dict[str, dict[str, int]]:
    """Every category's cases run; category -> tried / handled / failed / tracebacks."""
    FAILURES.clear()
    rng = random.Random(SEED)
    table: dict[str, dict[str, int]] = {}
    with ThreadPoolExecutor(WORKERS) as pool:
        for name, generate in CATEGORIES.items():
            cases = generate()
            if quick:
                cases = rng.sample(cases, min(QUICK_CASES, len(cases)))
            outcomes = list(pool.map(matrix.outcome_of, cases))
            counts = {status: sum(o.status == status for o in outcomes)
                      for status in ("handled", "failed", "traceback")}
            table[name] = {"tried": len(cases), "handled": counts["handled"],
                           "failed": counts["failed"], "tracebacks": counts["traceback"]}
            FAILURES.extend(f"{name}: {o.case}: {'; '.join(o.violations or o.errors)}"
                            for o in outcomes if o.status != "handled")
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"{QUICK_CASES} cases per category (seed {SEED})")
    args = parser.parse_args()
    start = time.perf_counter()
    table = run(args.quick)
    from fault_campaign import print_tally

    print_tally(table)
    print(f"({time.perf_counter() - start:.0f} s)")
    for line in FAILURES:
        print("FAILED", line)


if __name__ == "__main__":
    main()
