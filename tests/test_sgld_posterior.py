"""Push-pull pairs on a twin with the preset's device-to-device spread sample posteriors
known in closed form; each check is also run with the physics broken on purpose (noise
mis-scaled, compensation removed), and must then fail: a test that could not fail would
say nothing.

Bayesian linear regression: ``y = X w + noise``, noise ``N(0, s_n^2)``, prior
``N(0, s_p^2 I)``. The posterior is ``N(m, A^-1)`` with ``A = X^T X / s_n^2 + I / s_p^2`` and
``m = A^-1 X^T y / s_n^2``. SGLD with full-batch gradients at step ``eps`` and temperature
``T`` is then an Euler-discretised Ornstein-Uhlenbeck process whose stationary law is
``N(m, S)``, ``S = B S B^T + 2 eps T I``, ``B = I - eps A``: the tempered posterior
``T A^-1`` up to a discretisation factor of order ``eps A / 2`` (a few per cent here),
computed exactly below. Many independent chains (one output row each) run in parallel on
one array, so a few hundred steps give thousands of samples.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from dwlab.sim.twin import PRESETS, TwinArray

from dwlab.config import ControllerConfig
from dwlab.sgld.controller import build_optimizer
from dwlab.sgld.refine import start_refining

PRESET = PRESETS["continuous_dw"]  # 10 % spread of steps and noise, 3 % of conductance
N_DATA, D, CHAINS = 64, 2, 1000
NOISE_SIGMA, PRIOR_SIGMA = 0.5, 1.0
EPS_A = 0.05  # eps times the posterior's mean curvature: steps small beside its width
BITS = 3
BURN_IN, SAMPLE_EVERY, SAMPLES = 150, 20, 12


def regression_problem() -> tuple[torch.Tensor, torch.Tensor, np.ndarray, np.ndarray]:
    """Data with correlated inputs, the posterior precision ``A`` and mean ``m``."""
    gen = torch.Generator().manual_seed(4)
    z = torch.randn(N_DATA, D, generator=gen, dtype=torch.float64)
    x = torch.stack((z[:, 0], 0.6 * z[:, 0] + 0.8 * z[:, 1]), 1)
    y = x @ torch.tensor([0.35, -0.25], dtype=torch.float64)
    y += NOISE_SIGMA * torch.randn(N_DATA, generator=gen, dtype=torch.float64)
    xn, yn = x.numpy(), y.numpy()
    a = xn.T @ xn / NOISE_SIGMA**2 + np.eye(D) / PRIOR_SIGMA**2
    m = np.linalg.solve(a, xn.T @ yn / NOISE_SIGMA**2)
    return x.float(), y.float(), a, m


def euler_covariance(a: np.ndarray, eps: float, temperature: float) -> np.ndarray:
    """Stationary covariance of ``w <- w - eps A (w - m) + sqrt(2 eps T) xi``."""
    b = np.eye(D) - eps * a
    q = 2 * eps * temperature * np.eye(D)
    vec = np.linalg.solve(np.eye(D * D) - np.kron(b, b), q.reshape(-1))
    return vec.reshape(D, D)


def sample_posterior(break_with: str | None = None, calibration_pulses: int = 2048):
    """Run the chains; returns (samples (n, D), the posterior mean, the expected
    covariance at the temperature the controller reports, that temperature).

    ``break_with``: 'noise' makes every device 1.5x as noisy as the array says (the
    controller maps the wrong temperature); 'calibration' forgets each device's measured
    steps (the array's mean push and pull steps, trusted to a quarter of a step), leaving
    the refinement from the read-backs to find them; 'compensation' does that and turns
    the refinement off.
    """
    x, y, a, m = regression_problem()
    eps = EPS_A / float(np.trace(a) / D)
    lr = eps * N_DATA

    def factory(name, shape, seed_offset):
        twin = TwinArray(shape, PRESET, seed=30 + seed_offset)
        if break_with == "noise":
            twin.sigma_push.mul_(1.5)
            twin.sigma_pull.mul_(1.5)
        return twin

    torch.manual_seed(0)
    model = torch.nn.Linear(D, CHAINS, bias=False)
    with torch.no_grad():
        model.weight.normal_(0.0, 0.1)
    cfg = ControllerConfig(scheme="push_pull_pair", lr=lr, temperature=1.0,
                           prior_sigma=PRIOR_SIGMA, weight_scale="temperature",
                           update_bits=BITS, calibration_pulses=calibration_pulses,
                           refine_steps=break_with != "compensation")
    opt = build_optimizer(model, cfg, dataset_size=N_DATA, array_factory=factory, seed=2)
    if break_with in ("calibration", "compensation"):
        dw = opt.weights[0]
        dw.set_steps(float(dw.mu_push.mean()), float(dw.mu_pull.mean()))
        start_refining(dw, (0.25 * dw.mean_step) ** 2, dw.read_variance)
    samples, temperatures = [], []
    for step in range(BURN_IN + SAMPLE_EVERY * SAMPLES):
        opt.zero_grad()
        pred = model(x)  # (N, chains): every chain sees all the data
        loss = ((pred - y[:, None]) ** 2).sum(1).mean() / (2 * NOISE_SIGMA**2)
        loss.backward()
        opt.step()
        temperatures.append(opt.last_stats.effective_temperature)
        if step >= BURN_IN and (step - BURN_IN) % SAMPLE_EVERY == SAMPLE_EVERY - 1:
            samples.append(model.weight.detach().double().clone())
    # the window holds the posterior (pairs drifting in common mode are re-centred)
    assert opt.last_stats.saturated_fraction < 0.01
    t_eff = float(np.mean(temperatures))
    return torch.cat(samples).numpy(), m, euler_covariance(a, eps, t_eff), t_eff


def posterior_errors(samples: np.ndarray, m: np.ndarray, cov: np.ndarray
                     ) -> tuple[float, float]:
    """Largest mean error in posterior standard deviations, and largest relative error
    of the covariance entries (relative to the diagonal's scale)."""
    sd = np.sqrt(np.diag(cov))
    mean_error = float(np.max(np.abs(samples.mean(0) - m) / sd))
    measured = np.cov(samples.T)
    cov_error = float(np.max(np.abs(measured - cov) / np.outer(sd, sd)))
    return mean_error, cov_error


MEAN_TOLERANCE = 0.1  # posterior standard deviations
COV_TOLERANCE = 0.15  # of the variances (sampling error and residual calibration bias)


def test_push_pull_pairs_sample_the_regression_posterior():
    samples, m, cov, t_eff = sample_posterior()
    mean_error, cov_error = posterior_errors(samples, m, cov)
    print(f"T_eff {t_eff:.3f}, mean error {mean_error:.3f} sd, covariance error "
          f"{cov_error:.3f}")
    assert 1.0 <= t_eff < 1.7  # T = 1 from the device noise; at 3 bits rounding adds ~60 %
    assert mean_error < MEAN_TOLERANCE and cov_error < COV_TOLERANCE


def test_the_read_backs_alone_find_each_devices_steps():
    """Without the calibration (every device given the array's mean steps), refining the
    steps from the read-backs still samples the posterior; the same run without the
    refinement fails (below)."""
    samples, m, cov, _ = sample_posterior("calibration")
    mean_error, cov_error = posterior_errors(samples, m, cov)
    print(f"calibration forgotten: mean error {mean_error:.3f} sd, covariance error "
          f"{cov_error:.3f}")
    assert mean_error < MEAN_TOLERANCE and cov_error < COV_TOLERANCE


@pytest.mark.parametrize("broken", ["noise", "compensation"])
def test_the_posterior_check_fails_when_the_physics_is_broken(broken):
    """The same check, with the noise mis-scaled or the compensation removed, fails."""
    samples, m, cov, _ = sample_posterior(broken)
    mean_error, cov_error = posterior_errors(samples, m, cov)
    print(f"{broken} broken: mean error {mean_error:.3f} sd, covariance error {cov_error:.3f}")
    assert mean_error > MEAN_TOLERANCE or cov_error > COV_TOLERANCE
