"""Plotting a protocol's record: the recorded tables read back, figures written as PNG.

matplotlib loads only when a record is plotted.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from dwlab.records import read_table

if TYPE_CHECKING:
    from dwlab.protocols.protocol import Protocol
    from matplotlib.figure import Figure

Table = list[dict[str, str]]
"""A recorded table read back: one dict of column -> text per row."""
Tables = dict[str, Table]


def float_column(rows: Table, key: str) -> np.ndarray:
    """One column of a recorded table as floats."""
    return np.array([float(r[key]) for r in rows])


def save_figure(fig: Figure, path: Path) -> Path:
    """Write a matplotlib figure as PNG atomically and close it."""
    from dwlab.records.plots import save_png

    return save_png(fig, path)


def make_plots(protocol: Protocol, folder: Path) -> list[Path]:
    """Plots of a (possibly partial) record, from its tables."""
    import matplotlib

    matplotlib.use("Agg")
    tables = {name: read_table(folder / f"{name}.csv") for name in protocol.tables
              if (folder / f"{name}.csv").exists()}
    if not any(tables.values()):
        return []
    return protocol.plot(folder, tables)
