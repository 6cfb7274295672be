"""Pulse safety, property-based: every plan either applies within the limits or is refused
before anything moves, on a twin and on a hardware array on the virtual lab.

Plans of every integer and float dtype (and bool), with the dtypes' extremes, NaN, infinities
and mismatched shapes. A plan an array must apply ("allowed": integer counts, the array's
shape, no device over the limit, judged in Python integers) reaches the twin's state or the
virtual lab's delivery counters exactly; any other plan ends in a dwlab error with nothing
moved: twin state and random stream unchanged, no message to any instrument, delivery
counters unchanged. Bounded (``max_examples``, derandomized) to stay fast in CI.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from dwlab.sim import physics
from dwlab.sim.twin import TwinArray
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from test_virtual_lab_support import lab_config, open_lab_array

from dwlab.core.errors import DwlabError, PlanError, PulseLimitError
from dwlab.core.types import PulseLimits, PulsePlan, PulseShape

LIMIT = 255
SHAPE = (3, 4)
NOMINAL = PulseShape(1.0, 1e-8)
INTEGER_DTYPES = [torch.uint8, torch.int8, torch.int16, torch.uint16, torch.int32,
                  torch.uint32, torch.int64, torch.uint64]
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


def allowed(push: torch.Tensor, pull: torch.Tensor) -> bool:
    """Whether an array must apply this plan, judged in Python integers."""
    if any(t.dtype not in INTEGER_DTYPES or tuple(t.shape) != SHAPE for t in (push, pull)):
        return False
    pairs = zip(push.reshape(-1).tolist(), pull.reshape(-1).tolist(), strict=True)
    return all(p >= 0 and q >= 0 and p + q <= LIMIT for p, q in pairs)


class Twin:
    """A twin with the test's limit; what moved is its state, stream and pulse count, and
    any plan over the limit that reached its physics (kept aside by a fence, not walked:
    2**62 pulses would only exhaust memory)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.array = TwinArray(SHAPE, limits=PulseLimits(5.0, 1e-9, 1e-6, LIMIT))
        self.over_limit: list[int] = []
        walk = physics.apply_pulses_fast

        def fenced(x, push, pull, *args, **kwargs):
            if x is self.array.x:
                most = max(p + q for p, q in zip(push.reshape(-1).tolist(),
                                                 pull.reshape(-1).tolist(), strict=True))
                if most > LIMIT:
                    self.over_limit.append(most)
                    return x, torch.zeros((), dtype=torch.bool)
            return walk(x, push, pull, *args, **kwargs)

        monkeypatch.setattr(physics, "apply_pulses_fast", fenced)

    def state(self) -> tuple:
        a = self.array
        return a.x.clone(), a.generator.get_state(), a.pulses_applied, len(self.over_limit)

    def unchanged(self, before: tuple) -> bool:
        x, stream, pulses, over = self.state()
        return (torch.equal(x, before[0]) and torch.equal(stream, before[1])
                and (pulses, over) == before[2:])

    def check_delivered(self, before: tuple, push: torch.Tensor, pull: torch.Tensor) -> None:
        """The twin counts the pulses that reached it (in total, not per device)."""
        assert self.over_limit[before[3]:] == [], f"over the limit: {self.over_limit}"
        assert self.array.pulses_applied - before[2] == int(push.sum()) + int(pull.sum())


class Lab:
    """A hardware array on the virtual lab; what moved is the lab's delivery counters, its
    message count, and any burst over the limit (kept aside, not fired pulse by pulse)."""

    def __init__(self, folder) -> None:
        self.lab, self.array = open_lab_array(
            lab_config(folder, shape=SHAPE, limits={"max_pulses_per_device": LIMIT}))
        self.over_limit: list = []
        deliver = self.lab.deliver

        def guarded(bursts):
            big = [b for b in bursts if b.pulses > LIMIT]
            if big:  # already a failure; expanding 2**63 pulses would only hang the test
                self.over_limit.extend(big)
                return
            deliver(bursts)

        self.lab.deliver = guarded  # type: ignore[method-assign]

    def state(self) -> tuple:
        lab = self.lab
        return (lab.delivered_push.clone(), lab.delivered_pull.clone(),
                sum(lab.message_counts().values()), len(self.over_limit))

    def unchanged(self, before: tuple) -> bool:
        push, pull, messages, over = self.state()
        return (torch.equal(push, before[0]) and torch.equal(pull, before[1])
                and messages == before[2] and over == before[3] and self.lab.is_safe())

    def check_delivered(self, before: tuple, push: torch.Tensor, pull: torch.Tensor) -> None:
        """The lab's counters grew by exactly the plan, device by device."""
        assert self.over_limit[before[3]:] == [], f"bursts over the limit: {self.over_limit}"
        assert self.lab.is_safe()
        now_push, now_pull, _, _ = self.state()
        got_push = (now_push - before[0]).reshape(SHAPE)
        got_pull = (now_pull - before[1]).reshape(SHAPE)
        most = int((got_push + got_pull).max())
        assert most <= LIMIT, f"the lab delivered {most} pulses to one device (limit {LIMIT})"
        assert torch.equal(got_push, push) and torch.equal(got_pull, pull)

    def close(self) -> None:
        self.array.close()
        self.lab.stop()


def attempt(backend: Twin | Lab, push: torch.Tensor, pull: torch.Tensor) -> None:
    """The claim for one plan: applied exactly if allowed, else refused with nothing moved."""
    must_apply = allowed(push, pull)
    before = backend.state()
    try:
        receipt = backend.array.apply(PulsePlan(push, pull, NOMINAL, NOMINAL))
    except DwlabError as exc:
        event(f"refused: {type(exc).__name__}")
        assert not must_apply, f"an allowed plan was refused: {exc}"
        assert backend.unchanged(before), f"refused ({exc}) but something moved"
        return
    event("applied")
    wide_push, wide_pull = push.to(torch.long), pull.to(torch.long)
    backend.check_delivered(before, wide_push, wide_pull)
    assert must_apply, f"a plan that must be refused was applied: {push!r} {pull!r}"
    assert torch.equal(receipt.push_applied, wide_push)
    assert torch.equal(receipt.pull_applied, wide_pull)


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
    with pytest.MonkeyPatch.context() as monkeypatch:
        yield Twin(monkeypatch)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    backend = Lab(tmp_path_factory.mktemp("pulse_safety"))
    yield backend
    backend.close()


@BOUNDED
@_with_issue_cases
@given(plan=plans())
def test_every_plan_applies_within_the_limit_or_leaves_the_twin_untouched(twin, plan):
    attempt(twin, *plan)


@settings(BOUNDED, max_examples=80)
@_with_issue_cases
@given(plan=plans())
def test_no_plan_over_the_limit_reaches_the_virtual_lab(lab, plan):
    attempt(lab, *plan)


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
