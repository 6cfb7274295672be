"""Posterior sampling of one chain: when it starts and how often (:class:`ChainMonitor`),
the samples and their Bayesian model average (:class:`PosteriorStore`)."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from dwlab.app.training.chain import autocorrelation_time, stationarity


class WeightProjection:
    """A fixed random unit direction over all trainable parameters of a model; a chain's
    position along it is a scalar trace whose autocorrelation says how fast the weights
    decorrelate."""

    def __init__(self, model: nn.Module, seed: int):
        gen = torch.Generator().manual_seed(seed)
        params = [p for p in model.parameters() if p.requires_grad]
        directions = [torch.randn(p.shape, generator=gen) for p in params]
        norm = math.sqrt(sum(float(d.square().sum()) for d in directions))
        self.directions = [(d / norm).to(p.device, p.dtype)
                           for d, p in zip(directions, params, strict=True)]

    @torch.no_grad()
    def __call__(self, model: nn.Module) -> float:
        params = [p for p in model.parameters() if p.requires_grad]
        total = sum((p * d).sum() for p, d in zip(params, self.directions, strict=True))
        return float(total)


class ChainMonitor:
    """Decides when posterior sampling starts and its thinning, from the chain's traces.

    Sampling starts at ``min_start`` (the burn-in), or, with a ``z_limit``, at the first
    test from there on where the training loss over the last ``window`` steps is
    stationary (:func:`~dwlab.app.training.chain.stationarity`); the test runs every half
    window. Samples are then taken every ``thinning`` steps, or (None) every
    autocorrelation time of the weight projection, measured from the window before the
    start and measured again at every sample as the trace grows.
    """

    def __init__(self, min_start: int, window: int, z_limit: float | None,
                 thinning: int | None):
        self.min_start = min_start
        self.window = max(8, window)
        self.z_limit = z_limit
        self.fixed_thinning = thinning
        self.start: int | None = None
        self.next_sample: int | None = None
        self.thinning = thinning or 0
        self.last_z: float | None = None
        self.losses: list[float] = []
        self.projections: list[float] = []  # from ``window`` steps before the start on
        self.sampling_offset = 0  # where the sampling phase starts in ``projections``

    def record(self, step: int, loss: float, projection: float) -> bool:
        """The trace values of ``step`` (1-based; every step, in order). True when a
        posterior sample is due at this step."""
        self.losses.append(loss)
        self.projections.append(projection)
        if self.start is None:
            del self.losses[:-self.window]
            del self.projections[:-self.window]
            self._maybe_start(step)
            return False
        del self.losses[:-self.window]
        if step != self.next_sample:
            return False
        self._set_thinning()
        self.next_sample = step + self.thinning
        return True

    def _maybe_start(self, step: int) -> None:
        if self.z_limit is None:
            if step >= self.min_start:
                self._start_at(self.min_start)
            return
        first = max(self.min_start, self.window)
        if step < first or (step - first) % max(1, self.window // 2):
            return
        test = stationarity(self.losses, self.z_limit)
        self.last_z = test.z
        if test.stationary:
            self._start_at(step)

    def _start_at(self, step: int) -> None:
        self.start = step
        self.sampling_offset = len(self.projections)
        self._set_thinning()
        self.next_sample = step + self.thinning

    def _set_thinning(self) -> None:
        if self.fixed_thinning is None:
            self.thinning = math.ceil(autocorrelation_time(self.projections).tau)

    def burn_in_warning(self, total_steps: int) -> str | None:
        """Says so when the burn-in leaves no step to sample (logged at the start of a run
        and kept in its summary)."""
        if self.min_start < total_steps:
            return None
        return (f"the burn-in ({self.min_start} steps) is as long as the training "
                f"({total_steps} steps): no posterior sample will be collected")

    def summary(self, total_steps: int, sample_steps: list[int]) -> dict[str, Any]:
        """What the chain did, for the records and the report: where sampling started, the
        thinning, the last stationarity ``z``, the autocorrelation time of the weight
        projection over the sampling phase, its effective sample size, that of the kept
        samples (taken at ``sample_steps``: samples spanning ``S`` steps hold about
        ``1 + S / tau`` independent draws, at most their number), and warnings."""
        tau = ess = kept_ess = None
        samples_kept = len(sample_steps)
        sampled = self.projections[self.sampling_offset:]
        if self.start is not None and len(sampled) >= 2:
            measured = autocorrelation_time(sampled)
            tau, ess = measured.tau, measured.ess
            if sample_steps:
                span = max(sample_steps) - min(sample_steps)
                kept_ess = min(float(samples_kept), 1.0 + span / tau)
        warnings = []
        too_long = self.burn_in_warning(total_steps)
        if too_long:
            warnings.append(too_long)
        elif self.start is None:
            warnings.append(f"the training loss never passed the stationarity test (last "
                            f"|z| {abs(self.last_z or 0):.2f} > {self.z_limit}); train longer")
        if samples_kept == 0:
            warnings.append("no posterior sample was collected: predictions use the final "
                            "weights")
        return {"sampling_from_step": self.start, "thinning_steps": self.thinning or None,
                "stationarity_z": self.last_z, "autocorrelation_steps": tau,
                "ess_steps": ess, "ess_samples": kept_ess, "warnings": warnings}

    _STATE = ("start", "next_sample", "thinning", "last_z", "losses", "projections",
              "sampling_offset")

    def state_dict(self) -> dict[str, Any]:
        return {key: copy.copy(getattr(self, key)) for key in self._STATE}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key in self._STATE:
            setattr(self, key, copy.copy(state[key]))


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
