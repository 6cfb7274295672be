"""The device arrays of one training run: built with its optimiser, read at the end,
closed whatever ends the run."""

from __future__ import annotations

import torch
from torch import nn

from dwlab.config import ControllerConfig, LoadedConfig
from dwlab.core.device import DeviceArray
from dwlab.records import EventLog, now_iso
from dwlab.sgld.controller import SGLDController, build_optimizer


def build_training_optimizer(model: nn.Module, loaded: LoadedConfig,
                             controller: ControllerConfig, dataset_size: int, seed: int,
                             arrays: list[DeviceArray] | None = None,
                             event_log: EventLog | None = None) -> SGLDController:
    """The controller for ``controller.scheme``, with arrays built from ``loaded``.

    Every array built is appended to ``arrays`` (also when the controller's checks then
    refuse it), so the caller can close each one; ``event_log`` receives the arrays'
    events (see :func:`dwlab.app.backends.build_array`).
    """
    from dwlab.app.backends import build_array

    def array_factory(name: str, shape: tuple[int, ...], seed_offset: int) -> DeviceArray:
        array = build_array(loaded, name, shape, seed_offset, event_log=event_log)
        if arrays is not None:
            arrays.append(array)
        return array

    return build_optimizer(model, controller, dataset_size=dataset_size,
                           array_factory=array_factory, mapping=loaded.config.mapping,
                           seed=seed)


def close_arrays(arrays: list[DeviceArray], event_log: EventLog) -> list[Exception]:
    """Close every array (safe state, then disconnect), even when one fails; each failure
    is recorded in ``event_log`` and returned."""
    from dwlab.app.backends import close_array

    failures = []
    for array in arrays:
        try:
            close_array(array)
        except Exception as exc:  # keep going: every array must be made safe and released
            failures.append(exc)
            event_log.write({"time": now_iso(), "event": "array_close_failed",
                             "error": f"{type(exc).__name__}: {exc}"})
    return failures


def device_conductances(opt: SGLDController) -> dict[str, torch.Tensor]:
    """All device conductances, pooled per configured array (for histograms)."""
    pooled: dict[str, list[torch.Tensor]] = {}
    for dw in opt.weights:
        g = dw.array.read().conductance_siemens.flatten().float().cpu()
        pooled.setdefault(dw.array_name, []).append(g)
    return {name: torch.cat(parts) for name, parts in pooled.items()}
