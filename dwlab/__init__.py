"""dwlab: train neural networks on stochastic domain-wall devices, real or simulated.

The public API (each has a docstring; ``examples/notebook.py`` uses them in order):

    load_config(path)                      read and validate a lab config YAML
    open_arrays(config)                    the config's device arrays (twin or hardware)
                                           for a ``with`` block; closed safely on exit
    run_protocol(name, array, folder, **params)   one characterisation protocol
    run_script(script, array, runs_dir)    a protocol script (YAML)
    PROTOCOLS                              the protocols by name
    calibrate(record_dirs, output)         fit the twin to protocol records
    build_optimizer(model, arrays, dataset_size=N)  the push-pull SGLD torch optimizer
    train(config, run_dir, **overrides)    train as ``dwlab train`` does
    load_run(folder)                       any run folder's tables as pandas / xarray,
                                           ``.to_netcdf()`` for NetCDF (HDF5)

The command line (``dwlab --help``) runs the same code. Names load on first use, so
``import dwlab`` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

__all__ = ["PROTOCOLS", "Training", "__version__", "build_optimizer", "calibrate",
           "load_config", "load_run", "open_arrays", "run_protocol", "run_script", "train"]


def __getattr__(name: str) -> Any:
    # The API sits in dwlab.app (it needs every layer). Imported here, even for type
    # checking only, it would make every `import dwlab.core` load the whole package and
    # tie the lowest layers to the top one.
    if name in __all__:
        return getattr(importlib.import_module("dwlab.app.api"), name)
    raise AttributeError(f"module 'dwlab' has no attribute '{name}'")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
