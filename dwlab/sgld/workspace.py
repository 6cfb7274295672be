"""Work tensors reused from step to step: allocating them anew is costly at 22 M devices."""

from __future__ import annotations

import torch


class Workspace:
    """Named work tensors on one torch device, reallocated only when shape or dtype change."""

    def __init__(self, device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self._tensors: dict[str, torch.Tensor] = {}

    def get(self, key: str, shape: torch.Size | tuple[int, ...], dtype: torch.dtype
            ) -> torch.Tensor:
        """The tensor ``key`` (uninitialised contents) of ``shape`` and ``dtype``."""
        tensor = self._tensors.get(key)
        if tensor is None or tensor.shape != shape or tensor.dtype != dtype:
            tensor = torch.empty(shape, dtype=dtype, device=self.device)
            self._tensors[key] = tensor
        return tensor
