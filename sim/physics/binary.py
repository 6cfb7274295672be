"""Binary devices: the binary DW synapse (pass probability of a pinning site) and the
binary MTJ (thermally activated switching), with their exact closed-form pulse response."""

from __future__ import annotations

import torch


def pass_probability(w: torch.Tensor, x0: float, dx: float, a: float) -> torch.Tensor:
    """Binary DW synapse: probability that a wall driven at ``w`` passes the pinning site,
    ``(1 - a) + a * sigmoid(dx * (w - x0))``."""
    return (1.0 - a) + a * torch.sigmoid(dx * (w - x0))


def mtj_switch_probability(
    width_seconds: float, current_amps: torch.Tensor, ic0_amps: torch.Tensor,
    delta: torch.Tensor, tau0_seconds: float,
) -> torch.Tensor:
    """Binary MTJ: ``1 - exp(-t / tau)`` with ``tau = tau0 * exp(Delta * (1 - I / I_c0))``."""
    tau = tau0_seconds * torch.exp(delta * (1.0 - current_amps / ic0_amps))
    return -torch.expm1(-width_seconds / tau)


def two_state_pulses(
    state: torch.Tensor, n_push: torch.Tensor, n_pull: torch.Tensor,
    p_up: torch.Tensor, p_down: torch.Tensor, generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Binary devices (state 0 or 1) under the hardware pulse order, in closed form.

    A push moves 0 -> 1 with probability ``p_up``, a pull 1 -> 0 with ``p_down``. Over
    ``m`` (push, pull) pairs the probability of state 1 follows ``q <- A + B q`` with
    ``A = (1 - p_down) p_up``, ``B = (1 - p_down)(1 - p_up)``; the surplus then adds
    ``s`` pushes or pulls. One uniform draw per device samples the exact final state.
    """
    f64 = torch.float64
    q = state.to(f64)
    p_up, p_down = p_up.to(f64), p_down.to(f64)
    push, pull = n_push.to(state.device, f64), n_pull.to(state.device, f64)
    m = torch.minimum(push, pull)
    a = (1.0 - p_down) * p_up
    b = (1.0 - p_down) * (1.0 - p_up)
    b_m = b.pow(m)
    # a * sum_{k<m} b^k, written so that b -> 1 (no switching) stays finite.
    series = torch.where(b < 1.0, (1.0 - b_m) / (1.0 - b).clamp(min=1e-300), m)
    q = b_m * q + a * series
    surplus = push - pull
    after_push = 1.0 - (1.0 - q) * (1.0 - p_up).pow(surplus.clamp(min=0))
    after_pull = q * (1.0 - p_down).pow((-surplus).clamp(min=0))
    q = torch.where(surplus > 0, after_push, after_pull)
    u = torch.rand(state.shape, generator=generator, device=state.device, dtype=f64)
    return (u < q).to(state.dtype)


def binomial_fraction(
    n_trials: int, p: torch.Tensor, generator: torch.Generator | None = None,
    exact_max_elements: int = 1 << 16,
) -> torch.Tensor:
    """``Binomial(n_trials, p) / n_trials`` per element.

    Exact (sum of Bernoulli trials) when ``n_trials * p.numel()`` is at most
    ``exact_max_elements``; otherwise a normal approximation with the same mean and
    variance, rounded to a multiple of ``1 / n_trials`` and kept in ``[0, 1]``.
    """
    if n_trials * p.numel() <= exact_max_elements:
        u = torch.rand((n_trials, *p.shape), generator=generator, device=p.device, dtype=p.dtype)
        return (u < p.unsqueeze(0)).to(p.dtype).mean(dim=0)
    noise = torch.randn(p.shape, generator=generator, device=p.device, dtype=p.dtype)
    k = (n_trials * p + (n_trials * p * (1.0 - p)).sqrt() * noise).round_().clamp_(0, n_trials)
    return k / n_trials
