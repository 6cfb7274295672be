"""Tensors laid end to end: recognising a join that needs no copy."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch


def laid_end_to_end(parts: Sequence[torch.Tensor], rows: int = 1, lead: int = 0
                    ) -> torch.Tensor | None:
    """The tensor ``(*lead dims, rows, total)`` (``rows`` 1: without the rows dim) whose views
    ``parts`` are, one after another along the last dim; None when they are not (then
    joining them takes a copy)."""
    base = parts[0]._base
    if base is None or not base.is_contiguous():
        return None
    total = sum(p.numel() for p in parts) // (rows * math.prod(parts[0].shape[:lead]))
    if base.shape[lead:] != ((rows, total) if rows > 1 else (total,)):
        return None
    start = 0
    for p in parts:
        size = p[(0,) * lead].numel() // rows if lead else p.numel() // rows
        flat = rows == 1 and lead == 0  # then each part must be one contiguous run
        if p._base is not base or p.storage_offset() != start or (
                flat and not p.is_contiguous()):
            return None
        start += size
    return base if start == total else None
