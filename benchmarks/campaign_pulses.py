"""Fault campaign, category "pulse safety": generated plans on a twin and on a hardware
array on the virtual lab.

Cases are the product of: where the counts come from (a tensor of every integer and float
dtype and bool, a NumPy array of each dtype NumPy has, nested Python lists of ints up to
2**70), a mutation of the counts (an allowed plan; one device over the limit by its sum, by
one count, by a sum that wraps in the dtype; the dtype's top and bottom; negative; NaN,
infinities, fractions, integral and huge floats; bools), a shape (the array's, others, push
and pull differing) and the backend. Values are drawn from a fixed seed.

Each case is judged by the claim of ``tests/pulse_safety_support.py``: a plan the array
must apply (integer counts, the array's shape, no device over the limit, judged in Python
integers) reaches it exactly; any other ends in a dwlab error that says what it refused,
with nothing moved (twin state, virtual-lab messages and delivery counters, outputs off and
crosspoints open). handled: the claim held; failed: it broke (a valid plan refused counts
too: refusing everything would be safe and useless); tracebacks: an error other than a
dwlab error.

    .venv/bin/python benchmarks/campaign_pulses.py [--quick]
"""

from __future__ import annotations

import argparse
import importlib
import math
import random
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

CATEGORY = "pulse safety"
SEED = 13
FAILURES: list[str] = []
"""One line per failed case of the last :func:`run`."""
TRACEBACKS: list[str] = []
"""One line per case of the last :func:`run` that ended in an error other than a dwlab one."""
OUTCOMES: Counter[str] = Counter()
"""What the handled cases of the last :func:`run` did: applied, or refused with which error."""

TESTS = Path(__file__).resolve().parents[1] / "tests"
INTEGER = [torch.uint8, torch.int8, torch.int16, torch.uint16, torch.int32, torch.uint32,
           torch.int64, torch.uint64]
FLOATING = [torch.float16, torch.bfloat16, torch.float32, torch.float64]
NUMPY = {torch.uint8: np.uint8, torch.int8: np.int8, torch.int16: np.int16,
         torch.uint16: np.uint16, torch.int32: np.int32, torch.uint32: np.uint32,
         torch.int64: np.int64, torch.uint64: np.uint64, torch.float16: np.float16,
         torch.float32: np.float32, torch.float64: np.float64, torch.bool: np.bool_}
SHAPES = {"right": ((3, 4), (3, 4)), "transposed": ((4, 3), (4, 3)), "flat": ((12,), (12,)),
          "extra dim": ((3, 4, 1), (3, 4, 1)), "push vs pull": ((3, 4), (4, 3)),
          "scalar": ((), ()), "empty": ((0,), (0,))}
PYTHON = "python list"
Values = tuple[list[Any], list[Any]]


def _support():
    if str(TESTS) not in sys.path:
        sys.path.insert(0, str(TESTS))
    return importlib.import_module("pulse_safety_support")


# -- mutations: (rng, low, high, limit) -> 12 push and 12 pull values, or None ---------------


def _at(device: int, push: Any, pull: Any, fill: Any = 0) -> Values:
    values = [fill] * 12, [fill] * 12
    values[0][device], values[1][device] = push, pull
    return values


def within(rng: random.Random, low: int, high: int, limit: int) -> Values | None:
    push = [rng.randint(0, min(limit, high)) for _ in range(12)]
    return push, [rng.randint(0, min(limit - p, high)) for p in push]


def over_by_sum(rng: random.Random, low: int, high: int, limit: int) -> Values | None:
    if 2 * min(limit, high) <= limit:
        return None  # the dtype cannot hold two counts that add up past the limit
    p = rng.randint(limit // 2 + 1, min(limit, high))
    return _at(rng.randrange(12), p, rng.randint(limit - p + 1, min(limit, high)))


def over_by_one_count(rng: random.Random, low: int, high: int, limit: int) -> Values | None:
    if high <= limit:
        return None
    return _at(rng.randrange(12), rng.randint(limit + 1, min(high, 2**70)), 0)


def wrapping_sum(rng: random.Random, low: int, high: int, limit: int) -> Values | None:
    """A sum that wraps in the dtype to a count within the limit (unsigned) or to a negative
    one (signed): both pass a check done in the dtype's own arithmetic."""
    if high > 2**64 or high <= limit:
        return None
    if low < 0:
        return _at(rng.randrange(12), high, rng.randint(1, high))
    total = high + 1 + rng.randint(0, limit)
    p = rng.randint(total - high, high)
    return _at(rng.randrange(12), p, total - p)


def top(rng: random.Random, low: int, high: int, limit: int) -> Values | None:
    return _at(rng.randrange(12), high, rng.choice([0, high]))


def negative(rng: random.Random, low: int, high: int, limit: int) -> Values | None:
    if low >= 0:
        return None
    deep = rng.randint(max(low, -(2**70)), -1)  # type: ignore[arg-type]
    return _at(rng.randrange(12), rng.choice([-1, low, deep]), 1)


def not_a_count(rng: random.Random, low: int, high: int, limit: int) -> Values | None:
    """Floats that are no count (or integral floats), for float sources only."""
    if low != -math.inf:
        return None
    value = rng.choice([math.nan, math.inf, -math.inf, 0.5, 1e30, -0.0, float(limit)])
    return _at(rng.randrange(12), value, rng.choice([0.0, value]), fill=0.0)


def true(rng: random.Random, low: int, high: int, limit: int) -> Values | None:
    if (low, high) != (0, 1):
        return None
    return [rng.random() < 0.5 for _ in range(12)], [False] * 12


MUTATIONS: list[Callable[[random.Random, int, int, int], Values | None]] = [
    within, over_by_sum, over_by_one_count, wrapping_sum, top, negative, not_a_count, true]


# -- sources and shapes ------------------------------------------------------------------


def _range(source: Any) -> tuple[float, float]:
    """The values a source holds: integer range, (-inf, inf) for floats, (0, 1) for bool."""
    if source == torch.bool:
        return 0, 1
    if source == PYTHON:
        return -(2**70), 2**70
    if source.is_floating_point:
        return -math.inf, math.inf
    info = torch.iinfo(source)
    return info.min, info.max


def _nest(flat: list[Any], shape: tuple[int, ...]) -> Any:
    """``flat`` as nested Python lists of ``shape`` (a scalar for ``()``)."""
    if not shape:
        return flat[0]
    step = math.prod(shape[1:])
    return [_nest(flat[i * step:(i + 1) * step], shape[1:]) for i in range(shape[0])]


def _build(source: Any, form: str, values: list[Any], shape: tuple[int, ...]) -> Any:
    flat = values[:math.prod(shape)] if shape else values[:1]
    if form == "list":
        return _nest(flat, shape)
    if form == "numpy":
        with np.errstate(over="ignore"):  # 2**70 as float16 is inf: one more case
            return np.array(flat, dtype=NUMPY[source]).reshape(shape)
    return torch.tensor(flat, dtype=source).reshape(shape)


def _sources() -> Iterator[tuple[Any, str]]:
    for dtype in [*INTEGER, *FLOATING, torch.bool]:
        yield dtype, "tensor"
        if dtype in NUMPY:
            yield dtype, "numpy"
    yield PYTHON, "list"


def cases(quick: bool, limit: int) -> Iterator[tuple[str, Any, str, Values, str]]:
    """(description, source, form, values, shape name), generated from ``SEED``."""
    rng = random.Random(SEED)
    variants = 1 if quick else 5
    for source, form in _sources():
        low, high = _range(source)
        for mutation in MUTATIONS:
            for _ in range(variants):
                values = mutation(rng, low, high, limit)  # type: ignore[arg-type]
                if values is None:
                    break
                shapes = list(SHAPES) if not quick else ["right", rng.choice(list(SHAPES))]
                for shape in shapes:
                    name = f"{form} {source} {mutation.__name__} {shape}"
                    yield name, source, form, values, shape


def _expected(support, values: Values, source: Any, shape: str):
    """The int64 counts the array must deliver, or None when it must refuse the plan."""
    integral = source == PYTHON or source in INTEGER
    if shape != "right" or not integral:
        return None
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in values[0] + values[1]):
        return None
    pairs = list(zip(*values, strict=True))
    if not all(p >= 0 and q >= 0 and p + q <= support.LIMIT for p, q in pairs):
        return None
    return tuple(torch.tensor(column).reshape(support.SHAPE) for column in values)


def run(quick: bool = False) -> dict[str, dict[str, int]]:
    """Run every case on both backends; category -> tried/handled/failed/tracebacks."""
    support = _support()
    FAILURES.clear()
    TRACEBACKS.clear()
    OUTCOMES.clear()
    counts = {"tried": 0, "handled": 0, "failed": 0, "tracebacks": 0}
    with tempfile.TemporaryDirectory() as folder:
        backends = {"twin": support.Twin(), "virtual lab": support.Lab(Path(folder))}
        try:
            for name, source, form, values, shape in cases(quick, support.LIMIT):
                push_shape, pull_shape = SHAPES[shape]
                push = _build(source, form, values[0], push_shape)
                pull = _build(source, form, values[1], pull_shape)
                expected = _expected(support, values, source, shape)
                for where, backend in backends.items():
                    counts["tried"] += 1
                    try:
                        outcome = support.attempt(backend, push, pull, expected)
                    except support.Violation as exc:
                        counts["failed"] += 1
                        FAILURES.append(f"{where}: {name}: {exc}")
                    except Exception as exc:
                        counts["tracebacks"] += 1
                        TRACEBACKS.append(f"{where}: {name}: "
                                          f"{traceback.format_exception_only(exc)[-1].strip()}")
                    else:
                        counts["handled"] += 1
                        OUTCOMES[f"{where}: {outcome}"] += 1
        finally:
            for backend in backends.values():
                backend.close()
    return {CATEGORY: counts}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer variants and shapes")
    args = parser.parse_args()
    started = time.perf_counter()
    table = run(quick=args.quick)
    from fault_campaign import print_tally

    print_tally(table)
    print("handled: " + ", ".join(f"{k} {n}" for k, n in sorted(OUTCOMES.items())))
    for line in FAILURES + TRACEBACKS:
        print(f"  {line}")
    print(f"({time.perf_counter() - started:.1f} s, seed {SEED})")
    return 1 if FAILURES or TRACEBACKS else 0


if __name__ == "__main__":
    sys.exit(main())
