"""Each device's push and pull steps, refined from the read-backs of training.

Program-and-verify measures every device's steps once, from ``calibration_pulses`` pulses.
What error is left is a fixed bias in every plan: at zero gradient a device's ``p`` pushes
and ``q`` pulls move it by ``p d+ - q d-`` (``d`` the step errors) every update, and over
thousands of updates that walk carries weights and common modes to the track ends.

Every update is a measurement too. Since a device's last restart (below) it has had ``P``
pushes and ``Q`` pulls in all, and its read has moved by ``Y = G - G_start``; so
``Y = x . mu + noise`` with ``x = (P, -Q)``, ``mu = (mu+, mu-)`` and the noise the pulses'
own (``(P + Q) sigma^2``) and two reads' (``2 sigma_read^2``). Only the two end reads enter
``Y``: the reads between them, which set later counts (the centring shift answers a read's
noise), cancel, so the counts are not correlated with the noise as they would be in a
step-by-step regression. With the prior ``N(m, S)`` (at first the calibration, with its
measured variance on each step), the posterior mean is

    mu = m + S x (Y - x . m) / (x . S x + (P + Q) sigma^2 + 2 sigma_read^2),

a correction along the direction that walks (``P`` and ``Q`` grow together); the steps'
sum, which only sets how finely an update is resolved, keeps its calibration. A device
whose wall came near a track end (its move may have been clipped) starts again from its
current read, its posterior the new prior (``S - S x x' S / (x . S x + noise)``), so
nothing learnt is lost. The track ends are known only from the nominal window: a device
whose own window lies off it by more than the saturated zone can sit at its end unseen,
and its steps then learn from moves that did not happen.
"""

from __future__ import annotations

import math

import torch

from dwlab.sgld.joined import JoinedWeights
from dwlab.sgld.weight import SATURATION_MARGIN, DeviceWeight

STATE_ROWS = ("start", "pushes", "pulls", "prior_push", "prior_pull", "var_push", "covariance",
              "var_pull")
"""What ``DeviceWeight.refine_state`` holds, one row each (array shape behind them)."""


def start_refining(dw: DeviceWeight, prior_variance: float, read_variance: float) -> None:
    """From now on, refine ``dw``'s steps: its last read is the start, its steps the prior
    (``prior_variance`` S^2 each, independent), its reads carry ``read_variance`` S^2."""
    state = torch.zeros((len(STATE_ROWS), *dw.last_read.shape), dtype=dw.param.dtype,
                        device=dw.param.device)
    state[0] = dw.last_read
    state[3], state[4] = dw.mu_push, dw.mu_pull
    state[5] = state[7] = prior_variance
    dw.refine_state = state
    dw.read_variance = float(read_variance)


def near_end_limit(weights: JoinedWeights, budget: int) -> float | torch.Tensor:
    """Per weight, the ``|G - g_mid|`` beyond which a device's update may have met a track
    end, when both its reads before and after lie within it: the saturated zone
    (:data:`SATURATION_MARGIN`, kept for devices whose window is off the nominal one) less
    how far a wall can stray past those reads (the drift of its push-pull pairs, for steps
    up to 20 % asymmetric, a step more, and 3 standard deviations of its pulses' and of a
    read's noise)."""
    return weights.per_weight([
        dw.g_half * (1 - 2 * SATURATION_MARGIN) - (0.1 * budget + 2) * dw.mean_step
        - 3 * math.sqrt(budget * dw.sigma ** 2) - 3 * math.sqrt(dw.read_variance)
        for dw in weights.weights])


def refine_steps(weights: JoinedWeights, push: torch.Tensor, pull: torch.Tensor,
                 distance_before: torch.Tensor, budget: int) -> int:
    """Take one update's counts (``push``, ``pull``: end to end, as applied) and its
    read-back (already accepted), and set every device's steps to their posterior mean;
    ``distance_before``: ``|G - g_mid|`` before the update. Returns how many devices
    started again."""
    state = weights.bind("refine_state", lead=1)
    start, pushes, pulls, prior_push, prior_pull, var_push, cov, var_pull = state.unbind(0)
    mu_push, mu_pull = weights.bind("mu_push"), weights.bind("mu_pull")
    g = weights.read()
    limit = near_end_limit(weights, budget)
    near = torch.gt(weights.distance(), limit).logical_or_(distance_before > limit)
    restart = near.view(-1).nonzero().squeeze(1)
    if restart.numel():
        keep_posterior(weights, state, restart, mu_push, mu_pull)
    pushes.add_(push)
    pulls.add_(pull)
    if restart.numel():  # from this read on; this update's move is not used
        flat = state.view(len(STATE_ROWS), -1)
        flat[0].index_copy_(0, restart, g.reshape(-1).index_select(0, restart))
        flat[1:3].index_fill_(1, restart, 0.0)
    s_push, s_pull = covariance_times_counts(var_push, cov, var_pull, pushes, pulls)
    residual = torch.sub(g, start).addcmul_(prior_push, pushes, value=-1.0).addcmul_(
        prior_pull, pulls)
    residual.div_(innovation_variance(pushes, pulls, s_push, s_pull, *noise(weights)))
    torch.addcmul(prior_push, s_push, residual, out=mu_push)
    torch.addcmul(prior_pull, s_pull, residual, out=mu_pull)
    return restart.numel()


def covariance_times_counts(var_push: torch.Tensor, cov: torch.Tensor, var_pull: torch.Tensor,
                            pushes: torch.Tensor, pulls: torch.Tensor
                            ) -> tuple[torch.Tensor, torch.Tensor]:
    """``S x``, with ``x = (P, -Q)``."""
    return (torch.mul(var_push, pushes).addcmul_(cov, pulls, value=-1.0),
            torch.mul(cov, pushes).addcmul_(var_pull, pulls, value=-1.0))


def noise(weights: JoinedWeights) -> tuple[float | torch.Tensor, float | torch.Tensor]:
    """Per weight, the variance of one pulse's move and twice a read's."""
    return (weights.per_weight([dw.sigma ** 2 for dw in weights.weights]),
            weights.per_weight([2 * dw.read_variance for dw in weights.weights]))


def innovation_variance(pushes: torch.Tensor, pulls: torch.Tensor, s_push: torch.Tensor,
                        s_pull: torch.Tensor, pulse_variance: float | torch.Tensor,
                        reads_variance: float | torch.Tensor) -> torch.Tensor:
    """``x . S x`` plus the noise of ``Y``: the variance of ``Y`` about the prior's mean."""
    out = torch.mul(s_push, pushes).addcmul_(s_pull, pulls, value=-1.0)
    return out.add_(torch.add(pushes, pulls).mul_(pulse_variance)).add_(reads_variance)


def keep_posterior(weights: JoinedWeights, state: torch.Tensor, devices: torch.Tensor,
                   mu_push: torch.Tensor, mu_pull: torch.Tensor) -> None:
    """Make the posterior of ``devices`` (flat indices), from their counts so far, their
    prior: the mean is their current steps ``mu_push``, ``mu_pull`` (joined), the covariance
    ``S - S x x' S / v``."""
    flat = state.view(len(STATE_ROWS), -1)
    _, pushes, pulls, _, _, var_push, cov, var_pull = flat[:, devices].unbind(0)
    s_push, s_pull = covariance_times_counts(var_push, cov, var_pull, pushes, pulls)
    at = devices % weights.n
    pulse_variance, reads_variance = (weights.at_weights(v, at) for v in noise(weights))
    v = innovation_variance(pushes, pulls, s_push, s_pull, pulse_variance, reads_variance)
    posterior = torch.stack((var_push - s_push * s_push / v, cov - s_push * s_pull / v,
                             var_pull - s_pull * s_pull / v))
    flat[5:8].index_copy_(1, devices, posterior)
    for row, mu in ((3, mu_push), (4, mu_pull)):
        flat[row].index_copy_(0, devices, mu.reshape(-1).index_select(0, devices))
