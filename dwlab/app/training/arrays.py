"""The device arrays of one training run: built with its optimiser by the run's backends
(which close them whatever ends the run), read at the end."""

from __future__ import annotations

import torch
from torch import nn

from dwlab.app.backends import Backends
from dwlab.app.training.distributed import Parallel, sharded_factory
from dwlab.config import ControllerConfig, LoadedConfig
from dwlab.sgld.controller import SGLDController, build_optimizer


def build_training_optimizer(model: nn.Module, loaded: LoadedConfig,
                             controller: ControllerConfig, dataset_size: int, seed: int,
                             backends: Backends, parallel: Parallel | None = None
                             ) -> SGLDController:
    """The controller for ``controller.scheme``, its arrays built by the run's
    ``backends`` (which close them); split into blocks over the ranks when ``parallel``
    shards the run."""
    factory = backends.array
    if parallel is not None and parallel.sharded:
        twins = {name for name, a in loaded.config.arrays.items()
                 if a.backend == "twin" and a.shape is None}
        factory = sharded_factory(backends.array, parallel, twins)
    return build_optimizer(model, controller, dataset_size=dataset_size,
                           array_factory=factory, mapping=loaded.config.mapping,
                           seed=seed)


def device_conductances(opt: SGLDController) -> dict[str, torch.Tensor]:
    """All device conductances, pooled per configured array (for histograms)."""
    pooled: dict[str, list[torch.Tensor]] = {}
    for dw in opt.weights:
        g = dw.array.read().conductance_siemens.flatten().float().cpu()
        pooled.setdefault(dw.array_name, []).append(g)
    return {name: torch.cat(parts) for name, parts in pooled.items()}
