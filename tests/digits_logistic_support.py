"""Logistic regression on scikit-learn's digits trained through a controller: used by
``tests/test_controller_learning.py`` and ``benchmarks/rounding.py``."""

from __future__ import annotations

import math

import torch
from dwlab.sim.twin import PRESETS, TwinArray
from sklearn.datasets import load_digits

from dwlab.config import ControllerConfig
from dwlab.sgld.controller import build_optimizer
from dwlab.sgld.optimizer import SGLDController

# Steps a tenth of the preset's (a 1 ns pulse), spreads as in the preset: the 7-bit budget
# spans about an eighth of the track, and weight_range 5 gives a temperature of about 0.1.
PARAMS = PRESETS["continuous_dw"].replace(
    mu_push=0.001, mu_pull=0.0009, sigma_push=0.004 * math.sqrt(0.1),
    sigma_pull=0.004 * math.sqrt(0.1),
)

Digits = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def digits_split() -> Digits:
    """1400 training and 397 test images, pixels scaled to [0, 1]."""
    x, y = load_digits(return_X_y=True)
    xt = torch.tensor(x, dtype=torch.float32) / 16.0
    yt = torch.tensor(y)
    return xt[:1400], yt[:1400], xt[1400:], yt[1400:]


def train_logistic(cfg: ControllerConfig, data: Digits, seed: int = 0, params=PARAMS,
                   epochs: int = 4) -> tuple[torch.Tensor, SGLDController]:
    """Train ``Linear(64, 10)`` with ``cfg`` (batch 64; initial weights, data order and
    twins from ``seed``); returns the test logits and the (closed) optimizer."""
    x_train, y_train, x_test, _ = data
    torch.manual_seed(seed)
    model = torch.nn.Linear(64, 10)
    opt = build_optimizer(
        model, cfg, dataset_size=len(x_train), seed=1 + seed,
        array_factory=lambda name, shape, off: TwinArray(shape, params, seed=20 + off + seed),
    )
    order = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        perm = torch.randperm(len(x_train), generator=order)
        for i in range(0, len(x_train), 64):
            idx = perm[i:i + 64]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x_train[idx]), y_train[idx]).backward()
            opt.step()
    opt.close()
    with torch.no_grad():
        return model(x_test), opt
