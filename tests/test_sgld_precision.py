"""Bench precision on a twin with the preset's device-to-device spread: a pair at zero
gradient does not drift (per-device compensation), and the effective temperature the
controller reports, rounding included, is the weight variance one step really adds."""

from __future__ import annotations

import math

import pytest
import torch
from dwlab.sim.twin import PRESETS, TwinArray

from dwlab.config import ControllerConfig
from dwlab.sgld.controller import build_optimizer
from dwlab.sgld.refine import start_refining

# Steps a tenth of the preset's (a 1 ns pulse), spreads as in the preset (10 % on steps
# and noise, 3 % on conductances).
FINE = PRESETS["continuous_dw"].replace(
    mu_push=0.001, mu_pull=0.0009, sigma_push=0.004 * math.sqrt(0.1),
    sigma_pull=0.004 * math.sqrt(0.1),
)
N_DATA, LR = 1000, 0.1


def pair_controller(bits: int, params=FINE, n_out: int = 100, **cfg):
    torch.manual_seed(0)
    model = torch.nn.Linear(100, n_out, bias=False)
    with torch.no_grad():
        model.weight.normal_(0.0, 0.05)
    config = ControllerConfig(scheme="push_pull_pair", lr=LR, update_bits=bits, **cfg)
    opt = build_optimizer(model, config, dataset_size=N_DATA, seed=3,
                          array_factory=lambda n, s, o: TwinArray(s, params, seed=40 + o))
    return model, opt


def zero_gradient_drift(steps_from: str, steps: int = 40, warm_up: int = 0) -> float:
    """RMS over weights of the mean change per step at zero gradient (no prior), in largest
    updates, with the step-to-step noise's share taken out; over ``steps`` steps after
    ``warm_up``. ``steps_from``: 'calibration' (each device's measured steps, refined
    from the read-backs), 'read-backs' (the array's mean steps, trusted to a quarter of a
    step, then refined) or 'array mean' (the mean steps, not refined)."""
    model, opt = pair_controller(5, prior_sigma=1e6, calibration_pulses=8192,
                                 refine_steps=steps_from != "array mean")
    dw = opt.weights[0]
    if steps_from != "calibration":  # the array's mean steps for every device
        dw.set_steps(float(dw.mu_push.mean()), float(dw.mu_pull.mean()))
        start_refining(dw, (0.25 * dw.mean_step) ** 2, dw.read_variance)
    for _ in range(warm_up):
        model.weight.grad = torch.zeros_like(model.weight)
        opt.step()
    changes = []
    for _ in range(steps):
        before = model.weight.detach().clone()
        model.weight.grad = torch.zeros_like(model.weight)
        opt.step()
        changes.append(model.weight.detach() - before)
    c = torch.stack(changes).double()
    mean = c.mean(0)
    noise = c.var(0) / steps  # what the mean of `steps` noisy changes carries by chance
    drift = math.sqrt(max(0.0, float((mean.square() - noise).mean())))
    return drift / dw.precision(opt.pulse_budget)["largest_update"]


def test_pairs_at_zero_gradient_do_not_drift_and_do_without_compensation():
    compensated, blind = zero_gradient_drift("calibration"), zero_gradient_drift("array mean")
    print(f"zero-gradient drift per step, in largest updates: compensated "
          f"{compensated:.4f}, array-mean steps {blind:.4f}")
    assert compensated < 0.01
    assert blind > 0.02  # the same check catches the drift when compensation is gone


def test_the_read_backs_find_the_steps_that_stop_the_drift():
    """From the array's mean steps alone (drift 0.05 per step, above), refining them from
    the read-backs brings the drift under the same bound after 20 updates."""
    drift = zero_gradient_drift("read-backs", warm_up=20)
    print(f"zero-gradient drift per step from the read-backs, in largest updates: {drift:.4f}")
    assert drift < 0.01


@pytest.mark.parametrize("bits", [1, 2, 7])
def test_effective_temperature_with_rounding_is_the_measured_variance(bits):
    """One step with desired changes spread over a few counts: the variance of the weight
    change around the desired one is ``2 eps T_eff`` (device noise and rounding), within
    5 %; without the rounding term it would be far off at 1 and 2 bits."""
    quiet = FINE.replace(read_noise_siemens=0.0)  # the step's noise alone
    # Steps measured from 32768 pulses: with the default 2048, each device's calibration
    # error (3 % of a step) moves its 63 pushes and 63 pulls by a bias that, over the
    # devices, adds 3.5 % to the variance at 7 bits (the training's read-backs refine it
    # away, one step does not).
    model, opt = pair_controller(bits, quiet, n_out=200, calibration_pulses=32768)
    dw = opt.weights[0]
    k = opt.pulse_budget
    unit = dw.precision(k)["weight_unit"]
    gen = torch.Generator().manual_seed(5)
    desired = (torch.rand(model.weight.shape, generator=gen) * 2 - 1) * 0.4 * min(k, 4) * unit
    prior = 1.0 / N_DATA
    before = model.weight.detach().clone()
    model.weight.grad = -desired / LR - prior * before
    opt.step()
    error = (model.weight.detach() - before - desired).double()
    stats = opt.last_stats
    expected = 2 * stats.step_size * stats.effective_temperature
    print(f"{bits} bits: measured {float(error.var()):.4g}, 2 eps T_eff {expected:.4g}, "
          f"rounding share {stats.rounding_share:.2f}")
    assert stats.steps_clipped == 0
    assert float(error.mean()) == pytest.approx(0.0, abs=0.05 * math.sqrt(expected))
    assert float(error.var()) == pytest.approx(expected, rel=0.05)
    if bits <= 2:  # the device noise alone would miss a good part of it
        assert stats.rounding_share > (0.3 if bits == 1 else 0.05)


def common_mode_spread(gain: float, steps: int = 60) -> tuple[float, float]:
    """Pairs at zero gradient, 7 bits, no prior: the rms common-mode offset from the window
    centre after ``steps`` steps (in half ranges), and how far the weights moved (rms, in
    half windows)."""
    model, opt = pair_controller(7, prior_sigma=1e6, centring_gain=gain,
                                 recentre_margin=0.0)  # no backstop: the in-budget part alone
    dw = opt.weights[0]
    start = model.weight.detach().clone()
    for _ in range(steps):
        model.weight.grad = torch.zeros_like(model.weight)
        opt.step()
    g = dw.last_read.view(2, -1).double()
    common = (0.5 * (g[0] + g[1]) - dw.g_mid) / dw.g_half
    moved = (model.weight.detach() - start).double() / (0.5 * dw.precision(127)["weight_window"])
    return float(common.square().mean().sqrt()), float(moved.square().mean().sqrt())


def test_centring_holds_the_common_mode_without_touching_the_weights():
    """Nothing else restores a pair's common mode: each device's 127 pulses add their noise
    every step, and free it diffuses like the weights (measured: 0.24 half ranges after 60
    steps). Centring at gain 0.25 holds it near a few steps' noise (measured 0.03), within
    the pulse budget, so the weights diffuse the same either way."""
    held, moved_held = common_mode_spread(0.25)
    free, moved_free = common_mode_spread(0.0)
    print(f"common mode after 60 steps (half ranges): centred {held:.3f}, free {free:.3f}; "
          f"weights moved {moved_held:.3f} / {moved_free:.3f} half windows")
    assert held < 0.06
    assert free > 3 * held  # the same check catches a missing centring
    assert moved_held == pytest.approx(moved_free, rel=0.15)


def test_walls_held_at_a_track_end_do_not_teach_false_steps():
    """100 pairs hold the largest weight (the + device at the top end, the - device at the
    bottom) and the gradient keeps pushing them out: their reads do not move, which says
    nothing of their steps. They start again every update, so their steps stay what they
    were; the other devices are refined.
    (Every device's window is the nominal one here: the controller knows the track ends
    only from it, so a device whose window lies off it by more than the saturated zone
    is not recognised at its end.)"""
    same_windows = FINE.replace(g_spread=0.0)
    model, opt = pair_controller(5, same_windows, prior_sigma=1e6, calibration_pulses=8192)
    dw = opt.weights[0]
    dw.array.x.view(2, -1)[:, :100] = torch.tensor([[1.0], [0.0]])
    dw.accept_read(dw.read(1))
    held = torch.zeros(model.weight.numel(), dtype=torch.bool)
    held[:100] = True
    steps_before = torch.stack((dw.mu_push, dw.mu_pull)).view(2, 2, -1).clone()
    for _ in range(30):
        grad = torch.zeros(model.weight.numel())
        grad[held] = -1.0  # w up: the + device pushed further up
        model.weight.grad = grad.view_as(model.weight)
        opt.step()
    steps = torch.stack((dw.mu_push, dw.mu_pull)).view(2, 2, -1)
    change = (steps / steps_before - 1).abs().amax((0, 1))  # per weight, its 4 steps
    print(f"steps changed by (largest, median): held {float(change[held].max()):.4f}, "
          f"others {float(change[~held].median()):.4f}")
    assert float(change[held].max()) == 0.0
    assert float(change[~held].median()) > 0.001  # the others did learn
