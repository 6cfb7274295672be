"""Helpers for tests that run the hardware array on the virtual lab (no tests here).

``lab_config`` writes a small lab config with a hardware array served by the virtual lab
on ephemeral ports; ``open_lab_array`` starts the lab and opens the array through pyvisa-py.
``training_lab_config`` and ``autostarted_lab`` serve ``dwlab train`` on the checked-in
virtual-lab config.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from dwlab.drivers.hardware_array import HardwareArray
from dwlab.sim.virtual_lab import VirtualLab

from dwlab.app.backends import open_hardware
from dwlab.config import load_config

LOOPBACK = "TCPIP::127.0.0.1::0::SOCKET"
CONFIGS = Path(__file__).resolve().parents[1] / "lab_configs"


def lab_config(folder: Path, *, shape=(3, 4), pulser="agilent81110a", meter="keithley2450",
               hardware: dict[str, Any] | None = None, limits: dict[str, Any] | None = None,
               virtual_lab: dict[str, Any] | None = None, name: str = "lab.yaml",
               resources: dict[str, str] | None = None) -> Path:
    """A config file in ``folder``; ``resources`` (role -> VISA resource) replaces the
    ephemeral-port default."""
    res = {"pulser": LOOPBACK, "meter": LOOPBACK, "router": LOOPBACK, **(resources or {})}
    hw = {
        "instruments": {
            "pulser": {"driver": pulser, "resource": res["pulser"], "timeout_seconds": 0.5},
            "meter": {"driver": meter, "resource": res["meter"], "timeout_seconds": 0.5},
            "router": {"driver": "keithley707b", "resource": res["router"],
                       "timeout_seconds": 0.5},
        },
        "wiring": {"crossbar": {}, "shared_path": True},
        "devices": {"conductance_min_siemens": 2.5e-4, "conductance_max_siemens": 5.0e-4,
                    "step_siemens": 2.4e-6, "step_sigma_siemens": 1.0e-6},
        "read": {"bias_volts": 0.01, "compliance_amps": 1.0e-4,
                 "series_resistance_ohms": 50.0},
    }
    hw.update(hardware or {})
    data = {
        "name": "virtual-lab-test",
        "seed": 3,
        "arrays": {
            "main": {"backend": "twin"},
            "chip": {
                "backend": "hardware", "shape": list(shape),
                "pulse": {"amplitude_volts": 1.0, "width_seconds": 1.0e-8},
                "limits": {"max_amplitude_volts": 2.0, "max_pulses_per_device": 256,
                           "max_duty_cycle": 0.5, **(limits or {})},
                "hardware": hw,
            },
        },
        "virtual_lab": {"array": "chip", **(virtual_lab or {})},
    }
    path = Path(folder) / name
    path.write_text(yaml.safe_dump(data))
    return path


def open_lab_array(path: Path, **overrides: Any) -> tuple[VirtualLab, HardwareArray]:
    """Start the lab of config ``path`` and open its array; the caller closes both."""
    loaded = load_config(path)
    lab = VirtualLab.from_config(loaded).start()
    try:
        array = open_hardware(loaded, "chip", resources=lab.resources, **overrides)
    except BaseException:
        lab.stop()
        raise
    return lab, array


def training_lab_config(folder: Path) -> Path:
    """``lab_configs/virtual_lab.yaml`` (digits MLP, last layer on the chip) with its
    instruments moved to free ports, written into ``folder``."""
    text = (CONFIGS / "virtual_lab.yaml").read_text()
    for old in ("50301", "50302", "50303"):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            text = text.replace(f"::{old}::", f"::{s.getsockname()[1]}::")
    path = Path(folder) / "virtual_lab.yaml"
    path.write_text(text)
    return path


@contextlib.contextmanager
def autostarted_lab(path: Path) -> Iterator[VirtualLab]:
    """The lab that ``dwlab train --config path`` connects to, started here on the
    config's ports so that a test can inspect it (and inject faults); the config is
    rewritten so that the run connects to this lab instead of starting its own
    (``autostart: false``). Stopped at the end."""
    path.write_text(path.read_text().replace("autostart: true", "autostart: false"))
    with VirtualLab.from_config(load_config(path)) as lab:
        yield lab
