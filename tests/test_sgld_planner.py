"""The pulse planner on tensors alone (no array), and the step statistics record."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from dwlab.core.schemes import Scheme
from dwlab.core.types import PulseShape
from dwlab.sgld.planner import DeviceScale, plan_update
from dwlab.sgld.stats import StepStats, TensorUpdateStats

PULSE = PulseShape(1.0, 1e-9)
SCALE = DeviceScale(alpha=100.0, mu_push=1.1e-6, mu_pull=0.9e-6)
K = 15
N = 200_000  # weights: enough draws that the rounding's mean is sharp


def plan(scheme: Scheme, desired: float, *, scale: DeviceScale = SCALE, seed: int = 0,
         weight: torch.Tensor | None = None):
    """Plan for ``N`` weights whose desired change is ``desired`` each (lr 1, no prior)."""
    weight = torch.zeros(N) if weight is None else weight
    grad = torch.full_like(weight, -desired)
    gen = torch.Generator().manual_seed(seed)
    return plan_update(scheme, grad, weight, scale, lr=1.0, prior=0.0, budget=K, pulse=PULSE,
                       generator=gen)


def mean_change(push: torch.Tensor, pull: torch.Tensor, scale: DeviceScale) -> float:
    """Mean conductance change per device the counts give (the devices' mean steps)."""
    return float((push * scale.mu_push - pull * scale.mu_pull).double().mean())


@pytest.mark.parametrize("desired", [0.0, 3e-4, -1e-3])
def test_push_pull_spends_the_whole_budget_and_is_unbiased(desired):
    planned = plan(Scheme.PUSH_PULL, desired)
    push, pull = planned.plan.push, planned.plan.pull
    assert push.shape == (N,) and torch.all(push + pull == K)
    assert planned.pulses == K * N and planned.steps_clipped == 0
    assert planned.plan.push_shape == planned.plan.pull_shape == PULSE
    unit = SCALE.alpha * (SCALE.mu_push + SCALE.mu_pull)  # weight of one push-for-pull swap
    assert SCALE.alpha * mean_change(push, pull, SCALE) == pytest.approx(
        desired, abs=0.01 * unit)


@pytest.mark.parametrize("desired", [0.0, 2e-3, -1.3e-3])
def test_pair_moves_the_difference_whatever_the_asymmetry(desired):
    planned = plan(Scheme.PUSH_PULL_PAIR, desired)
    push, pull = planned.plan.push, planned.plan.pull
    assert push.shape == (2, N) and torch.all(push + pull == K)
    # device + gets (n+, n-), device - gets (n-, n+)
    assert torch.equal(push[0], pull[1]) and torch.equal(pull[0], push[1])
    assert planned.pulses == 2 * K * N
    mu_sum = SCALE.mu_push + SCALE.mu_pull
    difference = float((push[0] - pull[0]).double().mean()) * mu_sum
    assert SCALE.alpha * difference == pytest.approx(desired, abs=0.01 * SCALE.alpha * mu_sum)


def test_gradient_only_sends_the_step_alone():
    assert plan(Scheme.GRADIENT_ONLY, 0.0).pulses == 0  # no gradient, no pulse
    desired = 4.3 * SCALE.alpha * SCALE.mu_push  # 4.3 pushes
    planned = plan(Scheme.GRADIENT_ONLY, desired)
    push, pull = planned.plan.push, planned.plan.pull
    assert torch.all(pull == 0) and set(push.unique().tolist()) == {4, 5}
    assert float(push.double().mean()) == pytest.approx(4.3, abs=0.01)
    assert planned.pulses == int(push.sum())
    down = plan(Scheme.GRADIENT_ONLY, -2.5 * SCALE.alpha * SCALE.mu_pull)
    assert torch.all(down.plan.push == 0)
    assert float(down.plan.pull.double().mean()) == pytest.approx(2.5, abs=0.01)


@pytest.mark.parametrize("scheme", [Scheme.PUSH_PULL, Scheme.PUSH_PULL_PAIR,
                                    Scheme.GRADIENT_ONLY])
def test_steps_beyond_the_budget_are_clipped_and_counted(scheme):
    huge = 1e3 * K * SCALE.alpha * SCALE.mu_push
    planned = plan(scheme, huge)
    assert planned.steps_clipped == N
    counts = torch.stack((planned.plan.push, planned.plan.pull))
    assert int(planned.plan.push.max()) == K and 0 <= int(counts.min()) <= int(counts.max()) <= K


def test_planning_is_reproducible_and_leaves_its_inputs_alone():
    weight = torch.linspace(-0.1, 0.1, N)
    grad = torch.full_like(weight, 0.3)
    held_weight, held_grad = weight.clone(), grad.clone()
    plans = []
    for _ in range(2):
        gen = torch.Generator().manual_seed(7)
        planned = plan_update(Scheme.PUSH_PULL, grad, weight, SCALE, lr=1e-3, prior=0.5,
                              budget=K, pulse=PULSE, generator=gen)
        plans.append((planned.plan.push.clone(), planned.plan.pull.clone()))
    assert torch.equal(plans[0][0], plans[1][0]) and torch.equal(plans[0][1], plans[1][1])
    assert torch.equal(weight, held_weight) and torch.equal(grad, held_grad)
    # the prior pulls every weight towards 0: larger weights, fewer pushes
    push = plans[0][0].double()
    assert float(push[: N // 10].mean()) > float(push[-N // 10:].mean())


def test_float_schemes_have_no_plan():
    with pytest.raises(ValueError, match="no pulses"):
        plan(Scheme.FLOAT_SGLD, 0.0)


def test_step_stats_sum_the_tensors_and_log_their_columns():
    updates = [
        TensorUpdateStats(pulses_sent=100, devices_clipped=1, saturated_devices=2,
                          recentred_pairs=3, steps_clipped=4, temperature_weight=0.5),
        TensorUpdateStats(pulses_sent=50, devices_clipped=0, saturated_devices=1,
                          recentred_pairs=0, steps_clipped=6, temperature_weight=0.25),
    ]
    stats = StepStats.total(updates, n_weights=10, lr=0.2, step_size=0.002)
    assert (stats.pulses_sent, stats.devices_clipped, stats.saturated_devices,
            stats.recentred_pairs, stats.steps_clipped) == (150, 1, 3, 3, 10)
    assert stats.effective_temperature == pytest.approx(0.75 / (2 * 0.002 * 10))
    assert stats.logged() == {
        "pulses_sent": 150, "devices_clipped": 1, "saturated_devices": 3,
        "recentred_pairs": 3, "step_size": 0.002, "effective_temperature":
        stats.effective_temperature,
    }
    assert StepStats.total([], 0, 0.2, 0.002).effective_temperature == 0.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        stats.pulses_sent = 0  # type: ignore[misc]
