"""Domain-wall physics, vectorised over devices (pure functions on torch tensors).

Position ``x`` is the wall position as a fraction of the track, in ``[0, 1]``.
One pulse of polarity ``s`` moves the wall by ``s * mu + sigma * xi`` (then clipped).
Mean step and spread depend on drive: no motion below the depinning threshold ``v_th``;
above it the mean step grows linearly with overdrive and with width, and the spread grows
like the square root of the mean (diffusive, thermally activated motion).
"""

from __future__ import annotations

import torch


def drive_factor(
    amplitude_volts: float, width_seconds: float, v_th: torch.Tensor,
    nominal_amplitude_volts: float, nominal_width_seconds: float,
) -> torch.Tensor:
    """Mean step relative to the nominal pulse: overdrive ratio times width ratio (0 below
    threshold). ``v_th`` is per device, so the factor is too."""
    over = (amplitude_volts - v_th).clamp(min=0.0)
    nominal_over = (nominal_amplitude_volts - v_th).clamp(min=1e-12)
    return over / nominal_over * (width_seconds / nominal_width_seconds)


def step_moments(
    mu0: torch.Tensor, sigma0: torch.Tensor, factor: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation of one step given the drive factor."""
    return mu0 * factor, sigma0 * factor.sqrt()


def apply_pulses_reference(
    x: torch.Tensor, n_push: torch.Tensor, n_pull: torch.Tensor,
    mu_push: torch.Tensor, sigma_push: torch.Tensor,
    mu_pull: torch.Tensor, sigma_pull: torch.Tensor,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply pulses one at a time, interleaving polarities as hardware does.

    While both polarities remain, pulses alternate push, pull, push, ...; the surplus of
    the majority polarity follows. Returns the new positions and a mask of devices whose
    wall touched a track end.
    """
    x = x.clone()
    touched = torch.zeros_like(x, dtype=torch.bool)
    n_push = n_push.to(x.device, torch.long)
    n_pull = n_pull.to(x.device, torch.long)
    paired = 2 * torch.minimum(n_push, n_pull)
    total = n_push + n_pull
    surplus_push = n_push > n_pull
    steps = int(total.max()) if total.numel() else 0
    for j in range(steps):
        active = total > j
        in_pairs = j < paired
        push_now = torch.where(in_pairs, torch.tensor(j % 2 == 0, device=x.device), surplus_push)
        mu = torch.where(push_now, mu_push, -mu_pull)
        sigma = torch.where(push_now, sigma_push, sigma_pull)
        noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        moved = x + mu + sigma * noise
        touched |= active & ((moved <= 0.0) | (moved >= 1.0))
        x = torch.where(active, moved.clamp(0.0, 1.0), x)
    return x, touched


def apply_pulses_fast(
    x: torch.Tensor, n_push: torch.Tensor, n_pull: torch.Tensor,
    mu_push: torch.Tensor, sigma_push: torch.Tensor,
    mu_pull: torch.Tensor, sigma_pull: torch.Tensor,
    generator: torch.Generator | None = None, margin_sigmas: float = 6.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Closed form where it is exact, pulse by pulse where it is not.

    A wall whose whole trajectory stays inside the track gets the sum of independent
    Gaussian steps: ``N(n+ mu+ - n- mu-, n+ sigma+^2 + n- sigma-^2)``. The trajectory of
    an interleaved sequence stays within ``|n+ mu+ - n- mu-| + max(mu)`` of its mean path
    start; devices whose reach plus ``margin_sigmas`` standard deviations could touch an
    end are handed to :func:`apply_pulses_reference`.
    """
    n_push_f = n_push.to(x.device, x.dtype)
    n_pull_f = n_pull.to(x.device, x.dtype)
    mean = n_push_f * mu_push - n_pull_f * mu_pull
    var = n_push_f * sigma_push**2 + n_pull_f * sigma_pull**2
    sd = var.sqrt()
    reach_up = mean.clamp(min=0) + mu_push + margin_sigmas * sd
    reach_down = (-mean).clamp(min=0) + mu_pull + margin_sigmas * sd
    moving = (n_push + n_pull) > 0
    near_end = moving & ((x + reach_up >= 1.0) | (x - reach_down <= 0.0))
    noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    new_x = torch.where(moving, x + mean + sd * noise, x)
    touched = torch.zeros_like(x, dtype=torch.bool)
    if bool(near_end.any()):
        idx = near_end.nonzero(as_tuple=True)
        sub_x, sub_touched = apply_pulses_reference(
            x[idx], n_push[idx], n_pull[idx], mu_push[idx], sigma_push[idx],
            mu_pull[idx], sigma_pull[idx], generator=generator,
        )
        new_x[idx] = sub_x
        touched[idx] = sub_touched
    return new_x.clamp(0.0, 1.0), touched


def conductance(x: torch.Tensor, g_ap: torch.Tensor, g_p: torch.Tensor) -> torch.Tensor:
    """Conductance linear in wall position between G_AP (x = 0) and G_P (x = 1)."""
    return g_ap + (g_p - g_ap) * x.clamp(0.0, 1.0)
