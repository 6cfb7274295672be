"""How a training run ended: its final metrics, or why it failed. Either is kept as the
run's ``result.json``, whose presence marks the run done."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dwlab.app.training.spec import RunSpec
from dwlab.records import atomic_write_json
from dwlab.records.status import error_text

RESULT_FILE = "result.json"


@dataclass(frozen=True)
class RunResult:
    """The final metrics of a finished run.

    ``accuracy``, ``nll``, ``ece`` and ``entropy`` are the headline: the Bayesian model
    average over the posterior samples when there are any (``prediction == "bma"``), else
    the final weights. ``final_weights`` and ``bma`` hold both sets of metrics.
    """

    label: str
    scheme: str
    update_bits: int
    seed: int
    accuracy: float
    nll: float
    ece: float
    entropy: float
    prediction: str
    final_weights: dict[str, float]
    bma: dict[str, float] | None
    samples: int
    steps: int
    train_seconds: float
    pulses_total: int
    mapped_weights: int
    effective_temperature_mean: float
    pulses_per_weight: float
    device_backed: bool
    resumed_attempts: int
    model_parameters: int
    saturated_fraction: float = 0.0
    """Devices within the saturation margin of a track end after the last step."""
    precision: dict[str, float] = dataclasses.field(default_factory=dict)
    """Weight resolution (bits), largest update (fraction of the window), pulse budget:
    ``SGLDController.precision_report``; empty for float runs."""
    tensor_temperatures: dict[str, float] = dataclasses.field(default_factory=dict)
    """By parameter name, the temperature the device noise of each device-backed tensor
    realises at the last step size (``alpha^2 K c sigma_G^2 / (2 eps)``, rounding left out):
    the tensors are mapped to the window by their own initial spread, so their ``alpha``,
    and with it their temperature, differ; ``effective_temperature_mean`` is the mean over
    the weights. Empty for float runs."""
    chain: dict[str, Any] | None = None
    """How the sampling went (``ChainMonitor.summary``): start, thinning, stationarity,
    autocorrelation time, effective sample sizes, warnings; None for float SGD."""

    def event(self) -> dict[str, Any]:
        return {"event": "run_finished", "label": self.label, "accuracy": self.accuracy}


@dataclass(frozen=True)
class FailedRun:
    """A run a sweep gave up on (diverged, or its pulse plan was refused)."""

    label: str
    scheme: str
    update_bits: int
    seed: int
    failed: str

    @classmethod
    def of(cls, spec: RunSpec, exc: Exception) -> FailedRun:
        return cls(**dataclasses.asdict(spec), failed=error_text(exc))

    def event(self) -> dict[str, Any]:
        return {"event": "run_failed", "label": self.label, "error": self.failed}


RunOutcome = RunResult | FailedRun


def write_result(folder: Path, outcome: RunOutcome) -> None:
    atomic_write_json(folder / RESULT_FILE, dataclasses.asdict(outcome))


def read_result(folder: Path) -> RunOutcome | None:
    """The outcome recorded in ``folder``, or None while the run is unfinished."""
    path = folder / RESULT_FILE
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    return FailedRun(**data) if "failed" in data else RunResult(**data)
