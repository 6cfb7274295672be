"""Protocol records read as data (never imported from ``dwlab.protocols``), and the
switching steps they hold, grouped per pulse condition."""

from __future__ import annotations

import json
from collections import defaultdict
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
    """Steps (siemens) of one condition and the device each came from."""

    delta: np.ndarray
    device: np.ndarray


def rows_array(rows: list[dict[str, str]], keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The named columns of a table as float arrays."""
    return {k: np.array([float(r[k]) for r in rows]) for k in keys}


def group_by_condition(
    s: dict[str, np.ndarray], mask: np.ndarray
) -> dict[ConditionKey, np.ndarray]:
    """Row indices of the ``mask``ed steps per pulse condition, sorted by condition."""
    groups: dict[ConditionKey, list[np.intp]] = defaultdict(list)
    for k in np.flatnonzero(mask):
        groups[(float(s["amplitude_volts"][k]), float(s["width_seconds"][k]),
                int(s["polarity"][k]))].append(k)
    return {k: np.asarray(v) for k, v in sorted(groups.items())}


def steps_by_condition(rows: list[dict[str, str]]) -> dict[ConditionKey, Steps]:
    """Steps of a ``switching_statistics`` table per (amplitude, width, polarity)."""
    s = rows_array(rows, ("amplitude_volts", "width_seconds", "polarity", "delta_siemens",
                          "device"))
    return {k: Steps(s["delta_siemens"][idx], s["device"][idx].astype(int))
            for k, idx in group_by_condition(s, np.ones(len(rows), dtype=bool)).items()}
