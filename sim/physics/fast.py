"""The default path: the closed form for walls far from the track ends, the exact
near-end walk (:mod:`dwlab.sim.physics.near_end`) for the others."""

from __future__ import annotations

import torch
from dwlab.sim.physics.near_end import apply_pulses_one_end
from dwlab.sim.physics.noise import normal_

FEW_NEAR_WALLS = 2048
"""Up to this many walls near an end take one pulse-by-pulse walk watching both ends
(:func:`apply_pulses_one_end` with ``far_end``) instead of being split by reach."""


def apply_pulses_fast(
    x: torch.Tensor, n_push: torch.Tensor, n_pull: torch.Tensor,
    mu_push: torch.Tensor, sigma_push: torch.Tensor,
    mu_pull: torch.Tensor, sigma_pull: torch.Tensor,
    generator: torch.Generator | None = None, margin_sigmas: float = 6.0,
    var_push: torch.Tensor | None = None, var_pull: torch.Tensor | None = None,
    stats: dict[str, int] | None = None, workspace: dict[str, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Closed form where it is exact, pulse by pulse where it is not.

    A wall whose whole trajectory stays inside the track ends at
    ``x + N(n+ mu+ - n- mu-, n+ sigma+^2 + n- sigma-^2)``: the sum of independent Gaussian
    steps. The mean path of the hardware order runs through ``m`` pairs (drift
    ``m (mu+ - mu-)``, plus one push inside a pair) and then the surplus, so it stays within
    ``reach = |m (mu+ - mu-)| + |surplus drift| + max mu+`` of the start; by Levy's
    inequality the noise carries it more than ``margin_sigmas`` final standard deviations
    beyond that with probability below ``2 * Phi(-margin_sigmas)`` per end (1e-9 at 6).
    Walls within reach of an end go to :func:`apply_pulses_one_end`, which also watches the
    far end for walls that could reach both.

    ``var_*`` are optional cached squares of ``sigma_*``; ``stats``, if given, receives how
    many devices took each slow path; ``workspace`` (a dict the caller keeps) holds scratch
    tensors between calls, sparing large allocations.
    """
    ws = workspace if workspace is not None else {}

    def scratch(name: str) -> torch.Tensor:
        t = ws.get(name)
        if t is None or t.shape != x.shape or t.dtype != x.dtype or t.device != x.device:
            t = ws[name] = torch.empty_like(x)
        return t

    a, b, sd, noise = scratch("a"), scratch("b"), scratch("sd"), scratch("noise")
    a.copy_(n_push)
    b.copy_(n_pull)
    var_push = sigma_push * sigma_push if var_push is None else var_push
    var_pull = sigma_pull * sigma_pull if var_pull is None else var_pull
    new_x = torch.mul(a, mu_push)
    new_x.addcmul_(b, mu_pull, value=-1.0)  # the mean displacement, for now
    torch.mul(a, var_push, out=sd).addcmul_(b, var_pull).sqrt_()
    # reach (in b): |pair drift| + |surplus drift| + one push + the noise margin.
    torch.minimum(a, b, out=a).mul_(torch.sub(mu_push, mu_pull, out=noise))
    torch.sub(new_x, a, out=b).abs_().add_(a.abs_())
    b.add_(sd, alpha=margin_sigmas).add_(float(mu_push.max()))
    # distance to the nearer end (in a)
    torch.minimum(torch.neg(x, out=a).add_(1.0), x, out=a)
    near = torch.le(a, b)
    normal_(noise, generator)
    new_x.add_(x).addcmul_(sd, noise).clamp_(0.0, 1.0)
    touched = torch.zeros(x.shape, dtype=torch.bool, device=x.device)
    idx = near.view(-1).nonzero().squeeze(1)
    if idx.numel() == 0:
        if stats is not None:
            stats.update(near_one_end=0, near_both_ends=0)
        return new_x, touched
    sub_x = x.reshape(-1)[idx]
    both = torch.maximum(sub_x, 1.0 - sub_x) <= b.view(-1)[idx]  # far end within reach too

    def at_near(t: torch.Tensor) -> torch.Tensor:
        return t.expand(x.shape).reshape(-1).index_select(0, idx)

    sub_push, sub_pull = at_near(n_push.to(x.device)), at_near(n_pull.to(x.device))
    sub_mu_push, sub_sigma_push, sub_mu_pull, sub_sigma_pull = (
        at_near(t) for t in (mu_push, sigma_push, mu_pull, sigma_pull))
    flat_x, flat_touched = new_x.view(-1), touched.view(-1)
    if stats is not None:
        stats["near_both_ends"] = int(both.sum())
        stats["near_one_end"] = idx.numel() - stats["near_both_ends"]

    def walk(sel: torch.Tensor | slice, far_end: bool) -> None:
        flat_x[idx[sel]], flat_touched[idx[sel]] = apply_pulses_one_end(
            sub_x[sel], sub_push[sel], sub_pull[sel], sub_mu_push[sel], sub_sigma_push[sel],
            sub_mu_pull[sel], sub_sigma_pull[sel], generator=generator, far_end=far_end)

    if idx.numel() <= FEW_NEAR_WALLS:
        # A few walls: one exact walk watching both ends costs less than the two calls
        # (per-call overhead dominates at this size).
        walk(slice(None), far_end=True)
        return new_x, touched
    for mask, far_end in ((~both, False), (both, True)):
        sub = mask.nonzero().squeeze(1)
        if sub.numel():
            walk(sub, far_end)
    return new_x, touched
