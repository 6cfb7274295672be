"""Fixed registry: driver name (as written in lab configs) -> driver class and role adapter.

Configs name drivers only by these keys; nothing else is ever imported from a config.
"""

from __future__ import annotations

import contextlib
import socket
from typing import Any

import pyvisa
from dwlab.drivers.adapters import RoleAdapter, visa_socket
from dwlab.drivers.agilent81110a import Agilent81110A
from dwlab.drivers.keithley707b import Keithley707B
from dwlab.drivers.meters import Keithley2400Meter, Keithley2450Meter
from dwlab.drivers.pulsers import Agilent81110APulser, ChannelPulser, Keysight81160APulser
from dwlab.drivers.routers import Keithley707BRouter
from pymeasure.instruments.keithley import Keithley2400, Keithley2450
from pymeasure.instruments.keysight import Keysight81160A

from dwlab.core.instruments import DRIVER_ROLES

_CLASSES: dict[str, tuple[type, type[RoleAdapter]]] = {
    "agilent81110a": (Agilent81110A, Agilent81110APulser),
    "keysight81160a": (Keysight81160A, Keysight81160APulser),
    "keithley2450": (Keithley2450, Keithley2450Meter),
    "keithley2400": (Keithley2400, Keithley2400Meter),
    "keithley707b": (Keithley707B, Keithley707BRouter),
}
DRIVERS: dict[str, tuple[str, type, type[RoleAdapter]]] = {
    name: (role, *_CLASSES[name]) for name, role in DRIVER_ROLES.items()
}
"""name -> (role, pymeasure instrument class, role adapter)."""


CLEAR_STATUS = {"keithley707b": "errorqueue.clear()"}
"""What empties each instrument's error queue (SCPI instruments: ``*CLS``)."""


def connect_driver(driver: str, resource: str, *, timeout_seconds: float = 2.0,
                   visa_library: str = "@py") -> Any:
    """Open the pymeasure driver ``driver`` on ``resource`` with newline terminations, and
    clear the instrument's status: errors another client left in its queue must not be
    taken for this session's."""
    _, cls, _ = DRIVERS[driver]
    instrument = cls(resource, visa_library=visa_library, timeout=int(timeout_seconds * 1000),
                     read_termination="\n", write_termination="\n")
    try:
        if resource.upper().endswith("::SOCKET"):
            _set_nodelay(instrument.adapter.connection)
        instrument.write(CLEAR_STATUS.get(driver, "*CLS"))
    except BaseException:
        with contextlib.suppress(Exception):
            instrument.adapter.close()
        raise
    return instrument


def _set_nodelay(connection: Any) -> None:
    """Switch Nagle's algorithm off on a raw-socket VISA session.

    Without it a write followed by a query waits ~40 ms for a delayed ACK. pyvisa-py does
    not accept VI_ATTR_TCPIP_NODELAY (0.8), so it is set on its socket; other VISA libraries
    get the standard attribute.
    """
    sock = visa_socket(connection)
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return
    with contextlib.suppress(Exception):
        connection.set_visa_attribute(pyvisa.constants.ResourceAttribute.tcpip_nodelay, True)


def open_role(role: str, driver: str, resource: str, *, channel: int = 1,
              timeout_seconds: float = 2.0, visa_library: str = "@py", retries: int = 1
              ) -> RoleAdapter:
    """Open driver ``driver`` on ``resource`` as the adapter of ``role`` (``channel``: the
    pulse generator's output; other roles ignore it)."""
    if driver not in DRIVERS:
        raise KeyError(f"unknown driver '{driver}'; known: {', '.join(sorted(DRIVERS))}")
    expected, _, adapter = DRIVERS[driver]
    if expected != role:
        raise ValueError(f"driver '{driver}' is a {expected}, not a {role}")

    def connect() -> Any:
        return connect_driver(driver, resource, timeout_seconds=timeout_seconds,
                              visa_library=visa_library)

    name = f"{role} ({driver} at {resource})"
    if issubclass(adapter, ChannelPulser):  # the pulsers: the role checked above
        return adapter(name, connect, channel=channel, retries=retries)
    return adapter(name, connect, retries=retries)
