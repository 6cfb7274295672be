"""PNG plots (matplotlib, Agg backend), written atomically: the training records' plots,
and the figure helpers that protocol and calibration reports share (this module needs
only ``dwlab.records``, so every layer may use it)."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (backend must be chosen first)

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
    fig, axes = plt.subplots(rows, cols, figsize=(cell_inches[0] * cols, cell_inches[1] * rows),
                             squeeze=False, **kwargs)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    return fig, axes


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
    fig, (ax_loss, ax_acc, ax_nll) = plt.subplots(1, 3, figsize=(14, 3.8))
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
    ax_nll.set(xlabel="epoch", ylabel="test NLL (nats)", yscale="log")
    return _finish(fig, (ax_loss, ax_acc, ax_nll), title, path)


def accuracy_vs_bits(
    bits: Sequence[int], accuracy_mean: Sequence[float], accuracy_std: Sequence[float],
    references: dict[str, float], path: str | Path, title: str = "",
) -> Path:
    """Test accuracy of push-pull SGLD against update precision, with float references."""
    fig, ax = plt.subplots(figsize=(5.5, 4))
    ax.errorbar(list(bits), [100 * a for a in accuracy_mean],
                yerr=[100 * s for s in accuracy_std], marker="o", capsize=3,
                label="push-pull SGLD (twin)")
    styles = ["--", ":", "-."]
    for i, (label, acc) in enumerate(references.items()):
        ax.axhline(100 * acc, ls=styles[i % len(styles)], color=f"C{i + 1}", label=label)
    ax.set(xlabel="update precision (bits)", ylabel="test accuracy (%)")
    return _finish(fig, [ax], title, path)


def conductance_histograms(
    conductances: Mapping[str, Sequence[float]], path: str | Path, title: str = ""
) -> Path:
    """Histogram of device conductances (microsiemens), one panel per array."""
    n = max(1, len(conductances))
    fig, axes = plt.subplots(1, n, figsize=(4.5 * n, 3.5), squeeze=False)
    for ax, (name, g) in zip(axes[0], conductances.items(), strict=True):
        ax.hist([1e6 * v for v in g], bins=80)
        ax.set(xlabel="conductance (uS)", ylabel="devices", title=name)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    return save_png(fig, path)
