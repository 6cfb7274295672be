"""PNG plots (matplotlib, Agg backend), written atomically: the training records' plots,
and the figure helpers that protocol and calibration reports share (this module needs
only ``dwlab.records``, so every layer may use it)."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (backend must be chosen first)
from matplotlib.ticker import (  # noqa: E402
    EngFormatter,
    FormatStrFormatter,
    MaxNLocator,
    NullFormatter,
)

from dwlab.records import atomic_write_bytes  # noqa: E402


def save_png(fig, path: str | Path) -> Path:
    """Write ``fig`` as PNG atomically (no torn image after a crash) and close it."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)


def subplot_grid(n: int, max_cols: int, cell_inches: tuple[float, float], **kwargs: Any):
    """A figure with ``n`` panels in rows of at most ``max_cols``; surplus axes are hidden.
    Returns the figure and the 2-D array of axes (iterate ``axes.flat``)."""
    cols = min(max_cols, max(1, n))
    rows = -(-max(1, n) // cols)
    kwargs.setdefault("layout", "constrained")  # titles and tick labels never overlap
    fig, axes = plt.subplots(rows, cols, figsize=(cell_inches[0] * cols, cell_inches[1] * rows),
                             squeeze=False, **kwargs)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    return fig, axes


def engineering(ax, axis: str, unit: str, max_ticks: int | None = None) -> None:
    """Engineering notation with SI prefixes on a physical axis ("x" or "y"; a colorbar's
    scale is the "y" axis of its own axes): 2.5 µS, 5 ns, not 2.5e-06 or "uS".
    ``max_ticks`` thins the ticks of a small panel so their labels do not collide."""
    target = {"x": ax.xaxis, "y": ax.yaxis}[axis]
    target.set_major_formatter(EngFormatter(unit=unit))
    if max_ticks is not None:
        target.set_major_locator(MaxNLocator(nbins=max_ticks))


def eng(value: float, unit: str) -> str:
    """One value in engineering notation, to three significant digits, for a label or a
    legend: eng(1e-9, "s") is "1 ns"."""
    return EngFormatter(unit=unit, sep=" ")(float(f"{value:.3g}"))


def integer_ticks(ax, axis: str = "x") -> None:
    """Ticks only at whole numbers (bits, epochs, pulse counts)."""
    {"x": ax.xaxis, "y": ax.yaxis}[axis].set_major_locator(MaxNLocator(integer=True))


def _finish(fig, axes: Sequence[Any], title: str, path: str | Path) -> Path:
    """Grid and legend on every panel, the title over the figure, then save."""
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return save_png(fig, path)


def learning_curves(
    curves: dict[str, dict[str, list[float]]], path: str | Path, title: str = ""
) -> Path:
    """Training loss per step, and test accuracy and NLL per epoch, one colour per run
    label: solid for the current (final) weights, dashed for the posterior sample average
    where a run has one.

    ``curves[label]`` holds lists ``step``, ``loss``, ``epoch``, ``test_accuracy``,
    ``test_nll``, and optionally ``bma_epoch``, ``bma_accuracy``, ``bma_nll``.
    """
    fig, (ax_loss, ax_acc, ax_nll) = plt.subplots(1, 3, figsize=(14, 3.8), layout="constrained")
    for i, (label, c) in enumerate(curves.items()):
        colour = f"C{i}"
        if c.get("step"):
            ax_loss.plot(c["step"], c["loss"], label=label, lw=0.8, color=colour)
        if c.get("epoch"):
            ax_acc.plot(c["epoch"], [100 * a for a in c["test_accuracy"]], marker="o",
                        color=colour, label=f"{label} final weights")
            ax_nll.plot(c["epoch"], c["test_nll"], marker="o", color=colour,
                        label=f"{label} final weights")
        if c.get("bma_epoch"):
            ax_acc.plot(c["bma_epoch"], [100 * a for a in c["bma_accuracy"]], marker="s",
                        ls="--", color=colour, label=f"{label} model average")
            ax_nll.plot(c["bma_epoch"], c["bma_nll"], marker="s", ls="--", color=colour,
                        label=f"{label} model average")
    ax_loss.set(xlabel="step", ylabel="training loss", yscale="log")
    ax_acc.set(xlabel="epoch", ylabel="test accuracy (%)")
    integer_ticks(ax_acc)
    ax_nll.set(xlabel="epoch", ylabel="test NLL (nats)", yscale="log")
    integer_ticks(ax_nll)
    for ax in (ax_loss, ax_nll):
        _plain_log_ticks(ax)
    return _finish(fig, (ax_loss, ax_acc, ax_nll), title, path)


def _plain_log_ticks(ax) -> None:
    """0.3, 1, 2 rather than 3 x 10^-1 on a log y axis; labels between the decades only when
    the axis spans less than one."""
    ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
    low, high = ax.get_ylim()
    ax.yaxis.set_minor_formatter(FormatStrFormatter("%g") if high < 10 * low
                                 else NullFormatter())


def accuracy_vs_bits(
    bits: Sequence[int], accuracy_mean: Sequence[float], accuracy_std: Sequence[float],
    references: dict[str, float], path: str | Path, title: str = "",
) -> Path:
    """Test accuracy of push-pull SGLD against update precision, with float references."""
    fig, ax = plt.subplots(figsize=(5.5, 4), layout="constrained")
    ax.errorbar(list(bits), [100 * a for a in accuracy_mean],
                yerr=[100 * s for s in accuracy_std], marker="o", capsize=3,
                label="push-pull SGLD (twin)")
    styles = ["--", ":", "-."]
    for i, (label, acc) in enumerate(references.items()):
        ax.axhline(100 * acc, ls=styles[i % len(styles)], color=f"C{i + 1}", label=label)
    ax.set(xlabel="update precision (bits)", ylabel="test accuracy (%)")
    integer_ticks(ax)
    return _finish(fig, [ax], title, path)


Window = tuple[float, float]
"""The nominal conductance window of an array: (G_min, G_max) in siemens."""


def conductance_histograms(
    conductances: Mapping[str, Sequence[float] | np.ndarray], path: str | Path | None,
    title: str = "", windows: Mapping[str, Window] | None = None,
):
    """Histogram of device conductances, one panel per array, the nominal window marked.
    Saved to ``path``; with ``path`` None the figure is returned (for the live view)."""
    fig, axes = subplot_grid(len(conductances), 3, (4.5, 3.4))
    for ax, (name, g) in zip(axes.flat, conductances.items(), strict=False):
        ax.hist(np.asarray(g, dtype=float), bins=80, color="C0")
        if windows and name in windows:
            for edge, label in zip(windows[name], ("window", None), strict=True):
                ax.axvline(edge, color="C3", ls="--", lw=1, label=label)
            ax.legend(fontsize=8)
        engineering(ax, "x", "S", max_ticks=5)
        ax.set(xlabel="conductance", ylabel="devices", title=name)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    return fig if path is None else save_png(fig, path)


def crossbar_planes(g: np.ndarray, pair: bool) -> dict[str, np.ndarray]:
    """Conductances of one weight's array laid out as the crossbar holds them: rows are the
    weight's outputs, columns its inputs (a convolution's kernel unrolled along the
    columns); a differential pair gives a G+ and a G- plane."""
    g = np.asarray(g, dtype=float)
    planes = {"G+": g[0], "G-": g[1]} if pair else {"G": g}
    return {name: p.reshape(p.shape[0], -1) if p.ndim > 1 else p.reshape(1, -1)
            for name, p in planes.items()}


def _tick_labels(count: int, prefix: str, max_labels: int = 16) -> tuple[list[int], list[str]]:
    """At most ``max_labels`` evenly spaced tick positions, labelled ``prefix`` + index."""
    stride = max(1, -(-count // max_labels))
    positions = list(range(0, count, stride))
    return positions, [f"{prefix}{i}" for i in positions]


def crossbar_heatmap(ax, grid: np.ndarray, window: Window | None = None,
                     title: str = "", row_prefix: str = "r", col_prefix: str = "c"):
    """A conductance map of a crossbar (rows x columns, row and column labels), its colour
    scale in siemens spanning the nominal window when given; returns the image."""
    grid = np.atleast_2d(np.asarray(grid, dtype=float))
    vmin, vmax = window if window else (None, None)
    image = ax.imshow(grid, cmap="viridis", vmin=vmin, vmax=vmax, interpolation="nearest",
                      aspect="equal" if max(grid.shape) <= 32 else "auto")
    rows, row_labels = _tick_labels(grid.shape[0], row_prefix)
    cols, col_labels = _tick_labels(grid.shape[1], col_prefix)
    ax.set_yticks(rows, row_labels, fontsize=7)
    ax.set_xticks(cols, col_labels, fontsize=7, rotation=90 if len(cols) > 8 else 0)
    ax.set(xlabel="column", ylabel="row", title=title)
    bar = ax.figure.colorbar(image, ax=ax, shrink=0.85, extend="both" if window else "neither")
    engineering(bar.ax, "y", "S")
    return image


def crossbar_maps(maps: Mapping[str, np.ndarray], path: str | Path | None, title: str = "",
                  window: Window | None = None, max_cols: int = 2):
    """One crossbar heatmap per entry of ``maps`` (name -> rows x columns, siemens).
    Saved to ``path``; with ``path`` None the figure is returned (for the live view)."""
    fig, axes = subplot_grid(len(maps), max_cols, (4.8, 4.0))
    for ax, (name, grid) in zip(axes.flat, maps.items(), strict=False):
        crossbar_heatmap(ax, grid, window, title=name)
    if title:
        fig.suptitle(title)
    return fig if path is None else save_png(fig, path)
