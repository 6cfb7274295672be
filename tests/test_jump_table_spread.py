"""The spread of a jump-table twin's devices, and how its held-out check counts them.

Each twin device copies a measured device from a few dozen recorded steps and replays read
noise recorded over 100 reads, yet its steps must be as spread, device by device, as the
measured device's (the held-out variance test compares mean log variances per device), and
its read noise must jump between levels as the device's does. Copies of one source device
are not independent; the check must count them once."""

from __future__ import annotations

import numpy as np
import torch
from dwlab.sim.calibration import Steps
from dwlab.sim.calibration.estimate import Calibration
from dwlab.sim.calibration.goodness import _per_device, compare_condition
from dwlab.sim.foreign import ForeignArray
from dwlab.sim.jump_table import JumpTable, JumpTableArray, build_jump_table
from dwlab.sim.presets import PRESETS

from dwlab.core.types import PulsePlan, PulseShape

SHAPE = PulseShape(1.0, 1e-8)
G_MIN, G_MAX = 2.5e-4, 5e-4


def memoryless_calibration(devices: int, repeats: int, seed: int) -> tuple[Calibration,
                                                                          np.ndarray]:
    """Gaussian push and pull steps, memoryless, every device with its own step spread
    (log-normal over devices); no read noise. Returns it and each device's true log step
    variance (siemens^2)."""
    rng = np.random.default_rng(seed)
    span = G_MAX - G_MIN
    sd = 0.004 * span * np.exp(0.3 * rng.standard_normal(devices))
    fitted = {}
    for sign in (1, -1):
        delta = sign * 0.01 * span + sd[:, None] * rng.standard_normal((devices, repeats))
        device = np.repeat(np.arange(devices), repeats)
        repeat = np.tile(np.arange(repeats), devices)
        fitted[(1.0, 1e-8, sign)] = Steps(delta.ravel(), device, repeat,
                                          np.full(delta.size, G_MIN + span / 2))
    per_device = {"device": np.arange(devices), "g_min": np.full(devices, G_MIN),
                  "g_max": np.full(devices, G_MAX)}
    cal = Calibration(PRESETS["continuous_dw"], {}, (1.0, 1e-8), per_device, [],
                      {"n_averages": 1, "recenter_every": repeats + 1}, fitted=fitted,
                      read_traces={d: np.zeros(4) for d in range(devices)})
    return cal, 2 * np.log(sd)


def test_twin_devices_are_as_spread_as_their_sources_on_the_log_scale():
    """A twin device draws from its source's 11 recorded steps. Drawn as recorded, its
    step variance would be the pool's, (n - 1) / n of their sample variance, and the log of
    a sample variance of 11 steps falls short of the log variance by 0.10 on average: the
    twin's devices would be about 0.2 narrower in mean log variance than the devices."""
    cal, true_log_var = memoryless_calibration(400, 12, seed=0)
    table = build_jump_table(cal)
    n, pairs = 2000, 30
    twin = JumpTableArray((n,), table, seed=1, nominal_pulse=SHAPE)
    one_push = PulsePlan.uniform(torch.ones(n, dtype=int), torch.zeros(n, dtype=int), SHAPE)
    one_pull = PulsePlan.uniform(torch.zeros(n, dtype=int), torch.ones(n, dtype=int), SHAPE)
    pushes = []
    for _ in range(pairs):
        before = twin.read(1).conductance_siemens
        twin.apply(one_push)
        pushes.append((twin.read(1).conductance_siemens - before).numpy())
        twin.apply(one_pull)
    steps = Steps(np.concatenate(pushes), np.tile(np.arange(n), pairs),
                  np.repeat(np.arange(pairs), n), np.zeros(n * pairs))
    _, _, log_var, _, _ = _per_device(steps)   # bias-corrected for the 30 steps per device
    gap = float(log_var.mean() - true_log_var[twin.source.numpy()].mean())
    print(f"twin minus source devices, mean log step variance: {gap:+.3f}")
    assert abs(gap) < 0.08


def telegraph_at_rest(n: int, reads: int, seed: int) -> tuple[float, np.ndarray, np.ndarray]:
    """``n`` telegraph devices at rest: a 100-read trace each (as the standard script
    records it), then ``reads`` 8-read means; a jump-table twin replaying the traces, read
    the same way. Returns the fluctuator's amplitude and the devices' and the twin's
    8-read steps, one row per device."""
    device = ForeignArray((n,), "telegraph", seed=seed)
    trace = torch.stack([device.read(1).conductance_siemens for _ in range(100)], 1)
    trace = (trace - trace.mean(1, keepdim=True)).double().numpy()

    def steps(array: ForeignArray | JumpTableArray) -> np.ndarray:
        return np.diff(torch.stack([array.read(8).conductance_siemens
                                    for _ in range(reads)], 1).numpy(), axis=1)

    at_rest = steps(device)
    one = np.ones((n, 1, 2, 1), dtype=np.int64)
    table = JumpTable(np.array([[1.0, 1e-8]]), np.full(n, G_MIN), np.full(n, G_MAX),
                      0 * one, one, np.zeros(1, np.float32), np.zeros(1, np.float32), trace, 1)
    # no steps to draw: at rest each twin device keeps its wall and reads the traces
    return device.telegraph_siemens, at_rest, steps(JumpTableArray((n,), table, seed=0,
                                                                   nominal_pulse=SHAPE))


def test_replayed_read_noise_has_the_fluctuator_jumps_the_device_has():
    """Read in 8-read means at rest, the jump-table twin must jump between levels as often
    as the device does. Replayed in a loop, a trace whose fluctuator ends in the other
    level adds an unmeasured jump at every wrap (about 1.2 x as many jumps)."""
    amplitude, at_rest, replayed = telegraph_at_rest(4000, 40, seed=0)

    def jumps(steps: np.ndarray) -> float:
        return float(np.mean(np.abs(steps) > amplitude / 4))

    ratio = jumps(replayed) / jumps(at_rest)
    print(f"level jumps per 8-read step: device {jumps(at_rest):.4f}, twin "
          f"{jumps(replayed):.4f} (ratio {ratio:.3f}); step variance ratio "
          f"{replayed.var() / at_rest.var():.3f}")
    assert 0.85 < ratio < 1.12


def test_replayed_read_noise_is_as_even_over_devices_as_the_devices():
    """One 100-read trace in seven never flips, so a twin device replaying its own
    source's trace alone would read almost without noise, where every device's steps over
    a session see the fluctuator flip. The mean log variance of 8-read steps at rest (1,600
    reads, a tenth of a standard script's), per device, must match the devices'."""
    _, at_rest, replayed = telegraph_at_rest(1000, 200, seed=1)

    def mean_log_var(steps: np.ndarray) -> float:
        return float(np.log(steps.var(axis=1, ddof=1)).mean())

    gap = mean_log_var(replayed) - mean_log_var(at_rest)
    print(f"twin minus device, mean log variance of 8-read steps at rest: {gap:+.3f}")
    assert abs(gap) < 0.1


def test_copies_of_one_source_count_once_in_the_held_out_tests():
    """Simulated devices that copy 16 recorded source devices (as jump-table twin devices
    copy theirs), against 64 other devices of the same population: the twin is right, yet
    the mean and variance tests reject it far more often than their level if the 256 copies
    count as independent devices. Counting one unit per source keeps them near it."""
    rng = np.random.default_rng(6)
    key, level, runs = (1.0, 1e-8, 1), 0.05, 200
    rejected: dict[bool, list[bool]] = {True: [], False: []}

    def device_steps(devices: int, steps: int) -> np.ndarray:
        centre = rng.standard_normal(devices)
        spread = np.exp(0.5 * rng.standard_normal(devices))
        return centre[:, None] + spread[:, None] * rng.standard_normal((devices, steps))

    def as_steps(delta: np.ndarray) -> Steps:
        devices, steps = delta.shape
        return Steps(delta.ravel(), np.repeat(np.arange(devices), steps),
                     np.tile(np.arange(steps), devices), np.zeros(delta.size))

    for _ in range(runs):
        measured = as_steps(device_steps(64, 10))
        recorded = device_steps(16, 30)
        source = rng.integers(0, 16, 256)
        copies = recorded[source[:, None], rng.integers(0, 30, (256, 10))]
        for by_source in (True, False):
            check = compare_condition(key, measured, as_steps(copies),
                                      source if by_source else None)
            rejected[by_source].append(min(check.p["mean"], check.p["variance"]) < level)
    rate = {k: float(np.mean(v)) for k, v in rejected.items()}
    print(f"either test below {level} in {runs} runs: one unit per source {rate[True]:.3f}, "
          f"every copy a unit {rate[False]:.3f} (nominal about {1 - (1 - level) ** 2:.3f})")
    assert rate[True] < 0.15
    assert rate[False] > 0.3
