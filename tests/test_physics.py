"""Unit and distribution tests of the pure physics functions in dwlab.sim.physics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from dwlab.sim import physics

N = 20_000


def ks_statistic(a: torch.Tensor, b: torch.Tensor) -> float:
    """Two-sample Kolmogorov-Smirnov statistic sup |F_a - F_b|."""
    a, b = np.sort(a.cpu().numpy().ravel()), np.sort(b.cpu().numpy().ravel())
    grid = np.concatenate([a, b])
    fa = np.searchsorted(a, grid, side="right") / a.size
    fb = np.searchsorted(b, grid, side="right") / b.size
    return float(np.abs(fa - fb).max())


def ks_critical(n: int, m: int, c_alpha: float = 1.95) -> float:
    """Critical KS distance at alpha = 0.001."""
    return c_alpha * math.sqrt((n + m) / (n * m))


def numpy_pulse_loop(x0, n_push, n_pull, mu_p, sd_p, mu_m, sd_m, rng):
    """Independent oracle: plain per-pulse loop in hardware order (alternate while both
    polarities remain, then the surplus), clipping after every pulse."""
    x = np.array(x0, dtype=np.float64)
    touched = np.zeros(x.shape, dtype=bool)
    for i in range(x.size):
        p, m = int(n_push[i]), int(n_pull[i])
        order = [+1, -1] * min(p, m) + [+1 if p > m else -1] * abs(p - m)
        for s in order:
            step = (mu_p if s > 0 else -mu_m) + (sd_p if s > 0 else sd_m) * rng.standard_normal()
            moved = x[i] + step
            touched[i] |= moved <= 0 or moved >= 1
            x[i] = min(max(moved, 0.0), 1.0)
    return x, touched


def make_args(n, x0, push, pull, mu_p=0.01, sd_p=0.004, mu_m=0.009, sd_m=0.004):
    full = torch.full((n,), 1.0)
    return (torch.full((n,), x0), torch.full((n,), push), torch.full((n,), pull),
            full * mu_p, full * sd_p, full * mu_m, full * sd_m)


def test_drive_factor_is_zero_below_threshold_and_linear_above():
    v_th = torch.tensor([0.5, 0.5, 0.8])
    f = physics.drive_factor(0.6, 2e-8, v_th, 1.0, 1e-8)
    assert f[2] == 0.0
    assert f[0] == pytest.approx((0.6 - 0.5) / (1.0 - 0.5) * 2.0)
    mu, sigma = physics.step_moments(torch.tensor(0.01), torch.tensor(0.004), f[0])
    assert float(mu) == pytest.approx(0.01 * float(f[0]))
    assert float(sigma) == pytest.approx(0.004 * math.sqrt(float(f[0])))


def test_reference_matches_independent_loop_near_the_ends():
    # Walls start close to the bottom end; pulses clip there often.
    gen = torch.Generator().manual_seed(1)
    n = 3000
    args = make_args(n, 0.02, 12, 20)
    x_ref, touched_ref = physics.apply_pulses_reference(*args, generator=gen)
    x_np, touched_np = numpy_pulse_loop(
        np.full(n, 0.02), np.full(n, 12), np.full(n, 20), 0.01, 0.004, 0.009, 0.004,
        np.random.default_rng(2))
    assert ks_statistic(x_ref, torch.from_numpy(x_np)) < ks_critical(n, n)
    se = math.sqrt(0.25 / n)
    assert abs(float(touched_ref.float().mean()) - touched_np.mean()) < 6 * se


def test_reference_pulse_order_matters_with_clipping():
    # From x = 0: hardware order is push (to 0.1) then pull (to 0.05), never clipped;
    # pull first would clip at 0 and end at 0.1.
    args = make_args(4, 0.0, 1, 1, mu_p=0.1, sd_p=0.0, mu_m=0.05, sd_m=0.0)
    x, touched = physics.apply_pulses_reference(*args)
    assert torch.allclose(x, torch.full((4,), 0.05))
    assert not bool(touched.any())
    args = make_args(4, 0.0, 0, 2, mu_p=0.1, sd_p=0.0, mu_m=0.1, sd_m=0.0)
    x, touched = physics.apply_pulses_reference(*args)
    assert torch.equal(x, torch.zeros(4)) and bool(touched.all())


@pytest.mark.parametrize(
    "x0,push,pull,sd",
    [
        (0.5, 40, 24, 0.004),   # far from the ends: closed form
        (0.04, 30, 34, 0.004),  # near the bottom: reflection path
        (0.97, 50, 14, 0.004),  # pushed into the top end: reflection path
        (0.5, 32, 32, 0.08),    # both ends within reach: far end watched and replayed
        (0.3, 40, 10, 0.06),    # drift towards the far end
    ],
)
@pytest.mark.parametrize("few_walls_path", [False, True])
def test_fast_path_matches_reference_in_distribution(x0, push, pull, sd, few_walls_path,
                                                     monkeypatch):
    # Both ways of walking the near walls: split by reach (many walls), or one walk that
    # watches both ends (up to FEW_NEAR_WALLS walls; raised here so all N take it).
    monkeypatch.setattr(physics.fast, "FEW_NEAR_WALLS", N if few_walls_path else 0)
    args = make_args(N, x0, push, pull, sd_p=sd, sd_m=sd)
    x_fast, t_fast = physics.apply_pulses_fast(*args, generator=torch.Generator().manual_seed(3))
    x_ref, t_ref = physics.apply_pulses_reference(
        *args, generator=torch.Generator().manual_seed(4))
    assert ks_statistic(x_fast, x_ref) < ks_critical(N, N)
    assert abs(float(t_fast.float().mean() - t_ref.float().mean())) < 6 * math.sqrt(0.25 / N)
    assert float(x_fast.min()) >= 0.0 and float(x_fast.max()) <= 1.0


def test_one_end_path_matches_reference_with_uneven_counts():
    gen = torch.Generator().manual_seed(8)
    push = torch.randint(0, 40, (N,), generator=gen)
    pull = torch.randint(0, 40, (N,), generator=gen)
    x0 = 0.03 * torch.rand(N, generator=gen)
    mu, sd = torch.full((N,), 0.01), torch.full((N,), 0.005)
    one, t_one = physics.apply_pulses_one_end(x0, push, pull, mu, sd, mu * 0.8, sd, gen)
    ref, t_ref = physics.apply_pulses_reference(x0, push, pull, mu, sd, mu * 0.8, sd, gen)
    assert ks_statistic(one, ref) < ks_critical(N, N)
    # Same devices, so compare the per-device mean displacement through the counts.
    assert abs(float((one - ref).mean())) < 6 * float((one - ref).std()) / math.sqrt(N)
    assert abs(float(t_one.float().mean() - t_ref.float().mean())) < 6 * math.sqrt(0.5 / N)


def test_blocked_walk_matches_reference_on_long_walks(monkeypatch):
    # 300 pairs then a surplus of 60: blocks of 18 rounds. Walls start near the bottom
    # and wander back to it many times, inside blocks whose ends lie above it.
    n = 10_000
    gen = torch.Generator().manual_seed(11)
    x0 = 0.08 * torch.rand(n, generator=gen)
    push, pull = torch.full((n,), 360), torch.full((n,), 300)
    mu, sd = torch.full((n,), 0.004), torch.full((n,), 0.006)
    args = (x0, push, pull, mu, sd, mu * 1.2, sd)
    blocked, t_blocked = physics.apply_pulses_one_end(*args, generator=gen)
    ref, t_ref = physics.apply_pulses_reference(*args, generator=gen)
    assert ks_statistic(blocked, ref) < ks_critical(n, n)
    assert float((blocked == 0).float().mean()) == pytest.approx(
        float((ref == 0).float().mean()), abs=6 * math.sqrt(0.25 / n))
    assert abs(float(t_blocked.float().mean() - t_ref.float().mean())) < 6 * math.sqrt(0.25 / n)
    # Without the pulse-level bridges the dips inside blocks go unclipped: the test can tell.
    monkeypatch.setattr(physics.near_end, "BRIDGE_SIGMAS", -1e9)
    coarse, t_coarse = physics.apply_pulses_one_end(*args, generator=gen)
    assert ks_statistic(coarse, ref) > ks_critical(n, n)


def test_one_end_groups_cover_each_pulsed_wall_once_with_similar_counts():
    counts = torch.tensor([0, 3, 4096, 1, 255, 300, 2, 0, 4000, 7] * 50)
    chunks = physics._similar_count_chunks(counts, chunk_elements=2048)
    covered = torch.cat(chunks)
    assert sorted(covered.tolist()) == (counts > 0).nonzero().squeeze(1).tolist()
    for idx in chunks:
        c = counts[idx]
        assert int(c.max()) < 2 * int(c.min())  # a factor of two at most
        assert idx.numel() == 1 or idx.numel() * int(c.max()) <= 2 * 2048


def test_zero_pulses_leave_walls_alone():
    x = torch.tensor([0.0, 0.3, 1.0])
    z = torch.zeros(3, dtype=torch.long)
    mu = torch.full((3,), 0.01)
    for step in (physics.apply_pulses_fast, physics.apply_pulses_reference,
                 physics.apply_pulses_one_end):
        new, touched = step(x, z, z, mu, mu, mu, mu)
        assert torch.equal(new, x) and not bool(touched.any())


def test_two_state_closed_form_matches_markov_simulation():
    rng = np.random.default_rng(0)
    p_up, p_down = 0.3, 0.2
    cases = [(0.0, 5, 3), (1.0, 2, 6), (0.0, 0, 4), (1.0, 7, 0), (0.0, 10, 10)]
    for start, n_push, n_pull in cases:
        state = torch.full((N,), start)
        new = physics.two_state_pulses(
            state, torch.full((N,), n_push), torch.full((N,), n_pull),
            torch.full((N,), p_up), torch.full((N,), p_down), torch.Generator().manual_seed(1))
        # Monte Carlo of the same pulse order with numpy.
        s = np.full(4000, start)
        order = [+1, -1] * min(n_push, n_pull) + [1 if n_push > n_pull else -1] * abs(
            n_push - n_pull)
        for pol in order:
            u = rng.random(s.size)
            s = np.where(pol > 0, np.where(u < p_up, 1.0, s), np.where(u < p_down, 0.0, s))
        se = math.sqrt(0.25 / N + 0.25 / s.size)
        assert abs(float(new.mean()) - s.mean()) < 6 * se, (start, n_push, n_pull)


def test_two_state_without_switching_keeps_state():
    state = torch.tensor([0.0, 1.0, 1.0])
    zero = torch.zeros(3)
    n = torch.tensor([3, 4, 0])
    assert torch.equal(physics.two_state_pulses(state, n, n.flip(0), zero, zero), state)


def test_mtj_switch_probability_formula():
    p = physics.mtj_switch_probability(
        1e-8, torch.tensor([2.5e-4]), torch.tensor([2.68e-4]), torch.tensor([40.0]), 1e-9)
    tau = 1e-9 * math.exp(40.0 * (1 - 2.5e-4 / 2.68e-4))
    assert float(p) == pytest.approx(1 - math.exp(-1e-8 / tau), rel=1e-5)


def test_pass_probability_formula():
    w = torch.tensor([0.0, 4.63168, 20.0])
    p = physics.pass_probability(w, 4.63168, 2.72741, 0.97813)
    assert float(p[1]) == pytest.approx(1 - 0.97813 + 0.97813 / 2)
    assert float(p[0]) == pytest.approx(1 - 0.97813, abs=1e-5)
    assert float(p[2]) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("size,exact", [(500, True), (50_000, False)])
def test_binomial_fraction_mean_variance_and_lattice(size, exact):
    n_trials = 16
    p = torch.full((size,), 0.3)
    frac = physics.binomial_fraction(n_trials, p, torch.Generator().manual_seed(0))
    assert (n_trials * size <= 1 << 16) == exact
    k = frac * n_trials
    assert torch.allclose(k, k.round(), atol=1e-4)  # multiples of 1/N
    assert float(frac.min()) >= 0 and float(frac.max()) <= 1
    var = 0.3 * 0.7 / n_trials
    assert abs(float(frac.mean()) - 0.3) < 6 * math.sqrt(var / size)
    assert float(frac.var()) == pytest.approx(var, rel=6 * math.sqrt(2 / size) + 0.02)


def test_notches_sorted_inside_track_and_nearest():
    notches = physics.notch_positions(5, 0.03, (1000,), torch.Generator().manual_seed(0))
    assert notches.shape == (5, 1000)
    assert bool((notches[1:] >= notches[:-1]).all())
    assert bool((notches[0] == 0).all()) and bool((notches[-1] == 1).all())
    assert float(notches[2].std()) == pytest.approx(0.03, rel=0.15)
    x = torch.full((1000,), 0.6)
    snapped = physics.nearest_notch(x, notches)
    dist = (notches - x).abs()
    assert torch.equal((snapped - x).abs(), dist.min(dim=0).values)


def test_relax_moves_towards_target():
    x = torch.tensor([0.0, 0.5, 1.0])
    out = physics.relax(x, 2.0, 0.5, 0.5)
    assert torch.allclose(out, 0.5 + (x - 0.5) * math.exp(-1.0))


def test_parallel_normal_noise_is_standard_independent_and_seeded():
    n = 1 << 21  # large enough for the chunked, threaded draw
    a = physics.normal_(torch.empty(n), torch.Generator().manual_seed(7), std=2.0)
    b = physics.normal_(torch.empty(n), torch.Generator().manual_seed(7), std=2.0)
    assert torch.equal(a, b)
    assert abs(float(a.mean())) < 6 * 2.0 / math.sqrt(n)
    assert float(a.std()) == pytest.approx(2.0, rel=0.005)
    chunks = a.view(4, -1)
    # Chunks come from distinct generators: no chunk repeats another.
    corr = torch.corrcoef(chunks)
    assert float((corr - torch.eye(4)).abs().max()) < 6 / math.sqrt(n / 4)
    z = torch.from_numpy(np.random.default_rng(0).standard_normal(n).astype(np.float32))
    assert ks_statistic(a[: n // 4] / 2.0, z[: n // 4]) < ks_critical(n // 4, n // 4)


def test_one_end_path_with_far_end_matches_reference_on_a_short_track():
    # Walls wander over the whole track and hit both ends often.
    gen = torch.Generator().manual_seed(9)
    args = make_args(N, 0.3, 20, 20, sd_p=0.15, sd_m=0.15)
    both, t_both = physics.apply_pulses_one_end(*args, generator=gen, far_end=True)
    ref, t_ref = physics.apply_pulses_reference(*args, generator=gen)
    assert ks_statistic(both, ref) < ks_critical(N, N)
    assert abs(float(t_both.float().mean() - t_ref.float().mean())) < 6 * math.sqrt(0.5 / N)
    near_only, _ = physics.apply_pulses_one_end(*args, generator=gen, far_end=False)
    assert float(near_only.max()) == 1.0  # clamped, but the far end was not modelled:
    assert ks_statistic(near_only, ref) > ks_critical(N, N)  # the test can tell
