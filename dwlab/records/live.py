"""The live view of a run: a TensorBoard event file written as the run goes, so
``dwlab watch RUN_DIR`` (or ``tensorboard --logdir RUN_DIR``) shows it while it runs and
after a crash or Ctrl-C.

Scalars are taken from whatever numeric columns a record row holds, so a new column in a
table appears in the live view without touching this module. Figures are the same
matplotlib figures the PNG records use (:mod:`dwlab.records.plots`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

FLUSH_SECONDS = 5
"""How stale the event file on disk may be while a run goes on."""
FIGURE_SECONDS = 20.0
"""Least wall time between two redraws of a run's figures (PNGs, live-view images)."""


class Pacer:
    """Says when a redraw is due: the first time, when forced, then at most once per
    ``seconds`` of wall time. Laying out a figure costs about a second; redrawn every
    epoch, the figures of a short run took longer than its training."""

    def __init__(self, seconds: float = FIGURE_SECONDS) -> None:
        self.seconds = seconds
        self._last: float | None = None

    def due(self, force: bool = False) -> bool:
        now = time.monotonic()
        if force or self._last is None or now - self._last >= self.seconds:
            self._last = now
            return True
        return False


def numeric(value: Any) -> float | None:
    """A finite number from a record cell (numbers, or text as written to a CSV), else
    None."""
    if isinstance(value, bool):
        return float(value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


class LiveView:
    """One run's TensorBoard event file in ``folder``; open it, add to it, close it."""

    def __init__(self, folder: str | Path):
        # tensorboard's writer loads only when a run writes a live view
        from torch.utils.tensorboard import SummaryWriter

        self.folder = Path(folder)
        self._writer = SummaryWriter(log_dir=str(self.folder), flush_secs=FLUSH_SECONDS)

    def scalars(self, group: str, row: Mapping[str, Any], step: int,
                skip: tuple[str, ...] = ()) -> None:
        """Every numeric value of ``row`` as the scalar ``group/<column>`` at ``step``."""
        for key, value in row.items():
            number = numeric(value)
            if number is not None and key not in skip:
                self._writer.add_scalar(f"{group}/{key}", number, step)

    def histogram(self, tag: str, values: Any, step: int) -> None:
        array = np.asarray(values, dtype=np.float64).ravel()
        array = array[np.isfinite(array)]
        if array.size:
            self._writer.add_histogram(tag, array, step)

    def figure(self, tag: str, fig: Any, step: int) -> None:
        """A matplotlib figure as an image (the figure is closed)."""
        self._writer.add_figure(tag, fig, step, close=True)

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()

    def __enter__(self) -> LiveView:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
