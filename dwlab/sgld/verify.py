"""Program-and-verify: write a tensor's initial weights into its devices.

First every device's own push and pull steps (its asymmetry) are measured; then each round
reads every device, converts the remaining error into pulses of one polarity and applies
them in one vectorised plan. Afterwards the parameter holds what the devices hold.
"""

from __future__ import annotations

import torch

from dwlab.core.types import PulsePlan
from dwlab.sgld.refine import start_refining
from dwlab.sgld.weight import DeviceWeight

SWEEP_SPAN = 0.4
"""One calibration sweep moves a wall by at most this fraction of half the range (there and
back), so walls starting mid-track stay clear of the ends."""


def program(dw: DeviceWeight, iterations: int, read_averages: int,
            calibration_pulses: int = 2048) -> None:
    """Program ``dw.param`` into ``dw.array`` in at most ``iterations`` rounds; sets
    ``dw.program_report`` and each device's measured steps ``dw.mu_push``, ``dw.mu_pull``
    (from ``calibration_pulses`` pulses of each polarity), and starts their refinement in
    training (:func:`~dwlab.sgld.refine.start_refining`, with the read noise from two
    reads)."""
    cap = dw.array.describe().limits.max_pulses_per_device
    target = dw.target_conductance(dw.param.detach().to(torch.float32))
    target = target.to(dw.param.device, dw.param.dtype)
    g = dw.read(read_averages)
    # Two reads with no pulse between them: the read-back's own noise.
    read_variance = 0.5 * float((dw.read(read_averages) - g).double().square().mean())
    g, pulses, prior_variance = measure_steps(dw, g, calibration_pulses, cap, read_averages)
    rounds = 0
    for rounds in range(1, iterations + 1):
        err = target - g
        n = torch.where(err > 0, err / dw.mu_push, err / dw.mu_pull).round_()
        n.clamp_(-cap, cap)
        if not bool(n.any()):
            rounds -= 1
            break
        push = n.clamp(min=0).to(torch.int32)
        pull = (-n).clamp(min=0).to(torch.int32)
        receipt = dw.array.apply(PulsePlan(push, pull, dw.pulse, dw.pulse))
        pulses += int(push.sum()) + int(pull.sum())
        g = dw.read(read_averages, after=receipt)
    dw.accept_read(g)
    start_refining(dw, prior_variance, read_variance)
    err_w = (g - target) * dw.alpha
    dw.program_report = {
        "rounds": rounds, "pulses": pulses,
        "rms_error_weight": float(err_w.pow(2).mean().sqrt()),
        "weight_window": dw.alpha * dw.g_half * (2 if dw.pair else 1),
    }


def measure_steps(dw: DeviceWeight, g: torch.Tensor, total: int, cap: int,
                  read_averages: int) -> tuple[torch.Tensor, int, float]:
    """Measure every device's own push and pull step, starting from the read ``g``: sweeps
    of ``k`` pushes then ``k`` pulls until ``total`` pulses of each polarity, ``k`` kept
    within ``cap`` and within :data:`SWEEP_SPAN` of the track. Returns the last read-back,
    the pulses sent and the variance left in each device's steps (S^2; a quarter of the
    nominal step, squared, when nothing was measured).

    Per device, the steps are the summed moves over the summed counts, shrunk towards the
    array mean by the share of their scatter that is measurement noise (estimated from the
    sweep-to-sweep scatter): an empirical-Bayes estimate that never trusts a noisy device
    more than its reads allow. Devices that came near a track end, or an array whose mean
    step is implausible (not within 5x of the nominal step), keep the array mean or the
    nominal step.
    """
    nominal = dw.mean_step
    k = max(1, min(cap, total, int(SWEEP_SPAN * dw.g_half / nominal)))
    sweeps = max(1, round(total / k))
    unmeasured = (0.25 * nominal) ** 2
    ups, downs, valid = [], [], []
    ones = torch.full(g.shape, k, dtype=torch.int32, device=g.device)
    zeros = torch.zeros_like(ones)
    pulses = 2 * k * sweeps * g.numel()
    for sweep in range(sweeps):
        if sweep:  # back to mid-track: k pushes and k pulls do not cancel when asymmetric
            g, sent = recentre(dw, g, min(cap, 2 * k), read_averages)
            pulses += sent
        start = g
        g_top = dw.read(read_averages, after=dw.array.apply(PulsePlan(ones, zeros, dw.pulse,
                                                                       dw.pulse)))
        g = dw.read(read_averages, after=dw.array.apply(PulsePlan(zeros, ones, dw.pulse,
                                                                   dw.pulse)))
        ups.append((g_top - start) / k)
        downs.append((g_top - g) / k)
        # a sweep counts for a device only if its wall stayed clear of the track ends
        valid.append(torch.stack([(v - dw.g_mid).abs() < 0.8 * dw.g_half
                                  for v in (start, g_top, g)]).all(0))
    ok = torch.stack(valid)
    inside = ok.any(0)
    if not bool(inside.any()):
        return g, pulses, unmeasured
    up, up_variance = shrunk_means(torch.stack(ups), ok, inside)
    down, down_variance = shrunk_means(torch.stack(downs), ok, inside)
    mean_up, mean_down = float(up[inside].mean()), float(down[inside].mean())
    if nominal / 5 < mean_up < nominal * 5 and nominal / 5 < mean_down < nominal * 5:
        # (a floor keeps every count finite should a device's estimate come out tiny)
        dw.set_steps(torch.where(inside, up, mean_up).clamp_(min=0.2 * mean_up),
                     torch.where(inside, down, mean_down).clamp_(min=0.2 * mean_down))
        if up_variance is not None and down_variance is not None:
            return g, pulses, 0.5 * (up_variance + down_variance)
    return g, pulses, unmeasured


def shrunk_means(samples: torch.Tensor, ok: torch.Tensor, inside: torch.Tensor
                 ) -> tuple[torch.Tensor, float | None]:
    """Per-device means of ``samples`` over the sweeps where ``ok`` (sweeps first), shrunk
    towards the mean over the ``inside`` devices by ``spread / (spread + noise)``: ``noise``
    the variance of one device's mean (sweep scatter / its sweeps), ``spread`` the
    device-to-device variance left after taking that noise away. Also returns the
    variance left in the shrunk means (``keep * noise``, averaged over the devices; None
    with fewer than two sweeps or devices)."""
    weight = ok.to(samples.dtype)
    count = weight.sum(0).clamp_(min=1)
    means = (samples * weight).sum(0) / count
    pooled = means[inside]
    centre = float(pooled.mean())
    if samples.shape[0] < 2 or pooled.numel() < 2:
        return means, None
    scatter = ((samples - means).square() * weight).sum(0) / (count - 1).clamp_(min=1)
    noise = (scatter / count)[inside]
    spread = max(0.0, float(pooled.var()) - float(noise.mean()))
    keep = spread / (spread + noise.clamp(min=1e-30))
    out = means.clone()
    out[inside] = (pooled - centre) * keep + centre
    return out, float((keep * noise).mean())


def recentre(dw: DeviceWeight, g: torch.Tensor, cap: int, read_averages: int
             ) -> tuple[torch.Tensor, int]:
    """Move every wall back towards mid-track (at most ``cap`` pulses each); returns the
    new read-back and the pulses sent."""
    n = ((dw.g_mid - g) / dw.mean_step).round_().clamp_(-cap, cap)
    push = n.clamp(min=0).to(torch.int32)
    pull = (-n).clamp(min=0).to(torch.int32)
    receipt = dw.array.apply(PulsePlan(push, pull, dw.pulse, dw.pulse))
    return dw.read(read_averages, after=receipt), int(n.abs().sum())
