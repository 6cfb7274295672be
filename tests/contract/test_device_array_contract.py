"""The contract every DeviceArray must honour, run over every entry of CONTRACT_BACKENDS.

Only the DeviceArray interface is used here (describe, apply, read, snapshot, restore,
safe_state, the context manager), never a backend's internals.
"""

from __future__ import annotations

import io
import math

import pytest
import torch

from dwlab.core.device import DeviceArray
from dwlab.core.errors import PlanError, PulseLimitError
from dwlab.core.types import ArrayInfo, PulseLimits, PulsePlan, PulseShape, Readout

from .backends import CONTRACT_BACKENDS

N_AVG = 16


@pytest.fixture(params=CONTRACT_BACKENDS, ids=[entry[0] for entry in CONTRACT_BACKENDS])
def array(request):
    _, factory = request.param
    arr, cleanup = factory()
    try:
        yield arr
    finally:
        cleanup()


def pulses(info: ArrayInfo, wanted: int = 20) -> int:
    return min(wanted, info.limits.max_pulses_per_device)


def plan_of(info: ArrayInfo, push=0, pull=0, shape: PulseShape | None = None) -> PulsePlan:
    """A plan for the whole array: ints fill every device, tensors are used as given."""
    def counts(c):
        return c if torch.is_tensor(c) else torch.full(info.shape, c, dtype=torch.long)

    return PulsePlan.uniform(counts(push), counts(pull), shape or info.nominal_pulse)


def mean_read(arr: DeviceArray) -> tuple[float, float]:
    """Mean conductance over the array and its standard error (from the read spread)."""
    r = arr.read(n_averages=N_AVG)
    g = r.conductance_siemens
    se = math.sqrt(float((r.spread_siemens**2).mean()) / (N_AVG * g.numel()))
    return float(g.mean()), se


def assert_unchanged(arr: DeviceArray, before: tuple[float, float], what: str) -> None:
    after = mean_read(arr)
    tol = 6 * math.hypot(before[1], after[1]) + 1e-15
    assert abs(after[0] - before[0]) <= tol, f"{what} changed the array's state"


def test_describe_is_consistent(array):
    info = array.describe()
    assert isinstance(info, ArrayInfo)
    assert isinstance(array, DeviceArray)
    assert len(info.shape) >= 1 and all(isinstance(s, int) and s > 0 for s in info.shape)
    assert 0 < info.conductance_min_siemens < info.conductance_max_siemens
    assert isinstance(info.limits, PulseLimits)
    info.limits.check_shape(info.nominal_pulse, "nominal pulse")  # must not raise
    assert info.step_siemens > 0 and info.step_sigma_siemens >= 0
    assert info.step_siemens < info.conductance_range_siemens
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in info.identity.items())
    g = array.read().conductance_siemens
    assert tuple(g.shape) == info.shape
    # Reads lie in the conductance range, give or take device spread and read noise.
    slack = 0.5 * info.conductance_range_siemens
    assert float(g.min()) > info.conductance_min_siemens - slack
    assert float(g.max()) < info.conductance_max_siemens + slack


def test_push_raises_and_pull_lowers_mean_conductance(array):
    info = array.describe()
    start, _ = mean_read(array)
    array.apply(plan_of(info, push=pulses(info, 10)))
    pushed, _ = mean_read(array)
    array.apply(plan_of(info, pull=pulses(info, 20)))
    pulled, _ = mean_read(array)
    assert pushed > start
    assert pulled < pushed


def test_receipt_counts_equal_the_plan(array):
    info = array.describe()
    gen = torch.Generator().manual_seed(5)
    top = pulses(info, 6) + 1
    push = torch.randint(0, top, info.shape, generator=gen)
    pull = torch.randint(0, top, info.shape, generator=gen)
    plan = plan_of(info, push=push, pull=pull)
    receipt = array.apply(plan)
    assert torch.equal(torch.as_tensor(receipt.push_applied).cpu(), push)
    assert torch.equal(torch.as_tensor(receipt.pull_applied).cpu(), pull)
    assert receipt.pulses_total == plan.total_pulses()
    assert 0 <= receipt.devices_clipped <= info.size


def test_plan_of_wrong_shape_is_refused_without_state_change(array):
    info = array.describe()
    before = mean_read(array)
    wrong = tuple(s + 1 for s in info.shape)
    n = pulses(info)
    bad = PulsePlan.uniform(torch.full(wrong, n), torch.zeros(wrong, dtype=torch.long),
                            info.nominal_pulse)
    with pytest.raises(PlanError):
        array.apply(bad)
    assert_unchanged(array, before, "a plan of the wrong shape")


@pytest.mark.parametrize("which", ["amplitude", "width_high", "width_low", "count"])
def test_plan_over_a_limit_is_refused_without_state_change(array, which):
    info = array.describe()
    lim, nominal = info.limits, info.nominal_pulse
    shape, n = nominal, pulses(info)
    if which == "amplitude":
        shape = PulseShape(lim.max_amplitude_volts * 1.01, nominal.width_seconds)
    elif which == "width_high":
        shape = PulseShape(nominal.amplitude_volts, lim.max_width_seconds * 1.01)
    elif which == "width_low":
        shape = PulseShape(nominal.amplitude_volts, lim.min_width_seconds * 0.99)
    else:
        n = lim.max_pulses_per_device + 1
    before = mean_read(array)
    with pytest.raises(PulseLimitError):
        array.apply(plan_of(info, push=n, shape=shape))
    assert_unchanged(array, before, f"a plan over the {which} limit")


def test_read_shape_and_device_selection(array):
    info = array.describe()
    assert info.size >= 2
    push = torch.zeros(info.size, dtype=torch.long)
    pull = torch.zeros(info.size, dtype=torch.long)
    push[0] = pulses(info)
    pull[1] = pulses(info)
    array.apply(plan_of(info, push=push.reshape(info.shape), pull=pull.reshape(info.shape)))
    full = array.read()
    assert tuple(full.conductance_siemens.shape) == info.shape
    assert full.n_averages == 1
    chosen = array.read(n_averages=8, devices=torch.tensor([1, 0]))
    assert tuple(chosen.conductance_siemens.shape) == (2,)
    low, high = chosen.conductance_siemens.tolist()
    assert high > low


def test_averaged_read_gives_a_spread(array):
    info = array.describe()
    r = array.read(n_averages=N_AVG)
    assert isinstance(r, Readout) and r.n_averages == N_AVG
    assert r.spread_siemens is not None
    assert tuple(r.spread_siemens.shape) == info.shape
    assert bool((r.spread_siemens >= 0).all()) and float(r.spread_siemens.mean()) > 0
    with pytest.raises(ValueError):
        array.read(n_averages=0)


def test_safe_state_is_idempotent(array):
    array.safe_state()
    array.safe_state()
    assert tuple(array.read().conductance_siemens.shape) == array.describe().shape


def test_context_manager_calls_safe_state_on_exception(array):
    calls = []
    original = array.safe_state

    def recording_safe_state():
        calls.append("safe_state")
        original()

    array.safe_state = recording_safe_state
    with pytest.raises(RuntimeError, match="boom"):
        with array as entered:
            assert entered is array
            raise RuntimeError("boom")
    assert calls == ["safe_state"]


def _plain(obj) -> bool:
    if isinstance(obj, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return all(_plain(v) for v in obj)
    return obj is None or isinstance(obj, (str, int, float, bool, torch.Tensor))


def test_snapshot_is_plain_data_and_tensors(array):
    info = array.describe()
    array.apply(plan_of(info, push=pulses(info, 3)))
    snap = array.snapshot()
    assert isinstance(snap, dict) and _plain(snap)
    buffer = io.BytesIO()
    torch.save(snap, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)
    array.restore(loaded)  # a snapshot restores into the array it came from
    assert tuple(array.read().conductance_siemens.shape) == info.shape
