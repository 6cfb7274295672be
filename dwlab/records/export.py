"""Run folders for other tools: every table as a pandas DataFrame or an xarray Dataset with
units and provenance as attributes, and all of them in one NetCDF (HDF5) file.

``load_run(folder)`` reads any run folder (training, sweep, protocol script or a single
protocol step, finished or not): each ``*.csv`` below it becomes a table named by its
path without the suffix (``push_pull_pair-7bit/epochs``, ``02-read_noise/reads``), each
``*.jsonl`` an event table. Units come from the column names' unit suffixes
(``conductance_siemens`` is in S), provenance from the nearest ``metadata.json``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dwlab.records.files import read_events, read_table

if TYPE_CHECKING:
    import pandas as pd
    import xarray as xr

UNIT_SUFFIXES = {"_siemens": "S", "_seconds": "s", "_volts": "V", "_amperes": "A",
                 "_ohms": "Ohm", "_meters": "m"}
"""Column-name endings that carry a unit (dwlab names quantities this way)."""
UNITS = {"seconds": "s", "train_seconds": "s"}
"""Columns whose whole name is the quantity."""
PROVENANCE_KEYS = ("kind", "started", "ended", "finished", "status", "git_revision", "seed",
                   "config_path", "script_file", "protocol")
NETCDF_NAME = "records.nc"


def column_unit(name: str) -> str | None:
    """The unit a column's name gives (None: a count, a label or a ratio)."""
    if name in UNITS:
        return UNITS[name]
    return next((unit for suffix, unit in UNIT_SUFFIXES.items() if name.endswith(suffix)),
                None)


def _frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Rows as a DataFrame: numeric columns as numbers, empty cells as missing."""
    import pandas as pd

    frame = pd.DataFrame(rows)
    for column in frame.columns:
        values = frame[column].replace("", None)
        try:
            frame[column] = pd.to_numeric(values)
        except (TypeError, ValueError):
            frame[column] = values
    return frame


def _last_attempt(frame: pd.DataFrame) -> pd.DataFrame:
    """A resumed training run writes the replayed steps again: the last row of each step
    is the one that counts."""
    if {"attempt", "step"} <= set(frame.columns):
        return frame.drop_duplicates(subset="step", keep="last").reset_index(drop=True)
    return frame


def _grid_index(frame: pd.DataFrame) -> pd.DataFrame:
    """A device index written as ``RxC`` (a crossbar address) also as ``row`` and
    ``column`` integers, so maps pivot onto their layout."""
    if "index" in frame.columns and frame["index"].astype(str).str.fullmatch(r"\d+x\d+").all():
        parts = frame["index"].astype(str).str.split("x", expand=True).astype(int)
        frame = frame.assign(row=parts[0], column=parts[1])
    return frame


@dataclass
class RunRecords:
    """The records of one run folder, loaded (see :func:`load_run`)."""

    path: Path
    metadata: dict[str, Any]
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    """CSV tables by name (relative path without ``.csv``)."""
    events: dict[str, pd.DataFrame] = field(default_factory=dict)
    """JSON-lines event streams by name."""
    provenance: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per table name: the metadata of the record it belongs to."""

    def dataset(self, name: str, dims: list[str] | None = None) -> xr.Dataset:
        """Table ``name`` as an xarray Dataset: one variable per column, indexed by
        ``dims`` (columns, e.g. ``["update_bits", "seed"]`` for a sweep or
        ``["row", "column"]`` for a device map) or by the row number; every variable's
        unit in ``attrs["units"]``, the record's provenance in the Dataset's attrs."""
        frame = self.tables[name]
        ds = (frame.set_index(dims).to_xarray() if dims
              else frame.rename_axis("record").to_xarray())
        for var in list(ds.data_vars) + list(ds.coords):
            unit = column_unit(str(var))
            if unit:
                ds[var].attrs["units"] = unit
        ds.attrs.update(_attributes(self.provenance.get(name, self.metadata)))
        ds.attrs["table"] = name
        ds.attrs["run_folder"] = str(self.path)
        return ds

    def to_netcdf(self, path: str | Path | None = None) -> Path:
        """Every table in one NetCDF-4 (HDF5) file, one group per table (``/`` in a table's
        name becomes a nested group); default ``records.nc`` in the run folder."""
        target = Path(path) if path is not None else self.path / NETCDF_NAME
        tmp = target.with_name(target.name + ".tmp")
        tmp.unlink(missing_ok=True)
        mode: Any = "w"
        for name in self.tables:
            ds = self.dataset(name)
            for var in ds.data_vars:  # text columns: NetCDF wants one string type
                if ds[var].dtype == object:
                    ds[var] = ds[var].fillna("").astype(str)
            ds.to_netcdf(tmp, mode=mode, group=name, engine="h5netcdf")
            mode = "a"
        if mode == "w":  # no table yet: an empty file with the provenance
            import xarray as xr

            xr.Dataset(attrs=_attributes(self.metadata)).to_netcdf(tmp, engine="h5netcdf")
        tmp.replace(target)
        return target


def _attributes(metadata: dict[str, Any]) -> dict[str, str | int | float]:
    """Provenance as NetCDF attributes: the key facts one by one, everything as JSON."""
    attrs: dict[str, str | int | float] = {
        k: metadata[k] for k in PROVENANCE_KEYS
        if isinstance(metadata.get(k), str | int | float) and not isinstance(metadata[k], bool)}
    for name, version in (metadata.get("versions") or {}).items():
        attrs[f"version_{name}"] = str(version)
    attrs["metadata_json"] = json.dumps(metadata, default=str)
    return attrs


def _metadata_for(path: Path, root: Path, cache: dict[Path, dict[str, Any]]) -> dict[str, Any]:
    """The metadata of the record holding ``path``: the nearest metadata.json up to root."""
    for folder in [path.parent, *path.parent.parents]:
        if folder not in cache:
            meta = folder / "metadata.json"
            cache[folder] = json.loads(meta.read_text()) if meta.is_file() else {}
        if cache[folder] or folder == root:
            return cache[folder]
    return {}


def load_run(folder: str | Path) -> RunRecords:
    """Every table and event stream of a run folder, as pandas DataFrames (see the module
    docstring); ``.dataset(name)`` gives one as xarray, ``.to_netcdf()`` all of them."""
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such run folder")
    cache: dict[Path, dict[str, Any]] = {}
    records = RunRecords(root, _metadata_for(root / "x", root, cache))
    for path in sorted(root.rglob("*.csv")):
        name = path.relative_to(root).with_suffix("").as_posix()
        records.tables[name] = _grid_index(_last_attempt(_frame(read_table(path))))
        records.provenance[name] = _metadata_for(path, root, cache)
    for path in sorted(root.rglob("*.jsonl")):
        events = read_events(path)
        rows = [{k: v if isinstance(v, str | int | float | bool) or v is None
                 else json.dumps(v) for k, v in e.items()} for e in events]
        records.events[path.relative_to(root).with_suffix("").as_posix()] = _frame(rows)
    return records
