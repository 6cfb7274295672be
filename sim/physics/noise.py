"""Seeded Gaussian noise, drawn on several threads for large CPU tensors."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import torch

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

