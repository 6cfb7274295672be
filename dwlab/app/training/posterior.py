"""The posterior store: the chain's most recent samples and their Bayesian model average."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn


class PosteriorStore:
    """The most recent ``max_samples`` posterior samples of one chain.

    A sample holds the model's weights and buffers as the devices held them, and, when
    available, the device snapshots themselves (the sample as it lives on the arrays).
    """

    def __init__(self, max_samples: int):
        self.max_samples = max_samples
        self.samples: list[dict[str, Any]] = []

    def __len__(self) -> int:
        return len(self.samples)

    def add(self, step: int, model: nn.Module, device_states: dict[str, Any] | None) -> None:
        weights = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        self.samples.append({"step": step, "weights": weights, "devices": device_states})
        del self.samples[:-self.max_samples]

    def state_dict(self) -> dict[str, Any]:
        return {"max_samples": self.max_samples, "samples": self.samples}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.max_samples = state["max_samples"]
        self.samples = list(state["samples"])

    def average_probs(self, model: nn.Module, predict: Callable[[], torch.Tensor]
                      ) -> torch.Tensor | None:
        """Bayesian model average: the mean of ``predict()`` over the stored samples.

        The model's current weights are put back afterwards.
        """
        if not self.samples:
            return None
        current = {k: v.detach().clone() for k, v in model.state_dict().items()}
        total: torch.Tensor | None = None
        try:
            for sample in self.samples:
                model.load_state_dict(sample["weights"])
                probs = predict()
                total = probs if total is None else total + probs
        finally:
            model.load_state_dict(current)
        assert total is not None  # there is at least one sample (checked above)
        return total / len(self.samples)
