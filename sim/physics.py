"""Domain-wall physics, vectorised over devices (pure functions on torch tensors).

Position ``x`` is the wall position as a fraction of the track, in ``[0, 1]``.
One pulse of polarity ``s`` moves the wall by ``s * mu + sigma * xi`` (then clipped).
Mean step and spread depend on drive: no motion below the depinning threshold ``v_th``;
above it the mean step grows linearly with overdrive and with width, and the spread grows
like the square root of the mean (diffusive, thermally activated motion).

Pulse order is the hardware's: while both polarities remain, pulses alternate push, pull,
push, pull, ...; the surplus of the majority polarity follows.

Every function takes per-device tensors of one shape (or scalars that broadcast) and draws
its noise from the ``generator`` it is given, on the tensors' device.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

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


# -- noise ---------------------------------------------------------------------------------

_NOISE_CHUNKS = 4
"""Large CPU draws are split into this many chunks (fixed, so results do not depend on the
thread count), each with its own generator seeded from the caller's."""
_NOISE_PARALLEL_MIN = 1 << 20
_noise_pool: ThreadPoolExecutor | None = None


def normal_(t: torch.Tensor, generator: torch.Generator | None, std: float = 1.0) -> torch.Tensor:
    """Fill ``t`` in place with ``N(0, std^2)`` noise drawn from ``generator``.

    torch draws CPU normals on one thread; for large tensors the chunks are drawn on
    worker threads (torch releases the GIL), which roughly halves the time on two cores.
    """
    if t.device.type != "cpu" or t.numel() < _NOISE_PARALLEL_MIN or not t.is_contiguous():
        return t.normal_(0.0, std, generator=generator)
    global _noise_pool
    if _noise_pool is None:
        _noise_pool = ThreadPoolExecutor(max_workers=_NOISE_CHUNKS, thread_name_prefix="noise")
    seeds = torch.randint(0, 2**62, (_NOISE_CHUNKS,), generator=generator).tolist()

    def fill(chunk_seed: tuple[torch.Tensor, int]) -> None:
        chunk, seed = chunk_seed
        chunk.normal_(0.0, std, generator=torch.Generator().manual_seed(seed))

    list(_noise_pool.map(fill, zip(t.view(-1).chunk(_NOISE_CHUNKS), seeds, strict=True)))
    return t


# -- continuous wall motion --------------------------------------------------------------


def _pulse_rounds(
    x: torch.Tensor, lowest: torch.Tensor, highest: torch.Tensor, rounds: torch.Tensor,
    steps: list[tuple[torch.Tensor, torch.Tensor]], notches: torch.Tensor | None,
    generator: torch.Generator | None,
) -> None:
    """Give device ``i`` ``rounds[i]`` rounds of ``steps`` (each a (signed mean, sigma)
    pulse), one pulse at a time, updating flat ``x``, ``lowest`` and ``highest`` in place.

    Devices are sorted by round count so the devices still active in round ``k`` are a
    prefix: the cost is proportional to the pulses sent, not to ``max(rounds) * size``.
    """
    if rounds.numel() == 0:
        return
    n_rounds = int(rounds.max())
    if n_rounds == 0:
        return
    order = torch.argsort(rounds, descending=True, stable=True)
    # active[k]: how many devices get round k (those with more than k rounds).
    hist = torch.bincount(rounds, minlength=n_rounds + 1)
    active = (hist.flip(0).cumsum(0).flip(0)[1:]).tolist()
    xs, lo, hi = x[order], lowest[order], highest[order]
    steps = [(mu[order], sigma[order]) for mu, sigma in steps]
    ns = notches[:, order] if notches is not None else None
    for k in range(n_rounds):
        n = active[k]
        xv, lov, hiv = xs[:n], lo[:n], hi[:n]
        for mu, sigma in steps:
            moved = torch.randn(n, generator=generator, device=x.device, dtype=x.dtype)
            moved.mul_(sigma[:n]).add_(mu[:n]).add_(xv)
            torch.minimum(lov, moved, out=lov)
            torch.maximum(hiv, moved, out=hiv)
            moved.clamp_(0.0, 1.0)
            if ns is not None:
                moved = nearest_notch(moved, ns[:, :n])
            xv.copy_(moved)
    x[order], lowest[order], highest[order] = xs, lo, hi


def apply_pulses_reference(
    x: torch.Tensor, n_push: torch.Tensor, n_pull: torch.Tensor,
    mu_push: torch.Tensor, sigma_push: torch.Tensor,
    mu_pull: torch.Tensor, sigma_pull: torch.Tensor,
    generator: torch.Generator | None = None, notches: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply pulses one at a time, in hardware order, clipping after every pulse.

    With ``notches`` (shape ``(n_states, *x.shape)``, sorted along dim 0) the wall settles
    at the nearest notch after every pulse (multi-state pinned walls). Returns the new
    positions and a mask of devices whose wall reached a track end.
    """
    shape = x.shape
    flat = x.reshape(-1).clone()
    dev = flat.device

    def per_device(t: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(t, device=dev, dtype=flat.dtype).expand(shape).reshape(-1)

    push = n_push.reshape(-1).to(dev, torch.long)
    pull = n_pull.reshape(-1).to(dev, torch.long)
    mu_p, sd_p, mu_m, sd_m = (per_device(t) for t in (mu_push, sigma_push, mu_pull, sigma_pull))
    flat_notches = notches.reshape(notches.shape[0], -1) if notches is not None else None
    # Extremes reached by moves in this apply (a wall resting at an end has not touched).
    lowest = torch.full_like(flat, math.inf)
    highest = torch.full_like(flat, -math.inf)
    # Phase 1: pairs, push then pull.
    _pulse_rounds(flat, lowest, highest, torch.minimum(push, pull),
                  [(mu_p, sd_p), (-mu_m, sd_m)], flat_notches, generator)
    # Phase 2: the surplus of the majority polarity.
    surplus = push - pull
    up = surplus > 0
    _pulse_rounds(flat, lowest, highest, surplus.abs(),
                  [(torch.where(up, mu_p, -mu_m), torch.where(up, sd_p, sd_m))],
                  flat_notches, generator)
    touched = (lowest <= 0.0) | (highest >= 1.0)
    return flat.reshape(shape), touched.reshape(shape)


def _reflected_walk(
    y: torch.Tensor, rounds: torch.Tensor, steps: list[tuple[torch.Tensor, torch.Tensor]],
    generator: torch.Generator | None, far_end: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Walk ``y`` in ``[0, 1]`` (distance from a barrier at 0) through ``rounds[i]`` rounds
    of ``steps`` (each (mean, sigma) per device), clipped at 0 after every step.

    Uses the reflection identity of a walk held at one barrier: with ``W_j = y_0 + S_j``
    the unclipped walk, the clipped walk is ``W_j + max(0, -min_{i<=j} W_i)``; it ends at
    ``W_n + max(0, -min_j W_j)`` and touched the barrier iff ``min_j W_j <= 0``.
    With ``far_end`` the walk is also clipped at 1: paths that never reach 1 keep the
    one-barrier result (exact, same noise); the rare paths that do are replayed step by
    step with both clips, on the same noise. Returns (new y, touched either barrier).
    """
    n_rounds = int(rounds.max()) if rounds.numel() else 0
    if n_rounds == 0:
        return y, torch.zeros(y.shape, dtype=torch.bool, device=y.device)
    # Layout (round, step, device): elementwise work broadcasts along contiguous devices.
    n = y.numel()
    mean = torch.stack([m for m, _ in steps])
    sigma = torch.stack([s for _, s in steps])
    walk = normal_(torch.empty((n_rounds, len(steps), n), device=y.device, dtype=y.dtype),
                   generator)
    walk.mul_(sigma).add_(mean)
    # Rounds beyond a device's count are no-ops (zero steps leave W and its minimum alone).
    round_index = torch.arange(n_rounds, device=y.device, dtype=y.dtype).unsqueeze(1)
    later = round_index >= rounds.to(y.dtype)
    walk.masked_fill_(later.unsqueeze(1), 0.0)
    walk = walk.view(-1, n)
    first_step = walk[0].clone() if far_end else None
    walk[0].add_(y)
    walk = walk.cumsum_(dim=0)
    lowest = walk.amin(dim=0)
    end = walk[-1] + (-lowest).clamp(min=0.0)
    touched = (lowest <= 0.0) & (rounds > 0)
    if far_end:
        clipped = walk - walk.cummin(dim=0).values.clamp_(max=0.0)
        replay = (clipped.amax(dim=0) >= 1.0).nonzero().squeeze(1)
        if replay.numel():
            # Increments of the chosen paths, recovered from the cumulative walk.
            incr = walk[:, replay].diff(dim=0, prepend=walk[:1, replay])
            incr[0] = first_step[replay]
            pos = y[replay].clone()
            for step in incr:
                pos = (pos + step).clamp_(0.0, 1.0)
            end[replay] = pos
            touched[replay] = True
    return end, touched


def _similar_count_chunks(counts: torch.Tensor, chunk_elements: int) -> list[torch.Tensor]:
    """Split devices into index groups whose pulse counts lie within a factor of two, each
    group holding at most about ``chunk_elements`` (pulses x devices).

    A vectorised walk costs ``max(count) * devices`` per group: one re-centred pair with
    thousands of pulses among walls with hundreds would otherwise set the cost of all.
    """
    order = torch.argsort(counts, stable=True)
    ordered = counts[order]
    # Group g holds counts in [2^(g-1), 2^g) (g = 0: no pulses, nothing to do).
    group = torch.floor(torch.log2(ordered.clamp(min=1).double())).long() + 1
    group[ordered == 0] = 0
    sizes = torch.bincount(group).tolist()
    chunks, start = [], 0
    for g, size in enumerate(sizes):
        if g and size:
            step = max(1, chunk_elements // (1 << g))
            for s in range(start, start + size, step):
                chunks.append(order[s:min(s + step, start + size)])
        start += size
    return chunks


def apply_pulses_one_end(
    x: torch.Tensor, n_push: torch.Tensor, n_pull: torch.Tensor,
    mu_push: torch.Tensor, sigma_push: torch.Tensor,
    mu_pull: torch.Tensor, sigma_pull: torch.Tensor,
    generator: torch.Generator | None = None, chunk_elements: int = 1 << 22,
    far_end: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pulse by pulse, in hardware order, for walls near a track end.

    Every pulse draws its own noise; the clipping at the near end comes from the reflection
    identity (:func:`_reflected_walk`) instead of a loop, first over the (push, pull)
    pairs, then over the surplus (the clipped walk is Markov, so phases compose). Exact for
    walls whose far end is out of reach (the caller checks), or for every wall with
    ``far_end=True`` (paths reaching the far end are replayed with both clips). Flat
    inputs; the work is about ``pulses``: walls are grouped by pulse count
    (:func:`_similar_count_chunks`) and each group is vectorised.
    """
    out = x.clone()  # walls without pulses stay where they are
    touched = torch.zeros(x.shape, dtype=torch.bool, device=x.device)
    push = n_push.to(x.device, torch.long)
    pull = n_pull.to(x.device, torch.long)
    for idx in _similar_count_chunks(push + pull, chunk_elements):
        xs = x[idx]
        # Distance to the near end; steps towards it are negative (noise is symmetric, so
        # only the means change sign).
        top = xs >= 0.5
        sign = 1.0 - 2.0 * top.to(x.dtype)
        y = torch.where(top, 1.0 - xs, xs)
        mu_p, mu_m = sign * mu_push[idx], -sign * mu_pull[idx]
        sd_p, sd_m = sigma_push[idx], sigma_pull[idx]
        n_p, n_m = push[idx], pull[idx]
        y, hit_pairs = _reflected_walk(
            y, torch.minimum(n_p, n_m), [(mu_p, sd_p), (mu_m, sd_m)], generator, far_end)
        surplus = n_p - n_m
        up = surplus > 0
        y, hit_surplus = _reflected_walk(
            y, surplus.abs(), [(torch.where(up, mu_p, mu_m), torch.where(up, sd_p, sd_m))],
            generator, far_end)
        out[idx] = torch.where(top, 1.0 - y, y).clamp_(0.0, 1.0)
        touched[idx] = hit_pairs | hit_surplus
    return out, touched


def _exact_total(counts: torch.Tensor) -> int:
    """Exact sum of non-negative integer counts held in a float32 tensor.

    Integer sums are slow on CPU (each element is widened); float32 block sums are exact
    while a block's total stays below 2**24, and the block totals are summed in float64.
    """
    flat = counts.reshape(-1)
    if flat.numel() == 0:
        return 0
    most = max(int(flat.max()), 1)
    block = max(1, (1 << 24) // (most * 2))
    whole = flat.numel() // block * block
    total = flat[whole:].sum(dtype=torch.float64)
    if whole:
        total += flat[:whole].view(-1, block).sum(dim=1).sum(dtype=torch.float64)
    return int(total)


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
    if stats is not None:
        stats["pulses"] = _exact_total(torch.add(a, b, out=sd))
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
    args = [sub_x] + [t.expand(x.shape).reshape(-1)[idx] for t in (
        n_push.to(x.device), n_pull.to(x.device), mu_push, sigma_push, mu_pull, sigma_pull)]
    flat_x, flat_touched = new_x.view(-1), touched.view(-1)
    for name, mask, far_end in (("near_one_end", ~both, False), ("near_both_ends", both, True)):
        sub = mask.nonzero().squeeze(1)
        if stats is not None:
            stats[name] = sub.numel()
        if sub.numel():
            flat_x[idx[sub]], flat_touched[idx[sub]] = apply_pulses_one_end(
                *(t[sub] for t in args), generator=generator, far_end=far_end)
    return new_x, touched


def conductance(x: torch.Tensor, g_ap: torch.Tensor, g_p: torch.Tensor) -> torch.Tensor:
    """Conductance linear in wall position between G_AP (x = 0) and G_P (x = 1)."""
    return g_ap + (g_p - g_ap) * x.clamp(0.0, 1.0)


def relax(x: torch.Tensor, rate_per_second: float, target: float, seconds: float) -> torch.Tensor:
    """Exponential relaxation of positions towards ``target`` over ``seconds``."""
    return target + (x - target) * math.exp(-rate_per_second * seconds)


# -- multi-state pinned walls ------------------------------------------------------------


def notch_positions(
    n_states: int, spread: float, shape: tuple[int, ...], generator: torch.Generator | None,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Per-device notch positions, shape ``(n_states, *shape)``, sorted along dim 0.

    Nominal notches are evenly spaced with the track ends as the outer two; interior
    notches move by ``spread * N(0, 1)`` per device (kept inside the track).
    """
    nominal = torch.linspace(0.0, 1.0, n_states, device=device)
    nominal = nominal.reshape(n_states, *([1] * len(shape))).expand(n_states, *shape)
    jitter = spread * torch.randn((n_states, *shape), generator=generator, device=device)
    jitter[0] = 0.0
    jitter[-1] = 0.0
    return (nominal + jitter).clamp(0.0, 1.0).sort(dim=0).values


def nearest_notch(x: torch.Tensor, notches: torch.Tensor) -> torch.Tensor:
    """The notch (per device, from ``notches`` of shape ``(n_states, *x.shape)``) nearest
    to each position."""
    idx = (notches - x.unsqueeze(0)).abs().argmin(dim=0, keepdim=True)
    return notches.gather(0, idx).squeeze(0)


# -- binary devices ----------------------------------------------------------------------


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
