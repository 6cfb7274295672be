"""TwinArray behaviour beyond the DeviceArray contract: presets, snapshots, devices."""

from __future__ import annotations

import io
import math
import textwrap

import pytest
import torch
from dwlab.sim.twin import DEFAULT_LIMITS, MODELS, PRESETS, TwinArray, TwinParams

from dwlab.app.backends import build_array
from dwlab.config import load_config
from dwlab.core.errors import ConfigError, PulseLimitError
from dwlab.core.types import PulseLimits, PulsePlan, PulseShape

NOMINAL = PulseShape(1.0, 1e-8)
NO_SPREAD = dict(mu_spread=0.0, sigma_spread=0.0, v_th_spread=0.0, g_spread=0.0)
CUDA = torch.cuda.is_available()


def plan(shape, push, pull, pulse=NOMINAL) -> PulsePlan:
    return PulsePlan.uniform(torch.full(shape, push), torch.full(shape, pull), pulse)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_snapshot_restore_reproduces_the_same_future(preset):
    t = TwinArray((8, 8), preset=preset, seed=2)
    t.apply(plan((8, 8), 3, 1))
    snap = t.snapshot()
    buffer = io.BytesIO()
    torch.save(snap, buffer)

    def future():
        t.apply(plan((8, 8), 2, 5))
        t.advance_time(1.0)
        return t.x.clone(), t.read(n_averages=3).conductance_siemens

    first = future()
    buffer.seek(0)
    fresh = TwinArray((8, 8), preset=preset, seed=2)
    fresh.restore(torch.load(buffer, weights_only=True))
    t.restore(snap)
    second = future()
    t = fresh
    third = future()
    for a, b in ((first, second), (first, third)):
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert fresh.pulses_applied == 4 * 64 + 7 * 64


def test_restore_refuses_a_snapshot_of_another_twin():
    snap = TwinArray(4, seed=1).snapshot()
    with pytest.raises(ValueError, match="another shape, seed or parameters"):
        TwinArray(4, seed=2).restore(snap)
    with pytest.raises(ValueError):
        TwinArray(5, seed=1).restore(snap)
    with pytest.raises(ValueError):
        TwinArray(4, PRESETS["continuous_dw"].replace(mu_push=0.02), seed=1).restore(snap)


@pytest.mark.parametrize("bad", ["shape", "amplitude", "count"])
def test_refused_plan_leaves_state_and_noise_untouched(bad):
    limits = PulseLimits(2.0, 1e-9, 1e-6, 10)
    t = TwinArray((3, 3), seed=4, limits=limits)
    x0, rng0 = t.x.clone(), t.generator.get_state()
    shape, pulse, count = (3, 3), NOMINAL, 2
    if bad == "shape":
        shape = (9,)
    elif bad == "amplitude":
        pulse = PulseShape(2.5, 1e-8)
    else:
        count = 11
    with pytest.raises(ValueError):
        t.apply(plan(shape, count, 0, pulse))
    assert torch.equal(t.x, x0) and torch.equal(t.generator.get_state(), rng0)
    assert t.pulses_applied == 0


def test_fast_path_sends_only_walls_within_reach_to_the_slow_paths():
    params = PRESETS["continuous_dw"].replace(**NO_SPREAD)
    t = TwinArray(6, params)
    # Reach of 32 + 32 nominal pulses: 6 sd (0.19) + pair drift (0.032) + one push (0.01).
    reach = 6 * math.sqrt(64) * 0.004 + 32 * 0.001 + 0.01
    t.x = torch.tensor([0.5, reach + 0.01, 1 - reach + 0.01, reach - 0.01, 0.98, 0.0])
    details = t.apply(plan((6,), 32, 32)).details
    assert details["near_one_end"] == 4 and details["near_both_ends"] == 0
    wide = TwinArray(2, params.replace(sigma_push=0.05, sigma_pull=0.05))
    assert wide.apply(plan((2,), 32, 32)).details["near_both_ends"] == 2


def noiseless_batch_members() -> tuple[list[TwinArray], list[PulsePlan]]:
    """Three arrays of other shapes and seeds (so other per-device steps), walls spread over
    the track, plans that drive many of them into an end."""
    params = PRESETS["continuous_dw"].replace(sigma_push=0.0, sigma_pull=0.0)
    shapes = [(3, 40), (70,), (2, 5, 4)]
    gen = torch.Generator().manual_seed(0)
    arrays, plans = [], []
    for i, shape in enumerate(shapes):
        twin = TwinArray(shape, params, seed=i)
        twin.x = torch.rand(shape, generator=gen)
        arrays.append(twin)
        push, pull = (torch.randint(0, 60, shape, generator=gen) for _ in range(2))
        plans.append(PulsePlan.uniform(push, pull, NOMINAL))
    return arrays, plans


def test_a_batch_moves_every_array_as_it_would_move_alone():
    # Without pulse noise each wall follows its mean path, near the ends too, so the batch
    # must end where the arrays end one by one: offsets, shapes, per-device steps, clipping
    # and pulse counts all kept apart.
    alone, plans = noiseless_batch_members()
    batch, _ = noiseless_batch_members()
    solo = [twin.apply(p) for twin, p in zip(alone, plans, strict=True)]
    together = TwinArray.apply_batch(batch, plans)
    assert together[0].details["batch"]["arrays"] == 3
    assert sum(r.devices_clipped for r in solo) > 20  # the near-end walk had work
    for a, b, ra, rb in zip(alone, batch, solo, together, strict=True):
        assert b.x.shape == a.x.shape
        assert torch.allclose(a.x, b.x, atol=1e-6, rtol=0)
        assert ra.devices_clipped == rb.devices_clipped
        assert a.pulses_applied == b.pulses_applied
    # and the next step starts from there (the members hold their own part)
    again = TwinArray.apply_batch(batch, plans)
    for a, b, p, r in zip(alone, batch, plans, again, strict=True):
        assert a.apply(p).devices_clipped == r.devices_clipped
        assert torch.allclose(a.x, b.x, atol=1e-6, rtol=0)


def test_a_batch_draws_every_array_with_its_own_step_noise():
    """Arrays of three noise levels in one batch: each wall's move, standardised by its own
    array's per-device step moments, has mean 0 and variance 1 (walls mid-track, so no
    clipping; 20,000 moves per array: the variance is known to about 1 %)."""
    base = PRESETS["continuous_dw"]
    arrays = [TwinArray((2, 5000), base.replace(sigma_push=f * 0.004, sigma_pull=f * 0.004),
                        seed=i) for i, f in enumerate((1.0, 3.0, 0.5))]
    gen = torch.Generator().manual_seed(4)
    plans = [PulsePlan.uniform(torch.randint(1, 16, (2, 5000), generator=gen),
                               torch.randint(1, 16, (2, 5000), generator=gen), NOMINAL)
             for _ in arrays]
    moves: list[list[torch.Tensor]] = [[] for _ in arrays]
    for _ in range(2):
        for twin in arrays:
            twin.x = torch.full(twin.shape, 0.5)
        TwinArray.apply_batch(arrays, plans)
        for i, (twin, p) in enumerate(zip(arrays, plans, strict=True)):
            mu_push, sigma_push, mu_pull, sigma_pull = twin.step_moments(NOMINAL)
            mean = p.push * mu_push - p.pull * mu_pull
            sd = (p.push * sigma_push**2 + p.pull * sigma_pull**2).sqrt()
            moves[i].append(((twin.x - 0.5 - mean) / sd).reshape(-1))
    for z in (torch.cat(m) for m in moves):
        assert abs(float(z.mean())) < 0.03 and abs(float(z.var()) - 1) < 0.05


def test_a_refused_plan_in_a_batch_changes_no_array():
    limits = PulseLimits(2.0, 1e-9, 1e-6, 10)
    a, b = TwinArray(4, seed=1, limits=limits), TwinArray(3, seed=2, limits=limits)
    before = [a.x.clone(), b.x.clone(), a.generator.get_state()]
    with pytest.raises(PulseLimitError):
        TwinArray.apply_batch([a, b], [plan((4,), 2, 2), plan((3,), 11, 0)])
    assert torch.equal(a.x, before[0]) and torch.equal(b.x, before[1])
    assert torch.equal(a.generator.get_state(), before[2])
    assert a.pulses_applied == b.pulses_applied == 0


def test_changing_pulse_shape_uses_the_new_step_moments():
    t = TwinArray(1000, seed=0)
    t.apply(plan((1000,), 2, 2))
    x0 = t.x.clone()
    t.apply(plan((1000,), 3, 0, PulseShape(0.3, 1e-8)))  # below threshold: no motion
    assert torch.equal(t.x, x0)
    t.apply(plan((1000,), 3, 0))
    assert float((t.x - x0).mean()) > 0.02


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_describe_step_matches_the_measured_mean_step(preset):
    n = 20_000
    changes = dict(NO_SPREAD, read_noise_siemens=0.0)
    if PRESETS[preset].model == "multistate":
        changes["notch_spread"] = 0.0
    if PRESETS[preset].model == "binary_mtj":
        changes.update(mtj_delta_spread=0.0, mtj_ic0_spread=0.0)
    t = TwinArray(n, PRESETS[preset].replace(**changes), preset=preset, seed=1)
    if t.model == "multistate":
        t.x = torch.full((n,), 0.5)  # the middle notch (exists for 3 and 5 notches)
        if t.params.n_states == 2:
            t.x = torch.zeros(n)
    info = t.describe()
    g0 = t.conductance()
    t.apply(plan((n,), 1, 0))
    step = t.conductance() - g0
    if t.model == "continuous":
        # describe() gives the mean of the push and pull step sizes.
        g1 = t.conductance()
        t.apply(plan((n,), 0, 1))
        step = 0.5 * (step + g1 - t.conductance())
    se = float(step.std()) / math.sqrt(n)
    assert abs(float(step.mean()) - info.step_siemens) < 5 * se + 0.03 * info.step_siemens
    assert info.step_sigma_siemens > 0
    assert info.identity["model"] == t.model and info.identity["preset"] == preset


def test_params_validation_and_overrides():
    with pytest.raises(ValueError, match="unknown twin parameter"):
        PRESETS["continuous_dw"].replace(mu_pushh=0.1)
    with pytest.raises(ValueError, match="unknown twin model"):
        TwinParams(model="rram").validate()
    with pytest.raises(ValueError, match="n_states"):
        PRESETS["multistate_dw"].replace(n_states=2.5)
    assert PRESETS["multistate_dw"].replace(n_states=5.0).n_states == 5
    with pytest.raises(ValueError, match="unknown twin preset"):
        TwinArray(4, preset="nope")
    assert {p.model for p in PRESETS.values()} == set(MODELS)
    for p in PRESETS.values():
        p.validate()


def test_nominal_pulse_outside_limits_is_refused():
    with pytest.raises(PulseLimitError):
        TwinArray(4, nominal_pulse=PulseShape(9.0, 1e-8))
    assert DEFAULT_LIMITS.max_amplitude_volts == 5.0


def test_read_argument_errors():
    t = TwinArray(4)
    with pytest.raises(ValueError):
        t.read(n_averages=0)
    with pytest.raises(ValueError):
        t.read(devices=torch.tensor([0.5]))
    assert t.read(devices=torch.tensor([3, 1])).conductance_siemens.shape == (2,)


def test_config_builds_every_preset_with_overrides(tmp_path):
    for preset in PRESETS:
        path = tmp_path / f"{preset}.yaml"
        path.write_text(textwrap.dedent(f"""
            name: t
            seed: 3
            arrays:
              main:
                backend: twin
                twin:
                  preset: {preset}
                  params: {{read_noise_siemens: 1.0e-7}}
        """))
        array = build_array(load_config(path), shape=(2, 3))
        assert array.describe().identity["preset"] == preset
        assert array.params.read_noise_siemens == 1.0e-7
        assert array.params.model == PRESETS[preset].model
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: t\narrays:\n  main:\n    twin:\n      params: {n_states: 1}\n")
    with pytest.raises(ConfigError, match="twin.params"):
        build_array(load_config(bad), shape=(2,))


@pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_state_and_noise_live_on_the_torch_device(preset):
    t = TwinArray((64, 64), preset=preset, seed=0, torch_device="cuda")
    assert t.x.is_cuda and t.generator.device.type == "cuda"
    t.apply(plan((64, 64), 40, 24))
    assert t.x.is_cuda and t.read(n_averages=2).conductance_siemens.is_cuda
    snap = t.snapshot()
    a = t.read().conductance_siemens
    t.restore(snap)
    assert torch.equal(a, t.read().conductance_siemens)
    # The GPU fast path agrees in distribution with the CPU reference near an end.
    n = 20_000
    gpu = TwinArray(n, preset="continuous_dw", torch_device="cuda")
    cpu = TwinArray(n, preset="continuous_dw")
    gpu.x = torch.full((n,), 0.05, device="cuda")
    cpu.x = torch.full((n,), 0.05)
    gpu.apply(plan((n,), 20, 30))
    cpu.apply(plan((n,), 20, 30), reference=True)
    assert abs(float(gpu.x.mean().cpu() - cpu.x.mean())) < 5 * float(cpu.x.std()) / math.sqrt(
        n / 2)
