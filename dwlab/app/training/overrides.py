"""Command-line overrides of a lab config's training (and controller) settings, applied and
validated like a config file; shared by ``dwlab train``, ``dwlab sweep`` and the
precision benchmark."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

from dwlab.config import LabConfig, LoadedConfig, from_data, load_config, to_data
from dwlab.core.errors import ConfigError


def add_training_options(p: argparse.ArgumentParser) -> None:
    """The options that override the config's training part, where records go, and the
    progress bar."""
    p.add_argument("--epochs", type=int, help="override training.epochs")
    p.add_argument("--width", type=int, help="override training.width")
    p.add_argument("--limit-train", type=int, help="use only the first N training images")
    p.add_argument("--limit-test", type=int, help="use only the first N test images")
    p.add_argument("--data-dir", help="override training.data_dir")
    p.add_argument("--device", help="torch device for the model and the twins: cpu, cuda")
    p.add_argument("--update-range", type=float,
                   help="the fixed-range ablation: controller.precision fixed_range with "
                        "this update_range (largest update, as a fraction of the "
                        "conductance window)")
    p.add_argument("--bf16", action=argparse.BooleanOptionalAction,
                   help="bf16 autocast of the forward pass on or off (default: the config's)")
    p.add_argument("--run-dir", type=Path,
                   help="write records here (default: a new folder under training.runs_dir)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def config_with_overrides(path: Path, args: argparse.Namespace, **training: Any
                          ) -> LoadedConfig:
    """The config at ``path`` with the options of :func:`add_training_options` applied,
    then ``training``: further ``training`` fields from callers with more options (None
    values are ignored)."""
    data_dir = str(Path(args.data_dir).resolve()) if args.data_dir else None
    changes = {"epochs": args.epochs, "width": args.width, "limit_train": args.limit_train,
               "limit_test": args.limit_test, "data_dir": data_dir,
               "torch_device": args.device, "bf16": args.bf16,
               **{k: v for k, v in training.items() if v is not None}}
    ablation = "fixed_range" if args.update_range is not None else None
    controller = {"update_range": args.update_range, "precision": ablation}
    loaded = with_training_overrides(load_config(path), controller=controller, **changes)
    check_torch_devices(loaded, "--device" if args.device else None)
    return loaded


def check_torch_devices(loaded: LoadedConfig, option: str | None = None) -> None:
    """Every torch device the config names exists in this torch build, checked before a run
    creates anything; the error names the option that set it, or the file and key."""
    import torch

    names = {"training.torch_device": loaded.config.training.torch_device}
    names.update({f"arrays.{name}.twin.torch_device": a.twin.torch_device
                  for name, a in loaded.config.arrays.items() if a.backend == "twin"})
    for key, device in names.items():
        if device == "cpu":
            continue
        index = int(device.partition(":")[2] or 0)
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if index >= count:
            have = f"{count} CUDA device(s)" if count else "no CUDA (a CPU-only build or no GPU)"
            where = f"{option} {device}" if option else f"'{device}'"
            raise ConfigError(f"torch device {where} is not available: this torch has {have}",
                              file=str(loaded.path), key=key)


def with_training_overrides(loaded: LoadedConfig, controller: dict[str, Any] | None = None,
                            **changes: Any) -> LoadedConfig:
    """``loaded`` with some ``training`` fields (and ``controller`` fields) replaced (None
    values are ignored) and the result validated like a config file.

    ``torch_device`` also moves every twin array there: the model and its devices'
    state belong on the same torch device.
    """
    changes = {k: v for k, v in changes.items() if v is not None}
    controller = {k: v for k, v in (controller or {}).items() if v is not None}
    if not changes and not controller:
        return loaded
    data = to_data(loaded.config)
    data["training"].update(changes)
    data["controller"].update(controller)
    if "torch_device" in changes:
        for array in data["arrays"].values():
            if array["backend"] == "twin":
                array["twin"]["torch_device"] = changes["torch_device"]
    config = from_data(LabConfig, data, file=f"{loaded.path} (with command-line overrides)")
    return dataclasses.replace(loaded, config=config)
