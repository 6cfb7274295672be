"""Work tensors reused from step to step: allocating them anew is costly at 22 M devices."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any, TypeVar

import torch

from dwlab.core.tensors import laid_end_to_end

T = TypeVar("T")


def _version(value: object) -> int:
    """A tensor's in-place write count (0 for anything else)."""
    return value._version if isinstance(value, torch.Tensor) else 0


class Workspace:
    """Named work tensors on one torch device, reallocated only when shape or dtype change."""

    def __init__(self, device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self._tensors: dict[str, torch.Tensor] = {}
        self._kept: dict[Hashable, Any] = {}
        self._derived: dict[Hashable, tuple[list[tuple[torch.Tensor, int]], Any, int]] = {}

    def get(self, key: str, shape: torch.Size | tuple[int, ...], dtype: torch.dtype
            ) -> torch.Tensor:
        """The tensor ``key`` (uninitialised contents) of ``shape`` and ``dtype``."""
        tensor = self._tensors.get(key)
        if tensor is None or tensor.shape != shape or tensor.dtype != dtype:
            tensor = torch.empty(shape, dtype=dtype, device=self.device)
            self._tensors[key] = tensor
        return tensor

    def keep(self, key: Hashable, make: Callable[[], Any]) -> Any:
        """``make()``, made once per ``key`` (segment indices, per-weight constants)."""
        if key not in self._kept:
            self._kept[key] = make()
        return self._kept[key]

    def derived(self, key: Hashable, sources: Sequence[torch.Tensor], make: Callable[[], T]
                ) -> T:
        """``make()``, made again only when a source is another tensor, or it or a tensor
        result was written in place since the last call with ``key`` (a run derives the
        same joined steps and constants every step); the cache holds the sources, so their
        identities stay unique."""
        stamp = [(t, t._version) for t in sources]
        cached = self._derived.get(key)
        if cached is not None:
            old, out, version = cached
            if _version(out) == version and len(old) == len(stamp) and all(
                    a is b and va == vb for (a, va), (b, vb) in zip(old, stamp, strict=True)):
                return out
        out = make()
        self._derived[key] = (stamp, out, _version(out))
        return out

    def end_to_end(self, key: str, parts: Sequence[torch.Tensor], rows: int = 1
                   ) -> torch.Tensor:
        """``parts`` laid end to end: each seen as ``rows`` rows (a pair's two devices) and
        joined along them, so the result is ``(rows, total)`` (``(total,)`` for one row);
        kept while the parts are unchanged (:meth:`derived`)."""
        def join() -> torch.Tensor:
            base = laid_end_to_end(parts, rows)
            if base is not None:
                return base
            joined = torch.cat([p.reshape(rows, -1) for p in parts], dim=1)
            return joined[0] if rows == 1 else joined
        return self.derived(key, parts, join)

