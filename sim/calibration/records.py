"""Protocol records read as data (never imported from ``dwlab.protocols``), and the
switching steps they hold, grouped per pulse condition."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dwlab.core.errors import DatasetError
from dwlab.records import read_table

ConditionKey = tuple[float, float, int]
"""A pulse condition: (amplitude volts, width seconds, polarity)."""


@dataclass
class Record:
    folder: Path
    meta: dict[str, Any]
    tables: dict[str, list[dict[str, str]]]

    @property
    def protocol(self) -> str:
        return self.meta.get("protocol", "")


def load_records(folders: list[str | Path]) -> list[Record]:
    """Every protocol record under the given folders (a script run or single steps)."""
    found = []
    for top in folders:
        top = Path(top)
        if not top.is_dir():
            raise DatasetError(f"{top}: not a record folder")
        for meta_path in sorted(top.rglob("metadata.json")):
            try:
                meta = json.loads(meta_path.read_text())
            except (OSError, json.JSONDecodeError) as exc:
                raise DatasetError(f"{meta_path}: unreadable metadata ({exc})") from None
            if meta.get("kind") != "protocol":
                continue
            tables = {name: read_table(meta_path.parent / f"{name}.csv")
                      for name in meta.get("tables", {})
                      if (meta_path.parent / f"{name}.csv").exists()}
            found.append(Record(meta_path.parent, meta, tables))
    return found


def need_records(records: list[Record], protocol: str) -> list[Record]:
    """The records of ``protocol`` that hold data (at least one)."""
    chosen = [r for r in records if r.protocol == protocol and any(r.tables.values())]
    if not chosen:
        raise DatasetError(f"calibration needs a '{protocol}' record with data; none found")
    return chosen


@dataclass


class Steps:
    """Steps (siemens) of one condition, the device and repeat each came from, and the
    conductance before each step."""

    delta: np.ndarray
    device: np.ndarray
    repeat: np.ndarray
    before: np.ndarray

    def select(self, mask: np.ndarray) -> Steps:
        return Steps(self.delta[mask], self.device[mask], self.repeat[mask], self.before[mask])


def rows_array(rows: list[dict[str, str]], keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The named columns of a table as float arrays."""
    return {k: np.array([r[k] for r in rows], dtype=float) for k in keys}


def group_by_condition(
    s: dict[str, np.ndarray], mask: np.ndarray
) -> dict[ConditionKey, np.ndarray]:
    """Row indices of the ``mask``ed steps per pulse condition, sorted by condition."""
    rows = np.flatnonzero(mask)
    keys = np.stack([s["amplitude_volts"][rows], s["width_seconds"][rows],
                     s["polarity"][rows]], axis=1)
    unique, inverse = np.unique(keys, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    order = np.argsort(inverse, kind="stable")
    bounds = np.searchsorted(inverse[order], np.arange(len(unique) + 1))
    return {(float(a), float(w), int(p)): rows[order[bounds[i]:bounds[i + 1]]]
            for i, (a, w, p) in enumerate(unique)}


def steps_by_condition(rows: list[dict[str, str]]) -> dict[ConditionKey, Steps]:
    """Steps of a ``switching_statistics`` table per (amplitude, width, polarity)."""
    s = rows_array(rows, STEP_COLUMNS)
    return steps_of(s, np.ones(len(rows), dtype=bool))


STEP_COLUMNS = ("amplitude_volts", "width_seconds", "polarity", "repeat", "device",
                "g_before_siemens", "delta_siemens")
"""The columns of a ``switching_statistics`` table that calibration reads."""


def steps_of(s: dict[str, np.ndarray], mask: np.ndarray) -> dict[ConditionKey, Steps]:
    """The ``mask``ed rows of ``s`` (columns :data:`STEP_COLUMNS`) as steps per condition."""
    return {k: Steps(s["delta_siemens"][idx], s["device"][idx].astype(int),
                     s["repeat"][idx].astype(int), s["g_before_siemens"][idx])
            for k, idx in group_by_condition(s, mask).items()}
