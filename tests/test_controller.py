"""The push-pull SGLD controller: arithmetic, statistics on many devices, limits, state."""

from __future__ import annotations

import copy
import io
import math
import subprocess
import sys

import pytest
import torch
from dwlab.sim.twin import DEFAULT_LIMITS, PRESETS, TwinArray

from dwlab.config import ControllerConfig, MappingRule, ScheduleConfig
from dwlab.core.errors import PlanError, PulseLimitError
from dwlab.core.types import PulseLimits
from dwlab.sgld.controller import build_optimizer
from dwlab.sgld.mapping import array_for
from dwlab.sgld.maths import (
    alpha_for_range,
    alpha_for_temperature,
    learning_rate_at,
    pulse_budget,
    temperature_for_alpha,
)
from dwlab.sgld.planner import round_counts_

# A twin whose 7-bit budget spans a fraction of the track (steps a tenth of the preset's,
# as a pulse ten times shorter gives). For the noise statistics every device shares its mean
# step and conductance range, so the spread across devices is the per-step noise alone.
FINE = PRESETS["continuous_dw"].replace(
    mu_push=0.001, mu_pull=0.0009, sigma_push=0.004 * math.sqrt(0.1),
    sigma_pull=0.004 * math.sqrt(0.1),
)
UNIFORM = FINE.replace(mu_spread=0.0, g_spread=0.0)


class Factory:
    """Array factory recording what the controller asked for."""

    def __init__(self, params=FINE, limits: PulseLimits = DEFAULT_LIMITS, seed: int = 11):
        self.params, self.limits, self.seed = params, limits, seed
        self.calls: list[tuple[str, tuple[int, ...], int]] = []
        self.built: list[TwinArray] = []

    def __call__(self, name: str, shape: tuple[int, ...], seed_offset: int) -> TwinArray:
        self.calls.append((name, shape, seed_offset))
        twin = TwinArray(shape, self.params, seed=self.seed + seed_offset, limits=self.limits)
        self.built.append(twin)
        return twin


def linear(n_in: int, n_out: int, bias: bool = False, zero: bool = False) -> torch.nn.Module:
    torch.manual_seed(0)
    layer = torch.nn.Linear(n_in, n_out, bias=bias)
    if zero:
        with torch.no_grad():
            layer.weight.zero_()
    return layer


# -- arithmetic ---------------------------------------------------------------------------


def test_pulse_budget_and_schedules():
    assert pulse_budget(1) == 1 and pulse_budget(7) == 127
    assert learning_rate_at(0.1, ScheduleConfig(), 500) == 0.1
    poly = ScheduleConfig(kind="polynomial", gamma=0.5, decay_steps=100.0)
    assert learning_rate_at(0.1, poly, 0) == pytest.approx(0.1)
    assert learning_rate_at(0.1, poly, 300) == pytest.approx(0.1 * 4**-0.5)
    cyc = ScheduleConfig(kind="cyclic", cycle_steps=10)
    assert learning_rate_at(0.1, cyc, 0) == pytest.approx(0.1)
    assert learning_rate_at(0.1, cyc, 5) == pytest.approx(0.05)
    assert learning_rate_at(0.1, cyc, 10) == pytest.approx(0.1)


@pytest.mark.parametrize("pair", [False, True])
def test_temperature_mapping_inverts(pair):
    info = TwinArray((4,), FINE).describe()
    m = alpha_for_temperature(info, 127, 1e-4, 0.5, pair=pair)
    back = temperature_for_alpha(info, 127, 1e-4, m.alpha, pair=pair)
    assert back.temperature == pytest.approx(0.5)
    # lr T = alpha^2 K sigma^2 / 2 per device, doubled for pairs
    c = 2 if pair else 1
    assert m.noise_variance == pytest.approx(m.alpha**2 * 127 * c * info.step_sigma_siemens**2)
    assert m.noise_variance == pytest.approx(2 * 1e-4 * 0.5)
    assert alpha_for_range(info, 0.3, pair=pair) * info.conductance_range_siemens == (
        pytest.approx(0.3 * (1 if pair else 2))
    )


def test_count_rounding_is_unbiased_and_stays_in_the_budget():
    x = torch.tensor([127.0, 126.5, 300.0, -4.0, 0.25])
    # The largest float32 below 1: 127 + u rounds to 128 in float32, yet the count is 127.
    top = torch.full_like(x, float(torch.nextafter(torch.tensor(1.0), torch.tensor(0.0))))
    assert round_counts_(x.clone(), top, 0, 127).tolist() == [127, 127, 127, 0, 1]
    assert round_counts_(x.clone(), torch.zeros_like(x), 0, 127).tolist() == [127, 126, 127,
                                                                            0, 0]
    gen = torch.Generator().manual_seed(0)
    many = torch.full((200_000,), 3.3)
    rounded = round_counts_(many, torch.rand(many.shape, generator=gen), 0, 15)
    assert float(rounded.mean()) == pytest.approx(3.3, abs=0.005)


def test_mapping_rules_route_weights_and_keep_biases_digital():
    model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3))
    rules = [MappingRule(match="2.*", array="out"), MappingRule(match="*", array="main")]
    assert array_for("2.weight", rules) == "out" and array_for("0.weight", []) == "main"
    factory = Factory()
    opt = build_optimizer(
        model, ControllerConfig(scheme="push_pull_pair"), dataset_size=100,
        array_factory=factory, mapping=rules,
    )
    assert factory.calls == [("main", (2, 5, 6), 0), ("out", (2, 3, 5), 1)]
    assert sorted(opt.arrays) == ["0.weight", "2.weight"]
    assert [n for n, _ in opt.digital] == ["0.bias", "2.bias"]
    # the weights now are what the devices hold
    dw = opt.weights[0]
    g = dw.array.conductance()
    assert torch.allclose(model[0].weight, dw.alpha * (g[0] - g[1]), atol=5 * dw.alpha * 5e-7)


def test_wrong_array_shape_is_refused_before_any_pulse():
    built = []

    def factory(name, shape, seed_offset):
        built.append(TwinArray((3, 3), FINE))
        return built[-1]

    with pytest.raises(PlanError, match="shape"):
        build_optimizer(linear(4, 2), ControllerConfig(scheme="push_pull"), dataset_size=10,
                        array_factory=factory)
    assert built[0].pulses_applied == 0


def test_controller_is_core():
    code = (
        "import sys, dwlab.sgld.controller, dwlab.sgld.maths;"
        "bad=[m for m in sys.modules if m.startswith(('dwlab.sim','dwlab.drivers',"
        "'dwlab.app.backends'))]; assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# -- statistics on many devices -----------------------------------------------------------

N_DATA, LR, TEMPERATURE = 1000, 0.1, 1.0


def noise_controller(scheme: str, n_devices: int = 20_000):
    model = linear(200, n_devices // 200, zero=True)
    # A wide update range (long pulses) keeps the read-back noise small beside the pulses'.
    cfg = ControllerConfig(
        scheme=scheme, lr=LR, temperature=TEMPERATURE, weight_scale="temperature",
        update_bits=7, precision="fixed_range", update_range=0.12,
    )
    opt = build_optimizer(model, cfg, dataset_size=N_DATA, array_factory=Factory(UNIFORM))
    return model, opt


def step_with_grad(model, opt, units: float) -> torch.Tensor:
    """One step whose desired change is ``units`` push-pull units; returns the weight change."""
    dw = opt.weights[0]
    per_unit = dw.alpha * dw.mean_step * (2 if dw.pair else 1)
    if opt.scheme == "gradient_only":
        per_unit = dw.alpha * float(dw.mu_push.mean())
    before = model.weight.detach().clone()
    prior = 1.0 / (N_DATA * opt.cfg.prior_sigma**2)
    # grad + prior * w = -(desired change) / lr  ->  the desired change is uniform
    model.weight.grad = -(units * per_unit) / LR - prior * before
    opt.step()
    return model.weight.detach() - before, units * per_unit


@pytest.mark.parametrize("scheme", ["push_pull", "push_pull_pair"])
def test_weight_noise_per_step_equals_2_eps_T(scheme):
    """Must show: with alpha from the temperature mapping, Var(dw) = 2 eps T within 10 %,
    at zero and at non-zero gradient, and the mean step is the desired one."""
    model, opt = noise_controller(scheme)
    expected = 2 * (LR / N_DATA) * TEMPERATURE
    for units in (0.0, 40.0):
        change, desired = step_with_grad(model, opt, units)
        assert float(change.var()) == pytest.approx(expected, rel=0.10), units
        assert float(change.mean()) == pytest.approx(desired, abs=0.03 * math.sqrt(expected))
        assert opt.last_stats.effective_temperature == pytest.approx(TEMPERATURE, rel=0.01)
        assert opt.last_stats.steps_clipped == 0


def test_push_pull_variance_flat_but_gradient_only_grows():
    pp_model, pp = noise_controller("push_pull")
    pp_var = [float(step_with_grad(pp_model, pp, u)[0].var()) for u in (0.0, 30.0, 80.0)]
    assert max(pp_var) / min(pp_var) < 1.10
    go_model, go = noise_controller("gradient_only")
    go_var = [float(step_with_grad(go_model, go, u)[0].var()) for u in (0.0, 10.0, 40.0)]
    dw = go.weights[0]
    pulse_var = (dw.alpha * dw.sigma) ** 2
    # Two read-backs bound a step, each with the twin's read noise: a floor under every step.
    read_var = 2 * (dw.alpha * UNIFORM.read_noise_siemens) ** 2
    assert go_var[0] == pytest.approx(read_var, rel=0.1)  # no Langevin noise at zero gradient
    assert go_var[1] - read_var == pytest.approx(10 * pulse_var, rel=0.15)
    assert go_var[2] - read_var == pytest.approx(40 * pulse_var, rel=0.15)


# -- fixed update range --------------------------------------------------------------------

QUIET = UNIFORM.replace(read_noise_siemens=0.0)  # no read-back noise: pulses' noise alone
RANGE = 0.1


def range_controller(scheme: str, bits: int, n_devices: int = 20_000):
    torch.manual_seed(0)
    model = torch.nn.Linear(200, n_devices // 200, bias=False)
    with torch.no_grad():
        model.weight.normal_(0.0, 0.05)
    cfg = ControllerConfig(scheme=scheme, lr=LR, update_bits=bits,
                           precision="fixed_range", update_range=RANGE)
    opt = build_optimizer(model, cfg, dataset_size=N_DATA, array_factory=Factory(QUIET))
    return model, opt


@pytest.mark.parametrize("scheme", ["push_pull", "push_pull_pair"])
def test_fixed_range_noise_does_not_depend_on_bits(scheme):
    """Under a fixed update range the pulse width scales as 1/K, so the device noise of one
    step (K pulses) is the same at every precision: range * sigma_0^2 / mu_0 per device."""
    variances = {}
    for bits in (4, 6, 8):
        model, opt = range_controller(scheme, bits)
        dw = opt.weights[0]
        k = 2**bits - 1
        info = dw.array.describe()
        assert dw.pulse.width_seconds == pytest.approx(
            info.nominal_pulse.width_seconds * RANGE * info.conductance_range_siemens
            / (k * info.step_siemens))
        # One push-pull unit of change (pair) or K mu- of offset (single) lands exactly on a
        # level: no rounding noise, the pulses' noise alone.
        units = 1.0 if dw.pair else 0.0
        if not dw.pair:
            dw.mu_push = dw.mu_pull  # symmetric: n+ = K/2 + x, an integer for odd x
            units = 1.0
        change, _ = step_with_grad(model, opt, units)
        devices = 2 if dw.pair else 1
        expected = (dw.alpha**2 * devices * RANGE * info.conductance_range_siemens
                    * info.step_sigma_siemens**2 / info.step_siemens)
        # A pair's devices are compensated each with its own steps, so their counts are
        # rounded: the rounding the controller reports adds to the pulses' noise.
        stats = opt.last_stats
        rounding = stats.noise_per_step**2 * stats.rounding_share
        variances[bits] = float(change.var()) - rounding
        assert variances[bits] == pytest.approx(expected, rel=0.10), bits
        assert opt.last_stats.pulses_sent == devices * k * dw.n_weights
    assert max(variances.values()) / min(variances.values()) < 1.15


@pytest.mark.parametrize("scheme", ["push_pull", "push_pull_pair"])
@pytest.mark.parametrize("bits", [4, 8])
def test_largest_update_spans_the_configured_range(scheme, bits):
    """A step beyond the budget sends K pushes: the device moves by update_range of its
    conductance range, the weight by update_range of its window."""
    model, opt = range_controller(scheme, bits, n_devices=4000)
    dw = opt.weights[0]
    g_range = dw.array.describe().conductance_range_siemens
    g_before = dw.array.conductance().clone()
    change, _ = step_with_grad(model, opt, 50.0 * 2**bits)
    moved = (dw.array.conductance() - g_before)
    device_change = float((moved[0] if dw.pair else moved).mean())
    # The width is set from the mean of the push and pull steps; a push is a little larger.
    push_excess = 2 * QUIET.mu_push / (QUIET.mu_push + QUIET.mu_pull)
    assert device_change == pytest.approx(RANGE * g_range * push_excess, rel=0.02)
    window = dw.alpha * g_range * (2 if dw.pair else 1)
    # A pair pushes one device and pulls the other: their mean is the planned step.
    weight_excess = 1.0 if dw.pair else push_excess
    assert float(change.mean()) == pytest.approx(RANGE * window * weight_excess, rel=0.02)
    assert opt.last_stats.steps_clipped == dw.n_weights


def test_update_pulse_below_the_width_limit_is_refused_before_any_pulse():
    factory = Factory()  # nominal 10 ns pulses, limits from 1 ns
    cfg = ControllerConfig(scheme="push_pull_pair", update_bits=8,
                           precision="fixed_range", update_range=0.001)
    with pytest.raises(PulseLimitError, match=r"controller.update_range.*min_width_seconds"):
        build_optimizer(linear(8, 4), cfg, dataset_size=10, array_factory=factory)
    assert factory.built[0].pulses_applied == 0
    # Empty update_range: the nominal pulse as it is, whatever the bits.
    opt = build_optimizer(linear(8, 4), ControllerConfig(update_bits=8, update_range=None),
                          dataset_size=10, array_factory=Factory())
    assert opt.weights[0].pulse == opt.weights[0].array.describe().nominal_pulse


@pytest.mark.parametrize("bad", ["weight", "bias"])
def test_non_finite_gradient_is_refused_naming_the_parameter(bad):
    model = linear(10, 5, bias=True)
    opt = build_optimizer(model, ControllerConfig(scheme="push_pull_pair"), dataset_size=100,
                          array_factory=Factory())
    twin = opt.weights[0].array
    x_before, w_before = twin.x.clone(), model.weight.detach().clone()
    model.weight.grad = torch.zeros_like(model.weight)
    model.bias.grad = torch.zeros_like(model.bias)
    getattr(model, bad).grad.view(-1)[1] = float("nan")
    getattr(model, bad).grad.view(-1)[2] = float("inf")
    with pytest.raises(PlanError, match=rf"'{bad}' has 2 non-finite"):
        opt.step()
    assert torch.equal(twin.x, x_before) and torch.equal(model.weight, w_before)
    assert opt.step_count == 0


def test_pairs_saturating_in_common_mode_are_recentred():
    model, opt = noise_controller("push_pull_pair", n_devices=2000)
    dw = opt.weights[0]
    twin = dw.array
    x = twin.x.view(2, -1)
    x[:, :5] = 0.97  # both devices of the first five pairs near the top end
    x[0, 5:10] = 0.97  # large weights: one device high, one low; cannot be helped
    x[1, 5:10] = 0.03
    opt.load_device_snapshots(opt.device_snapshots())  # read the new state back
    step_with_grad(model, opt, 0.0)
    assert opt.last_stats.recentred_pairs == 5
    g = twin.conductance().view(2, -1)
    common = 0.5 * (g[0, :5] + g[1, :5])
    assert torch.all((common - dw.g_mid).abs() < 0.1 * dw.g_half)
    assert opt.last_stats.pulses_sent > 127 * dw.last_read.numel()


def test_pairs_on_arrays_of_different_windows_keep_their_own_centres():
    """A step's re-centring and saturation count run over every tensor at once; each pair
    still goes to its own array's window centre and counts against its own window."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(40, 25, bias=False),
                                torch.nn.Linear(25, 40, bias=False))
    high = FINE.replace(g_ap_siemens=6e-4, g_p_siemens=1.2e-3)  # another window entirely

    class Windows(Factory):
        def __call__(self, name, shape, seed_offset):
            self.params = high if name == "high" else FINE
            return super().__call__(name, shape, seed_offset)

    rules = [MappingRule(match="1.*", array="high"), MappingRule(match="*", array="main")]
    opt = build_optimizer(model, ControllerConfig(scheme="push_pull_pair"), dataset_size=100,
                          array_factory=Windows(), mapping=rules)
    assert opt.weights[0].g_mid != opt.weights[1].g_mid
    for dw in opt.weights:
        dw.array.x.view(2, -1)[:, :5] = 0.97  # five pairs per tensor near the top end
    opt.load_device_snapshots(opt.device_snapshots())
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    assert opt.last_stats.recentred_pairs == 10
    saturated = 0
    for dw in opt.weights:
        g = dw.array.conductance().view(2, -1)
        common = 0.5 * (g[0, :5] + g[1, :5])
        # from 0.94 of the half window off centre to within the noise of ~500 pulses
        assert torch.all((common - dw.g_mid).abs() < 0.25 * dw.g_half), dw.name
        saturated += int(((dw.last_read - dw.g_mid).abs() > 0.9 * dw.g_half).sum())
    assert opt.last_stats.saturated_devices == saturated


# -- limits -------------------------------------------------------------------------------


def test_budget_over_the_limit_is_refused_before_any_pulse():
    tight = PulseLimits(5.0, 1e-9, 1e-6, max_pulses_per_device=50)
    factory = Factory(limits=tight)
    with pytest.raises(PulseLimitError, match="127 pulses"):
        build_optimizer(linear(8, 4), ControllerConfig(scheme="push_pull"), dataset_size=10,
                        array_factory=factory)
    assert factory.built[0].pulses_applied == 0


def test_step_over_the_limit_changes_nothing():
    model, opt = noise_controller("push_pull_pair", n_devices=400)
    twin = opt.weights[0].array
    x_before, w_before = twin.x.clone(), model.weight.detach().clone()
    gen_before = opt._generator(model.weight.device).get_state()
    twin.limits = PulseLimits(5.0, 1e-9, 1e-6, max_pulses_per_device=100)  # tightened
    model.weight.grad = torch.ones_like(model.weight)
    with pytest.raises(PulseLimitError):
        opt.step()
    assert torch.equal(twin.x, x_before) and torch.equal(model.weight, w_before)
    assert opt.step_count == 0 and twin.pulses_applied > 0
    assert torch.equal(opt._generator(model.weight.device).get_state(), gen_before)


# -- state --------------------------------------------------------------------------------


def run_steps(model, opt, batches) -> list[torch.Tensor]:
    out = []
    for x, y in batches:
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        out.append(torch.cat([p.detach().flatten().clone() for p in model.parameters()]))
    return out


@pytest.mark.parametrize("scheme", ["push_pull_pair", "push_pull", "gradient_only",
                                    "float_sgld"])
def test_state_dict_round_trip_continues_identically(scheme):
    gen = torch.Generator().manual_seed(3)
    batches = [(torch.randn(16, 12, generator=gen), torch.randint(0, 4, (16,), generator=gen))
               for _ in range(6)]
    cfg = ControllerConfig(scheme=scheme, lr=0.2, temperature=0.5)
    model = linear(12, 4, bias=True)
    opt = build_optimizer(model, cfg, dataset_size=200, array_factory=Factory(), seed=5)
    run_steps(model, opt, batches[:3])
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, buf)
    expected = run_steps(model, opt, batches[3:])

    fresh = linear(12, 4, bias=True)
    with torch.no_grad():
        for p in fresh.parameters():
            p.add_(1.0)  # a different init: everything must come from the state
    resumed = build_optimizer(fresh, cfg, dataset_size=200, array_factory=Factory(), seed=5)
    buf.seek(0)
    saved = torch.load(buf, weights_only=False)
    fresh.load_state_dict(saved["model"])
    resumed.load_state_dict(saved["opt"])
    got = run_steps(fresh, resumed, batches[3:])
    for a, b in zip(expected, got, strict=True):
        assert torch.equal(a, b)
    assert resumed.step_count == 6


def test_device_snapshots_put_a_sample_back():
    model = linear(30, 10)
    opt = build_optimizer(model, ControllerConfig(scheme="push_pull_pair"), dataset_size=100,
                          array_factory=Factory())
    sample = copy.deepcopy(opt.device_snapshots())
    held = model.weight.detach().clone()
    model.weight.grad = torch.randn_like(model.weight)
    opt.step()
    assert not torch.allclose(model.weight, held, atol=1e-3)
    opt.load_device_snapshots(sample)
    read_noise = opt.weights[0].alpha * 5e-7 * math.sqrt(2)
    assert torch.allclose(model.weight, held, atol=6 * read_noise)
    with pytest.raises(ValueError, match="missing"):
        opt.load_device_snapshots({})


def test_close_and_failed_construction_leave_arrays_safe():
    calls = []

    class Recording(TwinArray):
        def safe_state(self):
            calls.append(self.name)

    def factory(name, shape, seed_offset):
        return Recording(shape, FINE, seed=seed_offset, name=f"a{seed_offset}")

    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    opt = build_optimizer(model, ControllerConfig(scheme="push_pull"), dataset_size=10,
                          array_factory=factory)
    opt.close()
    assert calls == ["a0", "a1"]
    calls.clear()

    def failing(name, shape, seed_offset):
        if seed_offset == 1:
            raise RuntimeError("instrument gone")
        return factory(name, shape, seed_offset)

    with pytest.raises(RuntimeError, match="instrument gone"):
        build_optimizer(model, ControllerConfig(scheme="push_pull"), dataset_size=10,
                        array_factory=failing)
    assert calls == ["a0"]


def test_float_schemes_need_no_arrays_and_report_zero_device_stats():
    model = linear(5, 3, bias=True)
    opt = build_optimizer(model, ControllerConfig(scheme="float_sgd", lr=0.1), dataset_size=10)
    before = model.weight.detach().clone()
    model.weight.grad = torch.ones_like(model.weight)
    model.bias.grad = torch.zeros_like(model.bias)
    opt.step()
    prior = 1.0 / 10
    assert torch.allclose(model.weight, before * (1 - 0.1 * prior) - 0.1)
    assert opt.arrays == {} and opt.last_stats.pulses_sent == 0
    assert opt.last_stats.step_size == pytest.approx(0.01)
    with pytest.raises(ValueError, match="array_factory"):
        build_optimizer(model, ControllerConfig(scheme="push_pull"), dataset_size=10)


def test_controller_config_is_validated_with_file_and_key():
    from dwlab.config import from_data
    from dwlab.core.errors import ConfigError

    cfg = from_data(ControllerConfig, {"weight_scale": "temperature", "recentre_margin": 0.2,
                                       "schedule": {"kind": "cyclic", "cycle_steps": 50}})
    assert cfg.weight_scale == "temperature" and cfg.schedule.cycle_steps == 50
    with pytest.raises(ConfigError, match="lab.yaml.*controller.weight_scale"):
        from_data(ControllerConfig, {"weight_scale": "guess"}, file="lab.yaml",
                  key="controller")
    with pytest.raises(ConfigError, match="controller.schedule.*cycle_steps"):
        from_data(ControllerConfig, {"schedule": {"cycle_steps": 0}}, file="lab.yaml",
                  key="controller")
    with pytest.raises(ConfigError, match="recentre_margin"):
        from_data(ControllerConfig, {"recentre_margin": 0.7}, key="controller")
    with pytest.raises(ConfigError, match="update_range"):
        from_data(ControllerConfig, {"update_range": 0.0}, key="controller")
    assert from_data(ControllerConfig, {"update_range": None}).update_range is None
