"""Run records: one folder per run, written so that a crash loses nothing already recorded.

- ``metadata.json``: who, what, when (versions, git revision, seeds, config, times);
  rewritten atomically.
- data tables (``*.csv``) and event streams (``*.jsonl``): appended and flushed row by row,
  fsynced, so a run killed mid-way keeps every completed row.
- ``atomic_write_bytes``: write to a temporary file, fsync, rename (checkpoints, plots).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import dwlab


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def git_revision() -> str | None:
    """The git revision of the dwlab source tree, if it is a checkout."""
    root = Path(dwlab.__file__).resolve().parents[1]
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=5, check=True,
        )
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() + ("+dirty" if dirty else "")


def versions() -> dict[str, str]:
    import numpy
    import torch

    found = {"dwlab": dwlab.__version__, "python": sys.version.split()[0],
             "platform": platform.platform(), "numpy": numpy.__version__,
             "torch": torch.__version__}
    for name in ("pyvisa", "pymeasure"):
        try:
            module = __import__(name)
            found[name] = getattr(module, "__version__", "unknown")
        except ImportError:
            pass
    return found


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that a reader sees the old or the new file, whole."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: str | Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class TableWriter:
    """Append-only CSV table: header once, each row flushed and fsynced as it is written.

    Reopening an existing file appends (resume); the header must match.
    """

    def __init__(self, path: str | Path, columns: list[str]):
        self.path = Path(path)
        self.columns = list(columns)
        exists = self.path.exists() and self.path.stat().st_size > 0
        if exists:
            with open(self.path, newline="") as fh:
                header = next(csv.reader(fh), None)
            if header != self.columns:
                raise ValueError(f"{self.path}: existing header {header} != {self.columns}")
        self._fh = open(self.path, "a", newline="")
        if not exists:
            self._write_line(self.columns)

    def _write_line(self, values: list[Any]) -> None:
        buf = io.StringIO()
        csv.writer(buf).writerow(values)
        self._fh.write(buf.getvalue())
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def append(self, row: dict[str, Any]) -> None:
        unknown = set(row) - set(self.columns)
        if unknown:
            raise ValueError(f"{self.path}: unknown column(s) {sorted(unknown)}")
        self._write_line([row.get(c, "") for c in self.columns])

    def append_rows(self, rows: list[dict[str, Any]]) -> None:
        """Append several rows with one flush and fsync (one measurement step, many devices)."""
        buf = io.StringIO()
        writer = csv.writer(buf)
        for row in rows:
            unknown = set(row) - set(self.columns)
            if unknown:
                raise ValueError(f"{self.path}: unknown column(s) {sorted(unknown)}")
            writer.writerow([row.get(c, "") for c in self.columns])
        self._fh.write(buf.getvalue())
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> TableWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_table(path: str | Path) -> list[dict[str, str]]:
    """Read a table written by :class:`TableWriter`; a torn last line (crash) is dropped."""
    with open(path, newline="") as fh:
        lines = fh.read().splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines = lines[:-1]
    reader = csv.DictReader(lines)
    return [row for row in reader if None not in row and None not in row.values()]


class EventLog:
    """Append-only JSON-lines stream, flushed and fsynced per event."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._fh = open(self.path, "a")

    def write(self, event: dict[str, Any]) -> None:
        self._fh.write(json.dumps(event, default=str) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        self._fh.close()


def read_events(path: str | Path) -> list[dict[str, Any]]:
    """Read an :class:`EventLog`; a torn last line is dropped."""
    events = []
    for line in Path(path).read_text().splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return events


def new_run_dir(parent: str | Path, name: str) -> Path:
    """A fresh folder ``parent/<UTC time>-<name>``; never reuses an existing one."""
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    for i in range(1000):
        candidate = parent / (f"{stamp}-{name}" + (f"-{i}" if i else ""))
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        return candidate
    raise RuntimeError(f"could not create a run folder under {parent}")


def base_metadata(kind: str, seed: int | None = None, **extra: Any) -> dict[str, Any]:
    """Metadata common to every record: kind, versions, git revision, seed, start time."""
    return {"kind": kind, "started": now_iso(), "versions": versions(),
            "git_revision": git_revision(), "seed": seed, **extra}
