"""Calibration files: the YAML that ``dwlab calibrate`` writes and a twin config can name.

Format::

    kind: dwlab-twin-calibration
    version: 1
    created: 2026-01-01T00:00:00+00:00
    sources: [runs/protocols/...]
    reference_pulse: {amplitude_volts: 1.0, width_seconds: 1.0e-08}
    params:
      mu_push: {value: 0.0101, stderr: 0.0002, unit: track/pulse}
      ...
    goodness_of_fit: {test: ks_2samp, alpha: 0.05, ..., passed: true}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from dwlab.sim.twin import TwinParams

from dwlab.config import PulseConfig, from_data, read_yaml
from dwlab.config.quantities import MaybeNaN
from dwlab.core.errors import ConfigError
from dwlab.records import atomic_write_text, now_iso

KIND = "dwlab-twin-calibration"


@dataclass(frozen=True)
class ParamEntry:
    value: float
    stderr: MaybeNaN | None = None
    """NaN where the calibration could not estimate it."""
    unit: str = ""


@dataclass(frozen=True)
class CalibrationFile:
    kind: str
    version: int
    params: dict[str, ParamEntry]
    reference_pulse: PulseConfig
    created: str = ""
    sources: list[str] = field(default_factory=list)
    goodness_of_fit: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        if self.kind != KIND:
            raise ValueError(f"kind must be '{KIND}', got '{self.kind}'")
        if self.version != 1:
            raise ValueError(f"unsupported calibration version {self.version}")


def read_calibration(path: str | Path) -> CalibrationFile:
    path = Path(path)
    return from_data(CalibrationFile, read_yaml(path), file=str(path))


def load_calibration_params(path: str | Path, base: TwinParams) -> TwinParams:
    """``base`` with every calibrated value (and the reference pulse) from ``path``."""
    cal = read_calibration(path)
    changes = {name: entry.value for name, entry in cal.params.items()}
    changes["nominal_amplitude_volts"] = cal.reference_pulse.amplitude_volts
    changes["nominal_width_seconds"] = cal.reference_pulse.width_seconds
    try:
        return base.replace(**changes)
    except ValueError as exc:
        raise ConfigError(str(exc), file=str(path), key="params") from None


def write_calibration(path: str | Path, values: dict[str, float], stderr: dict[str, float],
                      units: dict[str, str], reference: tuple[float, float],
                      sources: list[str], goodness_of_fit: dict[str, Any]) -> None:
    data = {
        "kind": KIND, "version": 1, "created": now_iso(), "sources": list(sources),
        "reference_pulse": {"amplitude_volts": float(reference[0]),
                            "width_seconds": float(reference[1])},
        "params": {name: {"value": float(v), "stderr": float(stderr.get(name, float("nan"))),
                          "unit": units.get(name, "")} for name, v in values.items()},
        "goodness_of_fit": goodness_of_fit,
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, yaml.safe_dump(data, sort_keys=False))
