"""The fixed registry of protocols: scripts name protocols, never classes."""

from __future__ import annotations

from dwlab.protocols.protocol import Protocol
from dwlab.protocols.pulsing import PulseResponse, SwitchingStatistics
from dwlab.protocols.push_pull import Endurance, PushPullNoise
from dwlab.protocols.static import DeviceMap, ReadNoise, Retention

from dwlab.core.errors import ProtocolError

PROTOCOLS: dict[str, type[Protocol]] = {
    cls.name: cls
    for cls in (PulseResponse, SwitchingStatistics, PushPullNoise, ReadNoise, Retention,
                DeviceMap, Endurance)
}


def get_protocol(name: str) -> type[Protocol]:
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise ProtocolError(
            f"unknown protocol '{name}'; known protocols: {', '.join(sorted(PROTOCOLS))}"
        ) from None
