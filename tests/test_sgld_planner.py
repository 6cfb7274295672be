"""The pulse planner on tensors alone (no array), and the step statistics record."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from dwlab.core.schemes import Scheme
from dwlab.core.types import PulseShape
from dwlab.sgld.planner import DeviceScale, TensorToPlan, plan_update, plan_updates
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
def test_each_device_of_a_pair_carries_half_the_change(desired):
    planned = plan(Scheme.PUSH_PULL_PAIR, desired)
    push, pull = planned.plan.push, planned.plan.pull
    assert push.shape == (2, N) and torch.all(push + pull == K)
    assert planned.pulses == 2 * K * N
    unit = SCALE.alpha * (SCALE.mu_push + SCALE.mu_pull)
    for side, sign in ((0, 1), (1, -1)):
        moved = SCALE.alpha * mean_change(push[side], pull[side], SCALE)
        assert moved == pytest.approx(sign * desired / 2, abs=0.01 * unit), side


def test_per_device_steps_compensate_each_device():
    """Devices with their own push and pull steps: each one's mean move is the planned
    one, so a weight at zero gradient does not drift whatever its devices' asymmetry."""
    gen = torch.Generator().manual_seed(1)
    mu_push = 1e-6 * (1 + 0.3 * torch.rand(2, N, generator=gen))
    mu_pull = 1e-6 * (1 + 0.3 * torch.rand(2, N, generator=gen))
    scale = DeviceScale(alpha=100.0, mu_push=mu_push, mu_pull=mu_pull)
    planned = plan(Scheme.PUSH_PULL_PAIR, 0.0, scale=scale)
    push, pull = planned.plan.push.double(), planned.plan.pull.double()
    moved = push * mu_push - pull * mu_pull  # each device's planned mean move
    pushy = (mu_push - mu_pull) > 0.1e-6  # devices whose push is clearly the larger step
    excess = float((mu_push - mu_pull)[pushy].mean())
    # only the unbiased rounding is left, whatever a device's asymmetry
    assert float(moved[pushy].mean()) == pytest.approx(0.0, abs=0.02 * K * excess)
    assert float(moved.abs().max()) <= 2.6e-6  # within one count's step of zero
    # with the array's mean steps instead, these devices drift by half the budget times it
    mean_scale = DeviceScale(alpha=100.0, mu_push=float(mu_push.mean()),
                             mu_pull=float(mu_pull.mean()))
    blind = plan(Scheme.PUSH_PULL_PAIR, 0.0, scale=mean_scale).plan
    blind_moved = blind.push.double() * mu_push - blind.pull.double() * mu_pull
    assert float(blind_moved[pushy].mean()) == pytest.approx(K / 2 * excess, rel=0.1)


@pytest.mark.parametrize("rounding", ["stochastic", "nearest"])
def test_rounding_variance_is_what_the_counts_show(rounding):
    """The rounding variance the planner reports is the variance of the rounded counts
    around their real value (stochastic), or their squared error (nearest)."""
    weight = torch.zeros(N)
    desired = 0.37 * SCALE.alpha * (SCALE.mu_push + SCALE.mu_pull)  # 0.37 of a count
    grad = torch.full_like(weight, -desired)
    gen = torch.Generator().manual_seed(2)
    planned = plan_update(Scheme.PUSH_PULL, grad, weight, SCALE, lr=1.0, prior=0.0,
                          budget=K, pulse=PULSE, generator=gen, rounding=rounding)
    unit = SCALE.alpha * (SCALE.mu_push + SCALE.mu_pull)
    real = desired / unit + K * SCALE.mu_pull / (SCALE.mu_push + SCALE.mu_pull)
    error = (planned.plan.push.double() - real) * unit
    assert planned.rounding_variance / N == pytest.approx(float(error.square().mean()),
                                                          rel=0.02)
    if rounding == "stochastic":  # unbiased
        assert float(error.mean()) == pytest.approx(0.0, abs=0.01 * unit)
    else:  # one value for all, no spread
        assert len(planned.plan.push.unique()) == 1


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
                          recentred_pairs=0, steps_clipped=6, temperature_weight=0.25,
                          rounding_variance=0.25, edge_drift=0.3, edge_devices=2,
                          devices=20),
    ]
    stats = StepStats.total(updates, n_weights=10, lr=0.2, step_size=0.002)
    assert (stats.pulses_sent, stats.devices_clipped, stats.saturated_devices,
            stats.recentred_pairs, stats.steps_clipped) == (150, 1, 3, 3, 10)
    # device noise and rounding both heat the chain
    assert stats.effective_temperature == pytest.approx(1.0 / (2 * 0.002 * 10))
    assert stats.rounding_share == pytest.approx(0.25)
    assert stats.edge_drift == pytest.approx(0.15) and stats.saturated_fraction == 3 / 20
    assert stats.logged() == {
        "pulses_sent": 150, "devices_clipped": 1, "saturated_devices": 3,
        "recentred_pairs": 3, "steps_clipped": 10, "step_size": 0.002,
        "effective_temperature": stats.effective_temperature, "rounding_share": 0.25,
        "edge_drift": 0.15,
    }
    assert StepStats.total([], 0, 0.2, 0.002).effective_temperature == 0.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        stats.pulses_sent = 0  # type: ignore[misc]


@pytest.mark.parametrize("desired", [0.0, 2.6e-3, -2.6e-3])
def test_common_shift_moves_the_common_mode_and_never_the_weight(desired):
    """A common-mode shift is kept to the room the weight change leaves in both devices'
    budgets: the pair's mean differential change is the one planned without it, even when
    the weight change nearly fills the budget (2.6e-3: 13.25 of 15 pushes on one device,
    0.25 on the other), and the common mode moves as far as there is room."""
    weight = torch.zeros(N)
    grad = torch.full_like(weight, -desired)
    shift = torch.full_like(weight, 5 * SCALE.mu_push)  # more than the room at 2.6e-3

    def pair_changes(common_shift):
        planned = plan_update(Scheme.PUSH_PULL_PAIR, grad, weight, SCALE, lr=1.0, prior=0.0,
                              budget=K, pulse=PULSE, generator=torch.Generator().manual_seed(0),
                              common_shift=common_shift)
        push, pull = planned.plan.push.double(), planned.plan.pull.double()
        change = push * SCALE.mu_push - pull * SCALE.mu_pull
        return planned.steps_clipped, float((change[0] - change[1]).mean()) * SCALE.alpha, \
            float((change[0] + change[1]).mean() / 2)

    clipped, diff, common = pair_changes(shift)
    clipped_free, diff_free, common_free = pair_changes(None)
    assert clipped == clipped_free == 0
    assert diff == pytest.approx(diff_free, abs=1e-2 * SCALE.alpha * SCALE.mu_push)
    assert diff == pytest.approx(desired, abs=1e-2 * SCALE.alpha * SCALE.mu_push)
    room = K * SCALE.mu_push - abs(desired) / (2 * SCALE.alpha)
    assert common - common_free == pytest.approx(min(5 * SCALE.mu_push, room), rel=0.01)


@pytest.mark.parametrize("scheme", [Scheme.PUSH_PULL, Scheme.PUSH_PULL_PAIR,
                                    Scheme.GRADIENT_ONLY])
def test_tensors_planned_together_get_the_plans_they_get_alone(scheme):
    """Round-to-nearest draws nothing, so tensors planned end to end must get exactly the
    counts, clipped steps and rounding variance each gets alone: their own alpha, their
    own per-device steps, their own common-mode shift and pulse shape."""
    gen = torch.Generator().manual_seed(3)
    shapes, alphas = [(4, 3, 3, 3), (50,), (7, 11)], [80.0, 120.0, 100.0]
    tensors = []
    for shape, alpha, width, size in zip(shapes, alphas, (1e-9, 2e-9, 1e-9), (1e-3, 0.05, 1.0),
                                         strict=True):
        devices = (2, *shape) if scheme.is_pair else shape
        steps = [1e-6 * (1 + 0.3 * torch.rand(devices, generator=gen)) for _ in range(2)]
        weight = 0.01 * torch.randn(shape, generator=gen)
        grad = size * torch.randn(shape, generator=gen)
        shift = 2e-6 * torch.randn(shape, generator=gen) if scheme.is_pair else None
        tensors.append(TensorToPlan(grad, weight, DeviceScale(alpha, *steps),
                                    PulseShape(1.0, width), shift))
    options = dict(lr=0.05, prior=0.3, budget=K, rounding="nearest")
    together = plan_updates(scheme, tensors, generator=torch.Generator(), **options).updates
    assert sum(p.steps_clipped for p in together) > 0  # the budget clips some steps
    for t, joint in zip(tensors, together, strict=True):
        alone = plan_update(scheme, t.grad, t.weight, t.scale, pulse=t.pulse,
                            common_shift=t.common_shift, generator=torch.Generator(),
                            **options)
        assert joint.plan.push_shape == joint.plan.pull_shape == t.pulse
        assert torch.equal(joint.plan.push, alone.plan.push)
        assert torch.equal(joint.plan.pull, alone.plan.pull)
        assert (joint.pulses, joint.steps_clipped) == (alone.pulses, alone.steps_clipped)
        assert joint.rounding_variance == pytest.approx(alone.rounding_variance, rel=1e-5)
