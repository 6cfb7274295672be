"""Instrument driver names by role: the one list that configs and the driver registry share.

Configs name drivers, never classes; ``dwlab.drivers.registry`` maps each name here to its
pymeasure class and role adapter.
"""

from __future__ import annotations

ROLES = ("pulser", "meter", "router")
"""The parts of a hardware array: pulse source, conductance meter, switch matrix."""

DRIVER_ROLES: dict[str, str] = {
    "agilent81110a": "pulser",
    "keysight81160a": "pulser",
    "keithley2450": "meter",
    "keithley2400": "meter",
    "keithley707b": "router",
}


def drivers_for(role: str) -> tuple[str, ...]:
    return tuple(name for name, r in DRIVER_ROLES.items() if r == role)
