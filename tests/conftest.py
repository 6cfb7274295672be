"""Fixtures shared by several test modules."""

from __future__ import annotations

import os
from typing import Any

import pytest
import torch


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist each worker gets one torch thread: two workers on two cores would
    otherwise run four threads and slow each other down."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        torch.set_num_threads(1)


def _digits_twin_config(name: str, seed: int, *, update_bits: int, **training: Any
                        ) -> dict[str, Any]:
    """A fresh lab config (a new dict every call): the digits MLP trained with push-pull
    pairs on one twin array; ``training`` adds to / replaces the training section."""
    return {
        "name": name,
        "seed": seed,
        "arrays": {"main": {"backend": "twin",
                            "pulse": {"amplitude_volts": 1.0, "width_seconds": 1.0e-9}}},
        "controller": {"scheme": "push_pull_pair", "update_bits": update_bits, "lr": 0.5,
                       "temperature": 0.03},
        "training": {"dataset": "digits", "model": "mlp", "batch_size": 32, **training},
    }


@pytest.fixture(scope="session")
def digits_twin_config():
    """Factory of small training configs: ``digits_twin_config(name, seed,
    update_bits=..., **training)``."""
    return _digits_twin_config
