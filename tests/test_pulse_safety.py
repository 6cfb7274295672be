"""Pulse safety, property-based: every plan either applies within the limits or is refused
before anything moves, on a twin and on a hardware array on the virtual lab.

Plans of every integer and float dtype (and bool), with the dtypes' extremes, NaN, infinities
and mismatched shapes; the claim and the backends are in ``pulse_safety_support`` (the
campaign ``benchmarks/campaign_pulses.py`` checks the same claim). Bounded
(``max_examples``, derandomized) to stay fast in CI.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from pulse_safety_support import (
    INTEGER_DTYPES,
    LIMIT,
    NOMINAL,
    SHAPE,
    Lab,
    Twin,
    allowed,
    attempt,
)

from dwlab.core.errors import PlanError, PulseLimitError
from dwlab.core.types import PulseLimits, PulsePlan

FLOAT_DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]
OTHER_SHAPES = [(4, 3), (12,), (3, 4, 1), (2, 4), ()]
BOUNDED = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                   suppress_health_check=[HealthCheck.too_slow])


def _extremes(dtype: torch.dtype) -> list[int]:
    info = torch.iinfo(dtype)
    near_limit = [0, 1, LIMIT // 2 + 1, LIMIT - 1, LIMIT, LIMIT + 1, -1]
    wide = [2**31 - 1, 2**32 - 1, 2**62, 2**63 - 1, 2**64 - 1, info.min, info.max]
    return sorted({v for v in near_limit + wide if info.min <= v <= info.max})


@st.composite
def counts(draw: st.DrawFn, shape: tuple[int, ...], *, wild: bool) -> torch.Tensor:
    """A count tensor of ``shape``. Tame: an integer dtype, non-negative values near the
    limit or at the dtype's top (sums that wrap). Wild: any dtype and value (negative, NaN,
    infinities, fractions, huge floats, bools)."""
    dtypes = [*INTEGER_DTYPES, *FLOAT_DTYPES, torch.bool] if wild else INTEGER_DTYPES
    dtype = draw(st.sampled_from(dtypes))
    if dtype == torch.bool:
        values: st.SearchStrategy = st.booleans()
    elif dtype.is_floating_point:
        values = st.one_of(st.sampled_from([math.nan, math.inf, -math.inf, -1.0, 0.5, 1e30]),
                           st.integers(0, 2 * LIMIT).map(float))
    else:
        info = torch.iinfo(dtype)
        low = info.min if wild else 0
        values = st.one_of(st.sampled_from([v for v in _extremes(dtype) if v >= low]),
                           st.integers(0, min(LIMIT, info.max)), st.integers(low, info.max))
    flat = draw(st.lists(values, min_size=math.prod(shape), max_size=math.prod(shape)))
    return torch.tensor(flat, dtype=dtype).reshape(shape)


@st.composite
def plans(draw: st.DrawFn) -> tuple[torch.Tensor, torch.Tensor]:
    """(push, pull), a third each: allowed; tame counts (over the limit, or wrapping);
    wild counts, mostly of the array's shape, sometimes not."""
    mode = draw(st.sampled_from(["allowed", "tame", "wild"]))
    if mode == "allowed":  # each device's push + pull within the limit
        dtypes = draw(st.tuples(*[st.sampled_from(INTEGER_DTYPES)] * 2))
        most = min([LIMIT] + [torch.iinfo(dtype).max for dtype in dtypes])
        push = draw(st.lists(st.integers(0, most), min_size=12, max_size=12))
        pull = [draw(st.integers(0, min(most, LIMIT - n))) for n in push]
        return tuple(torch.tensor(counts, dtype=dtype).reshape(SHAPE)
                     for counts, dtype in zip((push, pull), dtypes, strict=True))
    if mode == "tame":
        return draw(counts(SHAPE, wild=False)), draw(counts(SHAPE, wild=False))
    shapes = st.one_of(st.just(SHAPE), st.just(SHAPE), st.sampled_from(OTHER_SHAPES))
    return draw(counts(draw(shapes), wild=True)), draw(counts(draw(shapes), wild=True))


def check(backend: Twin | Lab, push: torch.Tensor, pull: torch.Tensor) -> None:
    event(attempt(backend, push, pull, allowed(push, pull)))


def _one_device(dtype: torch.dtype, n_push: int, n_pull: int):
    """Counts for device (1, 2) only (built from Python lists: uint64 takes 2**64 - 1)."""
    return tuple(torch.tensor([0] * 6 + [n] + [0] * 5, dtype=dtype).reshape(SHAPE)
                 for n in (n_push, n_pull))


ISSUE_CASES = [(torch.uint8, 200, 200), (torch.uint8, 255, 255), (torch.int64, 2**62, 2**62),
               (torch.int64, 2**63 - 1, 2), (torch.int32, 2**31 - 1, 1)]
"""The issue's wrap-arounds (a sum that wraps to a small or negative number), and kin."""


def _with_issue_cases(test):
    for dtype, n_push, n_pull in [*ISSUE_CASES, (torch.uint64, 2**64 - 1, 1)]:
        test = example(plan=_one_device(dtype, n_push, n_pull))(test)
    return test


@pytest.fixture(scope="module")
def twin():
    backend = Twin()
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    backend = Lab(tmp_path_factory.mktemp("pulse_safety"))
    yield backend
    backend.close()


@BOUNDED
@_with_issue_cases
@given(plan=plans())
def test_every_plan_applies_within_the_limit_or_leaves_the_twin_untouched(twin, plan):
    check(twin, *plan)


@settings(BOUNDED, max_examples=80)
@_with_issue_cases
@given(plan=plans())
def test_no_plan_over_the_limit_reaches_the_virtual_lab(lab, plan):
    check(lab, *plan)


@pytest.mark.parametrize("period", [math.nan, 0.0, 1e-8])
def test_a_pulse_period_that_breaks_the_duty_cycle_is_refused_before_any_message(lab, period):
    """The lab array allows a duty cycle of 0.5: a 1e-8 s pulse needs a period of at least
    2e-8 s. A NaN or zero period must not pass as no duty cycle at all."""
    kept = lab.array.pulse_period_seconds
    lab.array.pulse_period_seconds = period
    try:
        small = torch.full(SHAPE, 2), torch.full(SHAPE, 1)
        assert attempt(lab, *small, None) == "refused: PulseLimitError"
    finally:
        lab.array.pulse_period_seconds = kept


@pytest.mark.parametrize("dtype, n_push, n_pull", ISSUE_CASES)
def test_the_refusal_names_device_counts_and_limit(dtype, n_push, n_pull):
    limits = PulseLimits(5.0, 1e-9, 1e-6, LIMIT)
    plan = PulsePlan(*_one_device(dtype, n_push, n_pull), NOMINAL, NOMINAL)
    with pytest.raises(PulseLimitError) as caught:
        plan.check_against(SHAPE, limits)
    assert str(caught.value) == (f"plan sends {n_push} push + {n_pull} pull = "
                                 f"{n_push + n_pull} pulses to device (1, 2); the limit is "
                                 f"{LIMIT} per apply")


def test_a_plan_edited_in_place_after_it_was_built_is_checked_as_it_is_now():
    limits = PulseLimits(5.0, 1e-9, 1e-6, LIMIT)
    plan = PulsePlan(*_one_device(torch.int64, 1, 1), NOMINAL, NOMINAL)
    plan.push[0, 0] = 2**63 - 1
    plan.pull[0, 0] = 2**63 - 1  # their int64 sum wraps to -2
    with pytest.raises(PulseLimitError, match=r"to device \(0, 0\); the limit is 255"):
        plan.check_against(SHAPE, limits)
    plan.push[0, 0] = -3
    with pytest.raises(PlanError, match=r"push count -3 at device \(0, 0\) is negative"):
        plan.check_against(SHAPE, limits)


def test_plans_split_from_one_set_of_counts_are_checked_as_a_whole():
    push = torch.arange(12).view(2, 6)
    pull = torch.ones(2, 6, dtype=torch.int32)
    parts = [(0, 2, (2, 2), NOMINAL), (2, 6, (2, 2, 2), NOMINAL)]
    first, second = PulsePlan.split(push, pull, parts)
    assert first.push.tolist() == [[0, 1], [6, 7]] and first.pull.dtype == torch.int64
    assert second.push.shape == (2, 2, 2) and second.push[1, 1, 1] == 11
    assert (first.push_shape, second.pull_shape) == (NOMINAL, NOMINAL)
    push[1, 5] = -4  # in the second part: the whole is refused
    with pytest.raises(PlanError, match=r"push count -4 at device \(1, 5\) is negative"):
        PulsePlan.split(push, pull, parts)
    with pytest.raises(PlanError, match="must be a PulseShape"):
        PulsePlan.split(push.abs(), pull, [(0, 6, (2, 6), "1 ns")])


@pytest.mark.parametrize("counts, message", [
    ([2**64], "not an array of integers"),
    (10**30, "not an array of integers"),
    ([1, "a"], "not an array of integers"),
    (np.array([3, 2**64 - 1], dtype=np.uint64),
     "push count 18446744073709551615 at device 1 exceeds the largest possible count"),
    (np.array([0.0, 2.0]), "must be integers, got dtype torch.float64"),
    (torch.tensor([1, 2]).to_sparse(), "must be a dense tensor"),
])
def test_counts_that_cannot_be_held_exactly_are_refused_with_what_and_where(counts, message):
    with pytest.raises(PlanError, match=message):
        PulsePlan.uniform(counts, counts, NOMINAL)


@pytest.mark.parametrize("limit", [0, 2**63, 2.5, math.nan, "10"])
def test_a_pulse_limit_must_be_a_count_a_plan_can_be_compared_with(limit):
    with pytest.raises(ValueError, match="max_pulses_per_device"):
        PulseLimits(5.0, 1e-9, 1e-6, limit)
