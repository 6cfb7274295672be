"""Checkpoints: one file per training run, replaced atomically, read back safely.

A checkpoint is a dict of tensors and plain data saved with ``torch.save`` and loaded with
``weights_only=True`` (no arbitrary code from a file). It is written through
:func:`dwlab.records.atomic_write_bytes`, so a kill at any moment leaves either the old or
the new checkpoint, whole.
"""

from __future__ import annotations

import io
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dwlab.core.errors import CheckpointError
from dwlab.records import atomic_write_bytes


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load raises many types for torn or foreign files
        raise CheckpointError(f"{path}: unreadable checkpoint ({exc})") from None
    if not isinstance(state, dict) or "format" not in state:
        raise CheckpointError(f"{path}: not a dwlab checkpoint")
    return state


def capture_rng_states() -> dict[str, Any]:
    """Every global generator a training step may draw from: torch (CPU, CUDA), numpy,
    python. The data order has its own per-epoch generator (see ``dwlab.app.data``)."""
    np_state: Any = np.random.get_state()  # the legacy tuple (name, keys, pos, ...)
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"name": np_state[0], "keys": torch.from_numpy(np_state[1].astype(np.int64)),
                  "pos": int(np_state[2]), "has_gauss": int(np_state[3]),
                  "cached_gaussian": float(np_state[4])},
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    n = states["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["cached_gaussian"]))
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
