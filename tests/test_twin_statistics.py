"""Statistical tests of the twin on many devices (seeded, fast)."""

from __future__ import annotations

import math

import pytest
import torch
from dwlab.sim.twin import PRESETS, TwinArray

from dwlab.core.types import PulsePlan, PulseShape

N = 20_000
NOMINAL = PulseShape(1.0, 1e-8)
NO_SPREAD = dict(mu_spread=0.0, sigma_spread=0.0, v_th_spread=0.0, g_spread=0.0)


def twin(n=N, preset="continuous_dw", seed=0, **changes) -> TwinArray:
    return TwinArray(n, PRESETS[preset].replace(**changes), preset=preset, seed=seed)


def plan(n, push, pull, shape=NOMINAL) -> PulsePlan:
    def counts(c):
        return c if torch.is_tensor(c) else torch.full((n,), c, dtype=torch.long)

    return PulsePlan.uniform(counts(push), counts(pull), shape)


def check_mean(sample: torch.Tensor, expected: float, sigmas: float = 5.0) -> None:
    se = float(sample.std()) / math.sqrt(sample.numel())
    assert abs(float(sample.mean()) - expected) < sigmas * se + 1e-9, (
        float(sample.mean()), expected)


def check_var(sample: torch.Tensor, expected: float) -> None:
    # Sample variance has relative standard error sqrt(2 / (n - 1)) for Gaussian data.
    rel = 6 * math.sqrt(2 / (sample.numel() - 1))
    assert float(sample.var()) == pytest.approx(expected, rel=rel)


@pytest.mark.parametrize("reference", [False, True])
@pytest.mark.parametrize("k", [1, 10])
def test_k_pulses_give_mean_k_mu_and_variance_k_sigma2(k, reference):
    t = twin(**NO_SPREAD)
    p = t.params
    x0 = t.x.clone()
    t.apply(plan(N, k, 0), reference=reference)
    check_mean(t.x - x0, k * p.mu_push)
    check_var(t.x - x0, k * p.sigma_push**2)
    x1 = t.x.clone()
    t.apply(plan(N, 0, k), reference=reference)
    check_mean(t.x - x1, -k * p.mu_pull)
    check_var(t.x - x1, k * p.sigma_pull**2)


def test_displacement_follows_each_devices_own_parameters():
    t = twin(seed=3)
    k = 12
    mu_push, sigma_push, _, _ = t.step_moments(NOMINAL)
    x0 = t.x.clone()
    t.apply(plan(N, k, 0))
    z = (t.x - x0 - k * mu_push) / (math.sqrt(k) * sigma_push)
    check_mean(z, 0.0)
    check_var(z, 1.0)


@pytest.mark.parametrize("net", [0, 16, 48])
def test_push_pull_variance_does_not_depend_on_net_pulses(net):
    budget = 64
    # Small mean steps keep the walls inside the track (no clipping) for every net.
    t = twin(**NO_SPREAD, mu_push=0.002, mu_pull=0.002)
    p = t.params
    x0 = t.x.clone()
    t.apply(plan(N, (budget + net) // 2, (budget - net) // 2))
    check_mean(t.x - x0, net * p.mu_push)
    check_var(t.x - x0, budget * p.sigma_push**2)


def test_gradient_only_variance_grows_with_net_pulses():
    t = twin(**NO_SPREAD, mu_push=0.002)
    variances = []
    for net in (0, 16, 48):
        x0 = t.x.clone()
        t.apply(plan(N, net, 0))
        variances.append(float((t.x - x0).var()))
        t.x = x0
    assert variances[0] == 0.0
    assert variances[2] == pytest.approx(3 * variances[1], rel=0.1)
    assert variances[1] == pytest.approx(16 * t.params.sigma_push**2, rel=0.1)


def test_no_motion_below_threshold():
    t = twin(seed=1)
    below = PulseShape(0.45, 1e-8)  # v_th is 0.5 V with a 5 % spread
    stuck = t.v_th >= below.amplitude_volts
    assert 0.5 < float(stuck.float().mean()) < 1.0  # some devices are below, some above
    x0 = t.x.clone()
    t.apply(plan(N, 5, 3, below))
    assert torch.equal(t.x[stuck], x0[stuck])
    assert bool((t.x[~stuck] != x0[~stuck]).all())


def test_mean_step_linear_in_overdrive_and_width():
    t = twin(**NO_SPREAD)
    x0 = t.x.clone()
    t.apply(plan(N, 4, 0, PulseShape(0.75, 2e-8)))  # half the overdrive, twice the width
    check_mean(t.x - x0, 4 * t.params.mu_push * 0.5 * 2.0)
    check_var(t.x - x0, 4 * t.params.sigma_push**2 * 1.0)


def test_up_and_down_steps_are_asymmetric():
    t = twin(**NO_SPREAD)
    x0 = t.x.clone()
    t.apply(plan(N, 10, 0))
    up = float((t.x - x0).mean())
    x1 = t.x.clone()
    t.apply(plan(N, 0, 10))
    down = float((x1 - t.x).mean())
    assert down / up == pytest.approx(t.params.mu_pull / t.params.mu_push, rel=0.02)
    assert down < up


def test_read_noise():
    t = twin()
    g = t.conductance()
    sigma = t.params.read_noise_siemens
    single = t.read().conductance_siemens - g
    check_mean(single, 0.0)
    check_var(single, sigma**2)
    averaged = t.read(n_averages=16)
    check_var(averaged.conductance_siemens - g, sigma**2 / 16)
    c4 = 0.98348  # E[sample std] / sigma for 16 Gaussian samples
    assert float(averaged.spread_siemens.mean()) == pytest.approx(c4 * sigma, rel=0.02)


def test_device_to_device_spread_drawn_from_the_seed():
    t = twin(seed=5)
    p = t.params
    assert float(t.g_p.std() / t.g_p.mean()) == pytest.approx(p.g_spread, rel=0.05)
    assert float(t.mu_push.std() / t.mu_push.mean()) == pytest.approx(p.mu_spread, rel=0.05)
    assert float(t.v_th.std() / t.v_th.mean()) == pytest.approx(p.v_th_spread, rel=0.05)
    assert torch.equal(twin(seed=5).g_p, t.g_p)
    assert not torch.equal(twin(seed=6).g_p, t.g_p)
    # Conductance is linear in position between each device's own G_AP and G_P.
    t.x = torch.full((N,), 0.25)
    assert torch.allclose(t.conductance(), t.g_ap + 0.25 * (t.g_p - t.g_ap))


def test_walls_clip_at_the_ends_and_receipt_counts_them():
    t = twin(n=1000, **NO_SPREAD)
    receipt = t.apply(plan(1000, 80, 0))  # 0.5 + 80 * 0.01 runs into the top end
    assert float(t.x.max()) == 1.0 and float(t.x.min()) > 0.9
    assert receipt.devices_clipped == 1000
    t.x = torch.full((1000,), 0.5)
    receipt = t.apply(plan(1000, 0, 2))
    assert receipt.devices_clipped == 0
    t.x = torch.full((1000,), 0.05)
    receipt = t.apply(plan(1000, 0, 10))  # 0.05 - 10 * 0.009 runs into the bottom end
    assert float(t.x.min()) == 0.0 and receipt.devices_clipped == 1000


def test_binary_mtj_switching_probability_matches_formula():
    t = twin(preset="binary_mtj", mtj_delta_spread=0.0, mtj_ic0_spread=0.0, g_spread=0.0)
    p = t.params
    assert float(t.x.max()) == 0.0  # starts anti-parallel
    for width in (3e-9, 1e-8, 3e-8):
        t.x = torch.zeros(N)
        t.apply(plan(N, 1, 0, PulseShape(1.0, width)))
        current = 1.0 * p.g_ap_siemens
        tau = p.mtj_tau0_seconds * math.exp(p.mtj_delta * (1 - current / p.mtj_ic0_push_amps))
        expected = 1 - math.exp(-width / tau)
        se = math.sqrt(expected * (1 - expected) / N)
        assert abs(float(t.x.mean()) - expected) < 5 * se, width
    # k pulses: 1 - (1 - p)^k; pulls switch P -> AP through G_P.
    t.x = torch.zeros(N)
    t.apply(plan(N, 3, 0))
    p1 = float(t.step_moments(NOMINAL)[0][0])
    assert float(t.x.mean()) == pytest.approx(1 - (1 - p1) ** 3, abs=5 * math.sqrt(0.25 / N))
    t.x = torch.ones(N)
    t.apply(plan(N, 0, 1))
    tau = p.mtj_tau0_seconds * math.exp(
        p.mtj_delta * (1 - p.g_p_siemens / p.mtj_ic0_pull_amps))
    assert 1 - float(t.x.mean()) == pytest.approx(
        1 - math.exp(-1e-8 / tau), abs=5 * math.sqrt(0.25 / N))


def test_binary_dw_synapse_reads_are_binomial_around_pass_probability():
    p = PRESETS["binary_dw_synapse"]
    for n, n_reads in ((256, 16), (N, 16)):  # exact binomial, then the normal approximation
        t = twin(n=n, preset="binary_dw_synapse", read_noise_siemens=0.0, g_spread=0.0)
        x = float(t.x[0])
        w = p.drive_min + (p.drive_max - p.drive_min) * x
        prob = (1 - p.pass_a) + p.pass_a / (1 + math.exp(-p.pass_dx * (w - p.pass_x0)))
        frac = (t.read(n_averages=n_reads).conductance_siemens - p.g_ap_siemens) / (
            p.g_p_siemens - p.g_ap_siemens)
        k = frac * n_reads
        assert torch.allclose(k, k.round(), atol=1e-3)
        var = prob * (1 - prob) / n_reads
        assert abs(float(frac.mean()) - prob) < 6 * math.sqrt(var / n)
        assert float(frac.var()) == pytest.approx(var, rel=6 * math.sqrt(2 / n) + 0.03)


def test_multistate_walls_sit_at_notches_and_hop_with_the_model_probability():
    t = twin(preset="multistate_dw", **NO_SPREAD, notch_spread=0.0)
    p = t.params
    assert set(t.x.unique().tolist()) <= {0.0, 0.5, 1.0}
    x0 = t.x.clone()
    assert bool((x0 == 0.5).all())
    t.apply(plan(N, 1, 0))
    hopped = float((t.x == 1.0).float().mean())
    gap = 0.5
    expected = 0.5 * math.erfc(-(p.mu_push - gap / 2) / (p.sigma_push * math.sqrt(2)))
    assert abs(hopped - expected) < 5 * math.sqrt(expected * (1 - expected) / N)
    assert set(t.x.unique().tolist()) <= {0.0, 0.5, 1.0}


def test_multistate_positions_spread_from_device_to_device():
    t = twin(preset="multistate_dw_5", notch_spread=0.04)
    assert t.notches.shape == (5, N)
    assert float(t.notches[2].std()) == pytest.approx(0.04, rel=0.1)
    # Every wall sits exactly at one of its own notches, before and after pulses.
    t.apply(plan(N, 3, 1))
    assert bool(((t.notches - t.x).abs().min(dim=0).values == 0).all())


def test_retention_relaxation_and_mtj_thermal_flips():
    t = twin(relaxation_rate_per_second=0.1, relaxation_target=0.3)
    x0 = t.x.clone()
    t.advance_time(5.0)
    assert torch.allclose(t.x, 0.3 + (x0 - 0.3) * math.exp(-0.5))
    assert t.elapsed_seconds == 5.0
    still = twin()
    x0 = still.x.clone()
    still.advance_time(1e6)
    assert torch.equal(still.x, x0)  # default rate 0: no drift
    with pytest.raises(ValueError):
        still.advance_time(-1.0)
    mtj = twin(preset="binary_mtj", mtj_delta_spread=0.0)
    p = mtj.params
    seconds = 1e8
    mtj.advance_time(seconds)
    expected = 1 - math.exp(-seconds / (p.mtj_tau0_seconds * math.exp(p.mtj_delta)))
    assert abs(float(mtj.x.mean()) - expected) < 5 * math.sqrt(expected * (1 - expected) / N)
