"""Program-and-verify: write a tensor's initial weights into its devices.

First the array's mean push and pull steps (its asymmetry) are measured; then each round
reads every device, converts the remaining error into pulses of one polarity and applies
them in one vectorised plan. Afterwards the parameter holds what the devices hold.
"""

from __future__ import annotations

import torch

from dwlab.core.types import PulsePlan
from dwlab.sgld.weight import DeviceWeight

CALIBRATION_PULSES = 8
"""Pushes (then pulls) per device that measure an array's mean steps before programming."""


def program(dw: DeviceWeight, iterations: int, read_averages: int) -> None:
    """Program ``dw.param`` into ``dw.array`` in at most ``iterations`` rounds; sets
    ``dw.program_report`` and the measured steps ``dw.mu_push``, ``dw.mu_pull``."""
    cap = dw.array.describe().limits.max_pulses_per_device
    target = dw.target_conductance(dw.param.detach().to(torch.float32))
    target = target.to(dw.param.device, dw.param.dtype)
    g = measure_steps(dw, min(CALIBRATION_PULSES, cap), read_averages)
    pulses = 2 * min(CALIBRATION_PULSES, cap) * g.numel()
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
    err_w = (g - target) * dw.alpha
    dw.program_report = {
        "rounds": rounds, "pulses": pulses,
        "rms_error_weight": float(err_w.pow(2).mean().sqrt()),
        "weight_window": dw.alpha * dw.g_half * (2 if dw.pair else 1),
    }


def measure_steps(dw: DeviceWeight, k: int, read_averages: int) -> torch.Tensor:
    """Measure the array's mean push and pull step: ``k`` pushes, then ``k`` pulls, on
    every device away from the track ends. Returns the last read-back.

    An estimate is kept only when plausible (within 5x of the nominal step from
    ``describe()``); otherwise the nominal step stays.
    """
    reads = [dw.read(read_averages)]
    away = (reads[0] - dw.g_mid).abs() < 0.8 * dw.g_half
    ones = torch.full(reads[0].shape, k, dtype=torch.int32, device=reads[0].device)
    zeros = torch.zeros_like(ones)
    for push, pull in ((ones, zeros), (zeros, ones)):
        receipt = dw.array.apply(PulsePlan(push, pull, dw.pulse, dw.pulse))
        reads.append(dw.read(read_averages, after=receipt))
    if bool(away.any()):
        nominal = dw.mu_push
        up = float((reads[1] - reads[0])[away].mean()) / k
        down = float((reads[1] - reads[2])[away].mean()) / k
        if nominal / 5 < up < nominal * 5 and nominal / 5 < down < nominal * 5:
            dw.mu_push, dw.mu_pull = up, down
    return reads[2]
