"""Stand-ins for a bench: the twin that simulates a hardware array (``--simulate``), and the
virtual copy of a bench config's instruments that rehearses it through SCPI
(``dwlab virtual-lab --config BENCH.yaml``).

The twin of a hardware array is its own ``twin`` section when that names a calibration file
(the chip's measured parameters); otherwise the ``continuous_dw`` preset with the figures the
config declares for the devices: conductance window, mean step and step spread per nominal
pulse (explicit ``twin.params`` still win).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

from dwlab.config import ArrayConfig, LabConfig, LoadedConfig, from_data, to_data
from dwlab.core.errors import ConfigError
from dwlab.core.instruments import ROLES
from dwlab.records import atomic_write_json

MATCHED_PRESET = "continuous_dw"


def stand_in_twin(array: ArrayConfig) -> tuple[dict[str, Any], str]:
    """(the twin section standing in for hardware array ``array``, how it was chosen)."""
    twin = array.twin
    if twin.calibration is not None:
        return to_data(twin), f"calibration file {twin.calibration}"
    assert array.hardware is not None and array.pulse is not None  # a loaded hardware array
    devices = array.hardware.devices
    window = devices.conductance_max_siemens - devices.conductance_min_siemens
    step, spread = devices.step_siemens / window, devices.step_sigma_siemens / window
    amplitude = array.pulse.amplitude_volts
    params = {
        "g_p_siemens": devices.conductance_max_siemens,
        "g_ap_siemens": devices.conductance_min_siemens,
        "mu_push": step, "mu_pull": step, "sigma_push": spread, "sigma_pull": spread,
        "nominal_amplitude_volts": amplitude,
        "nominal_width_seconds": array.pulse.width_seconds,
        "v_th_volts": amplitude / 2,
        **twin.params,
    }
    how = (f"preset {MATCHED_PRESET} matched to the declared devices (window "
           f"{devices.conductance_min_siemens:g}-{devices.conductance_max_siemens:g} S, step "
           f"{devices.step_siemens:g} S, spread {devices.step_sigma_siemens:g} S per "
           f"{amplitude:g} V / {array.pulse.width_seconds:g} s pulse)")
    return {"preset": MATCHED_PRESET, "params": params, "torch_device": twin.torch_device}, how


def _reloaded(loaded: LoadedConfig, data: dict[str, Any], why: str) -> LoadedConfig:
    config = from_data(LabConfig, data, file=f"{loaded.path} ({why})")
    return dataclasses.replace(loaded, config=config)


def simulated(loaded: LoadedConfig) -> tuple[LoadedConfig, list[str]]:
    """``loaded`` with every hardware array replaced by its twin (and no virtual lab: it
    would serve a hardware array), and one line per array replaced saying how."""
    data = to_data(loaded.config)
    notes = []
    for name, array in loaded.config.arrays.items():
        if array.backend != "hardware":
            continue
        twin, how = stand_in_twin(array)
        section = data["arrays"][name]
        section.update(backend="twin", twin=twin)
        section.pop("hardware", None)
        notes.append(f"simulating array '{name}' (hardware, shape {array.shape}) on a twin: "
                     f"{how}")
    data.pop("virtual_lab", None)
    return _reloaded(loaded, data, "with --simulate"), notes


def hardware_array_name(loaded: LoadedConfig, name: str | None) -> str:
    """The hardware array to serve: ``name``, or the config's only one."""
    hardware = [n for n, a in loaded.config.arrays.items() if a.backend == "hardware"]
    if name is not None and name not in hardware:
        raise ConfigError(f"no hardware array named '{name}' (hardware arrays: "
                          f"{', '.join(hardware) or 'none'})", file=str(loaded.path),
                          key="arrays")
    if name is None and len(hardware) != 1:
        raise ConfigError("name the hardware array to serve with --array (hardware arrays: "
                          f"{', '.join(hardware) or 'none'})", file=str(loaded.path),
                          key="arrays")
    return name or hardware[0]


def with_virtual_copy(loaded: LoadedConfig, name: str | None = None) -> LoadedConfig:
    """``loaded`` with a virtual lab serving hardware array ``name``: its own
    ``virtual_lab`` section when it has one for that array, else one whose twin stands in
    for the array."""
    name = hardware_array_name(loaded, name)
    own = loaded.config.virtual_lab
    if own is not None and own.array == name:
        return loaded
    data = to_data(loaded.config)
    data["virtual_lab"] = {"array": name, "twin": stand_in_twin(loaded.config.arrays[name])[0]}
    _serve_on_loopback(data, name, dict.fromkeys(ROLES, "TCPIP::127.0.0.1::0::SOCKET"))
    return _reloaded(loaded, data, "served by a virtual lab")


def _serve_on_loopback(data: dict[str, Any], name: str, resources: dict[str, str]) -> None:
    """Point array ``name``'s instruments (in config ``data``) at ``resources``."""
    instruments = data["arrays"][name]["hardware"]["instruments"]
    for role in ROLES:
        instruments[role].update(resource=resources[role], visa_library="@py")


def client_config(loaded: LoadedConfig, name: str, resources: dict[str, str]
                  ) -> dict[str, Any]:
    """The config's data with array ``name``'s instruments rewritten to ``resources``
    (pyvisa-py on loopback) and no virtual lab of its own: a client of the served lab."""
    data = to_data(loaded.config)
    _serve_on_loopback(data, name, resources)
    data.pop("virtual_lab", None)
    return data


# -- the --simulate flag of train, sweep and protocols run -------------------------------------

def add_simulate_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--simulate", action="store_true",
        help="run every hardware array of the config on its twin (the calibration file its "
             "twin section names, else a preset matched to its declared device figures); "
             "the config file is not changed")


def apply_simulate(loaded: LoadedConfig, simulate: bool) -> tuple[LoadedConfig, list[str]]:
    """The config to run (simulated with ``simulate``) and what was replaced, printed."""
    if not simulate:
        return loaded, []
    loaded, notes = simulated(loaded)
    for note in notes or ["--simulate: the config has no hardware array; nothing replaced"]:
        print(note, flush=True)
    return loaded, notes


def simulate_refused_on_resume() -> int:
    """``--simulate`` with ``--resume``: a usage error (a resumed run keeps the backends
    its folder records)."""
    print("error: --simulate goes with --config; a resumed run keeps its own backends",
          file=sys.stderr)
    return 2


def record_simulation(path: Path, metadata: dict[str, Any], notes: list[str]) -> None:
    """Add what ``--simulate`` replaced to a run folder's metadata."""
    if notes:
        metadata["simulated"] = notes
        atomic_write_json(path / "metadata.json", metadata)
