"""Posterior sampling: autocorrelation time and effective sample size against a process
known in closed form, the stationarity test's size and power, when sampling starts, the
digital parameters' temperature, and model averaging against the final weights."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import yaml
from dwlab.sim.twin import PRESETS, TwinArray

from dwlab.app.cli import main
from dwlab.app.training.chain import autocorrelation_time, stationarity
from dwlab.app.training.posterior import ChainMonitor
from dwlab.config import ControllerConfig, ScheduleConfig
from dwlab.records import read_table
from dwlab.sgld.controller import build_optimizer
from dwlab.sgld.maths import learning_rate_at


def ar1(phi: float, n: int, rng: np.random.Generator, chains: int = 1) -> np.ndarray:
    """``x_t = phi x_{t-1} + e_t`` started in its stationary law (unit variance); its
    integrated autocorrelation time is ``(1 + phi) / (1 - phi)``."""
    noise = rng.standard_normal((chains, n)) * math.sqrt(1 - phi**2)
    x = np.empty((chains, n))
    x[:, 0] = rng.standard_normal(chains)
    for t in range(1, n):
        x[:, t] = phi * x[:, t - 1] + noise[:, t]
    return x


@pytest.mark.parametrize("phi", [0.0, 0.5, 0.9])
def test_autocorrelation_time_of_an_ar1_process(phi):
    """tau within 10 % of (1 + phi) / (1 - phi): with n = 2^18 the estimator's relative
    spread is about sqrt(2 (2M + 1) / n) <= 4 % (Sokal window M ~ 5 tau)."""
    x = ar1(phi, 2**18, np.random.default_rng(1))[0]
    measured = autocorrelation_time(x)
    exact = (1 + phi) / (1 - phi)
    assert measured.reliable
    assert measured.tau == pytest.approx(exact, rel=0.10)
    assert measured.ess == pytest.approx(len(x) / exact, rel=0.10)


def test_effective_sample_size_predicts_the_spread_of_chain_means():
    """What ESS is for: over 400 independent AR(1) chains (phi = 0.8, tau = 9), the variance
    of the chain means equals var / ESS averaged over the chains (within 20 %; the spread
    of a variance from 400 chains is about 7 %). Taking the samples as independent
    (ESS = n) would be nine times off."""
    chains = ar1(0.8, 1000, np.random.default_rng(2), chains=400)
    predicted = np.mean([c.var(ddof=1) / autocorrelation_time(c).ess for c in chains])
    observed = chains.mean(axis=1).var(ddof=1)
    assert predicted == pytest.approx(observed, rel=0.20)


def test_thinning_by_tau_leaves_nearly_independent_samples():
    x = ar1(0.9, 2**17, np.random.default_rng(3))[0]
    step = math.ceil(autocorrelation_time(x).tau)
    thinned = x[::step]
    lag1 = np.corrcoef(thinned[:-1], thinned[1:])[0, 1]
    assert step >= 15 and abs(lag1) < 0.2  # phi^19 = 0.14


def test_stationarity_test_has_its_size_on_stationary_chains():
    """Stationary traces pass: |z| > 2 on about 5 % of uncorrelated ones and 9 % of AR(1)
    traces with phi = 0.5 (200 steps; measured 4.0 % and 9.4 %): at most 7 % and 12 % of
    1000 (binomial spread under 1 %). Ignoring the autocorrelation (tau = 3) flags far more."""
    rng = np.random.default_rng(4)
    for phi, limit in ((0.0, 0.07), (0.5, 0.12)):
        traces = ar1(phi, 200, rng, chains=1000)
        flagged = np.mean([not stationarity(t).stationary for t in traces])
        print(f"phi {phi}: stationary traces flagged {flagged:.3f}")
        assert flagged <= limit, phi


def test_stationarity_test_flags_a_chain_still_descending():
    """A loss that still falls (an exponential descent of 0.5 over the window, in AR(1)
    noise of unit spread) fails the test in at least 95 % of 100 traces."""
    rng = np.random.default_rng(5)
    steps = np.arange(200)
    descent = 0.5 + 0.5 * np.exp(-steps / 150)
    traces = ar1(0.5, 200, rng, chains=100) + 8 * descent
    flagged = np.mean([not stationarity(t).stationary for t in traces])
    assert flagged >= 0.95


def test_stationarity_needs_a_window():
    with pytest.raises(ValueError, match="at least 8"):
        stationarity([1.0, 2.0, 3.0])


def test_chain_monitor_waits_for_stationarity_then_thins_by_tau():
    """Sampling starts at the first test after the burn-in where the loss is flat, never
    during the descent; the thinning follows the projection trace's autocorrelation time
    (tau = 9), measured again at every sample on the growing trace."""
    rng = np.random.default_rng(6)
    n = 3000
    loss = np.where(np.arange(n) < 300, 5.0 - np.arange(n) / 60, 0.0)
    loss = loss + rng.standard_normal(n) * 0.1
    projection = ar1(0.8, n, rng)[0]
    monitor = ChainMonitor(min_start=50, window=100, z_limit=2.0, thinning=None)
    sampled = [step for step in range(1, n + 1)
               if monitor.record(step, float(loss[step - 1]), float(projection[step - 1]))]
    assert monitor.start is not None and 400 <= monitor.start <= 450  # a full flat window
    assert sampled[0] > monitor.start
    gaps = np.diff(sampled)
    assert 7 <= gaps[-20:].mean() <= 11
    summary = monitor.summary(n, sampled[-10:])
    assert summary["sampling_from_step"] == monitor.start and not summary["warnings"]
    assert summary["autocorrelation_steps"] == pytest.approx(9, rel=0.2)


def test_chain_monitor_warns_when_burn_in_fills_the_training():
    monitor = ChainMonitor(min_start=100, window=20, z_limit=None, thinning=5)
    for step in range(1, 101):
        monitor.record(step, 1.0, 0.0)
    warnings = monitor.summary(100, [])["warnings"]
    assert any("as long as the training" in w for w in warnings)
    assert any("no posterior sample" in w for w in warnings)


def test_anneal_schedule_decays_to_its_floor_then_stays():
    anneal = ScheduleConfig(kind="anneal", decay_steps=100, floor=0.2)
    assert learning_rate_at(0.5, anneal, 0) == pytest.approx(0.5)
    assert learning_rate_at(0.5, anneal, 50) == pytest.approx(0.5 * 0.6)
    assert learning_rate_at(0.5, anneal, 100) == pytest.approx(0.1)
    assert learning_rate_at(0.5, anneal, 1000) == pytest.approx(0.1)


class DeviceAndDigital(torch.nn.Module):
    """One device-backed matrix and one large digital vector (20,000 values)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.weight = torch.nn.Parameter(torch.randn(50, 40) * 0.1)
        self.scale = torch.nn.Parameter(torch.zeros(20_000))


def test_digital_parameters_are_sampled_at_the_devices_temperature():
    """At zero gradient a digital parameter moves by noise of variance 2 lr T / N, with T
    the temperature the devices realised in that step, not the configured one (far from
    it here). 20,000 values: the variance is known to about 1 %."""
    twin_params = PRESETS["continuous_dw"].replace(mu_push=0.001, mu_pull=0.0009,
                                                   sigma_push=0.0013, sigma_pull=0.0013)
    model = DeviceAndDigital()
    cfg = ControllerConfig(scheme="push_pull_pair", lr=0.5, update_bits=7,
                           temperature=1.0)
    n_data = 1000
    opt = build_optimizer(model, cfg, dataset_size=n_data,
                          array_factory=lambda name, shape, offset: TwinArray(
                              shape, twin_params, seed=3 + offset))
    model.weight.grad = torch.zeros_like(model.weight)
    model.scale.grad = torch.zeros_like(model.scale)
    opt.step()
    realised = opt.last_stats.effective_temperature
    assert 0 < realised < cfg.temperature / 2
    expected = 2 * cfg.lr * realised / n_data
    assert float(model.scale.detach().var()) == pytest.approx(expected, rel=0.05)


# -- model averaging through the real training loop ---------------------------------------

AVERAGING_TRAINING = {"width": 32, "epochs": 10, "limit_train": 512, "limit_test": 300,
                      "burn_in_epochs": 4, "max_samples": 8, "checkpoint_every_steps": 50,
                      "bma_every_epoch": False, "compare_float": False}


@pytest.fixture(scope="module")
def averaged_run(tmp_path_factory, digits_twin_config):
    tmp = tmp_path_factory.mktemp("posterior")
    data = digits_twin_config("averaging", 0, update_bits=7, **AVERAGING_TRAINING)
    config = tmp / "averaging.yaml"
    config.write_text(yaml.safe_dump(data))
    run_dir = tmp / "run"
    assert main(["train", "--config", str(config), "--run-dir", str(run_dir),
                 "--no-progress"]) == 0
    return run_dir / "push_pull_pair-7bit"


@pytest.mark.xfail(strict=True, reason=(
    "measured after bench precision and per-device compensation landed: model average NLL "
    "0.387 against the final weights' 0.308 (fixed-range ablation: 0.357 against 0.300); "
    "the chain at this size is still too hot and saturating. Strict: "
    "the day the claim holds again this marker must go."))
def test_model_average_has_lower_held_out_nll_than_the_final_weights(averaged_run):
    """The claim that makes the samples worth keeping: on held-out digits the average over
    the posterior samples of the device chain predicts better (lower NLL) than its final
    weights, by at least 1 % (measured: 3.0 %)."""
    result = json.loads((averaged_run / "result.json").read_text())
    assert result["prediction"] == "bma" and result["samples"] >= 4
    bma, final = result["bma"]["nll"], result["final_weights"]["nll"]
    print(f"held-out NLL: model average {bma:.4f}, final weights {final:.4f}")
    assert bma < 0.99 * final


def test_sampling_diagnostics_are_recorded(averaged_run):
    result = json.loads((averaged_run / "result.json").read_text())
    chain = result["chain"]
    start = chain["sampling_from_step"]
    assert start >= 4 * 8 and abs(chain["stationarity_z"]) <= 2.0
    assert chain["thinning_steps"] >= 1 and chain["ess_samples"] > 0
    epochs = read_table(averaged_run / "epochs.csv")
    assert epochs[-1]["sampling_from_step"] == str(start)
    steps = read_table(averaged_run / "steps.csv")
    # The chain moves at every step (distinct values overall would be a birthday problem:
    # the projection is recorded to 8 digits and stays within a narrow band).
    projection = [r["weight_projection"] for r in steps]
    assert all(a != b for a, b in zip(projection[:-1], projection[1:], strict=True))
