"""dwlab from Python: the calls behind the command line, one function per task.

Every function here is also at the top level (``dwlab.load_config``, ``dwlab.train``, ...).
A session on the twin, as in ``examples/notebook.py``::

    import dwlab
    lab = dwlab.load_config("lab_configs/default.yaml")
    with dwlab.open_arrays(lab) as arrays:
        array = arrays.array("main", shape=(4, 4))
        dwlab.run_protocol("read_noise", array, "runs/read_noise", reads=20)
    fit = dwlab.calibrate(["runs/read_noise", ...], "my_lab/calibration.yaml")
    results = dwlab.train("my_lab/calibrated.yaml", epochs=2)
    records = dwlab.load_run(results.path)   # tables as pandas, .dataset() as xarray
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from dwlab.app.backends import Backends, open_backends
from dwlab.app.commands.calibrate import CalibrationRun, run_calibration
from dwlab.app.commands.train import train_specs
from dwlab.app.training import RunOutcome, start_run_folder, train_run_folder
from dwlab.app.training.overrides import with_training_overrides
from dwlab.config import LoadedConfig
from dwlab.config import load_config as _load_config
from dwlab.core.device import DeviceArray
from dwlab.protocols import PROTOCOLS, Protocol, get_protocol, load_script
from dwlab.protocols import run_protocol as _run_protocol
from dwlab.protocols import run_script as _run_script
from dwlab.protocols.engine import RunResult as ProtocolResult
from dwlab.protocols.script import ScriptResult
from dwlab.records import new_run_dir
from dwlab.records.export import load_run
from dwlab.sgld.controller import SGLDController
from dwlab.sgld.controller import build_optimizer as _build_optimizer

__all__ = ["PROTOCOLS", "Training", "build_optimizer", "calibrate", "load_config", "load_run",
           "open_arrays", "run_protocol", "run_script", "train"]

ConfigLike = LoadedConfig | str | Path
"""A loaded lab config, or the path of a lab config YAML."""


def load_config(config: ConfigLike) -> LoadedConfig:
    """Read and validate a lab config YAML (errors name the file and the dotted key);
    a config already loaded is returned as it is."""
    return config if isinstance(config, LoadedConfig) else _load_config(config)


@contextlib.contextmanager
def open_arrays(config: ConfigLike) -> Iterator[Backends]:
    """The device arrays of a lab config, for the time of a ``with`` block:
    ``arrays.array(name, shape=..., seed_offset=...)`` builds a twin or opens a hardware
    array (starting the virtual lab if the config asks). On leaving the block, however it
    is left, every array built is put in its safe state and closed."""
    with open_backends(load_config(config)) as backends:
        yield backends


def run_protocol(protocol: str | Protocol, array: DeviceArray, folder: str | Path, *,
                 seed: int | None = None, progress: bool = False, **params: Any
                 ) -> ProtocolResult:
    """Run one characterisation protocol on any ``DeviceArray`` into ``folder``.

    ``protocol`` is a name from ``dwlab.PROTOCOLS`` (its parameters as keyword arguments,
    checked like a script's; ``dwlab protocols show NAME`` lists them) or a protocol
    object. The plan is checked against the array's limits before any pulse; the array
    ends in its safe state. Returns the folder, status, counts and plots written."""
    if isinstance(protocol, str):
        protocol = get_protocol(protocol).from_data(params)
    elif params:
        raise TypeError("parameters go with a protocol name, not with a protocol object")
    return _run_protocol(protocol, array, folder, seed=seed, progress=progress)


def run_script(script: str | Path, array: DeviceArray, runs_dir: str | Path = "runs/protocols",
               *, seed: int | None = None, progress: bool = False) -> ScriptResult:
    """Run a protocol script (YAML, as ``dwlab protocols run``) on ``array``: every step
    into ``runs_dir/<time>-<name>/NN-<step>``; the whole script is checked against the
    array's limits first."""
    return _run_script(load_script(script), array, runs_dir, seed=seed, progress=progress)


def calibrate(records: list[str | Path], output: str | Path, *,
              report_dir: str | Path = "runs/calibrations", sim_devices: int = 256,
              n_bootstrap: int = 300, seed: int = 0, progress: bool = False,
              write_anyway: bool = False) -> CalibrationRun:
    """Fit the continuous twin to protocol record folders, check the fit (a twin built from
    it measures the same switching statistics, compared with held-out measurements:
    ``.verdict``, ``.passed``) and, on PASS or with ``write_anyway``, write the calibration
    YAML ``output`` (with standard errors; ``.output`` is None when not written). A lab
    config uses it with ``twin: {calibration: <path relative to the config>}``."""
    return run_calibration(records, output, report_parent=report_dir,
                           sim_devices=sim_devices, n_bootstrap=n_bootstrap, seed=seed,
                           progress=progress, write_anyway=write_anyway)


def build_optimizer(model: nn.Module, arrays: Backends, *, dataset_size: int,
                    seed: int | None = None) -> SGLDController:
    """The push-pull SGLD controller (a ``torch.optim.Optimizer``) for ``model``, its
    device weights on arrays built by ``arrays`` (from :func:`open_arrays`) as the config's
    ``controller`` and ``mapping`` say. ``dataset_size`` is SGLD's N (training set size)."""
    loaded = arrays.loaded
    return _build_optimizer(model, loaded.config.controller, dataset_size=dataset_size,
                            array_factory=arrays.array, mapping=loaded.config.mapping,
                            seed=loaded.config.seed if seed is None else seed)


@dataclass
class Training:
    """What :func:`train` did: the run folder and each training run's outcome."""

    path: Path
    results: list[RunOutcome]


def train(config: ConfigLike, run_dir: str | Path | None = None, *,
          scheme: str | None = None, bits: int | None = None, compare_float: bool = True,
          progress: bool = False, **training: Any) -> Training:
    """Train as ``dwlab train`` does: the config's scheme (or ``scheme`` at ``bits``), and
    float SGD beside it unless ``compare_float`` is False, into ``run_dir`` (default: a
    new folder under ``training.runs_dir``). Further keyword arguments override fields of
    the config's ``training`` section (``epochs=2``, ``limit_train=500``...)."""
    loaded = load_config(config)
    if training:
        loaded = with_training_overrides(loaded, **training)
    cfg = loaded.config
    specs = train_specs(scheme or cfg.controller.scheme, bits or cfg.controller.update_bits,
                        cfg.seed, compare_float and cfg.training.compare_float)
    folder = Path(run_dir) if run_dir is not None else new_run_dir(cfg.training.runs_dir,
                                                                   cfg.name)
    run = start_run_folder(loaded, folder, "train", specs)
    return Training(folder, train_run_folder(run, progress=progress))

