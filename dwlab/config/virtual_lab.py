"""The virtual lab: the twin behind SCPI servers on 127.0.0.1, with injected faults."""

from __future__ import annotations

from typing import Annotated, Literal

from annotated_types import Ge, Interval, Le
from pydantic import Field

from dwlab.config.arrays import TwinConfig
from dwlab.config.convert import Schema
from dwlab.config.quantities import MAX_INT, Seconds


class FaultConfig(Schema):
    """A fault the virtual lab injects into one instrument's conversation."""

    instrument: Literal["pulser", "meter", "router"]
    kind: Literal["timeout", "drop", "error", "garble", "kill"]
    """timeout: a query gets no reply; drop: the connection closes; error: an entry goes
    into the error queue; garble: a query gets an unparsable reply; kill: the server dies."""
    after: Annotated[int, Interval(ge=0, le=MAX_INT)] = 0
    """Messages that pass before the fault fires."""
    times: Annotated[int, Interval(ge=1, le=MAX_INT)] = 1
    match: str | None = None
    """Only messages containing this text count and fault."""


class VirtualLabConfig(Schema):
    """The twin behind SCPI servers on 127.0.0.1, serving one hardware array.

    Ports come from the array's instrument resources (``TCPIP::127.0.0.1::PORT::SOCKET``);
    port 0 picks free ports (tests).
    """

    array: str
    twin: TwinConfig = Field(default_factory=TwinConfig)
    seed_offset: Annotated[int, Interval(ge=0, le=MAX_INT)] = 1000
    latency_seconds: Annotated[Seconds, Ge(0), Le(10.0)] = 0.0
    """Added before handling each message."""
    faults: list[FaultConfig] = Field(default_factory=list)
    autostart: bool = False
    """Start the lab in-process when the array is built (``dwlab train`` on one command)."""


def socket_port(resource: str) -> int | None:
    """The port of a ``TCPIP::127.0.0.1::PORT::SOCKET`` resource, else None."""
    parts = resource.split("::")
    if (len(parts) == 4 and parts[0].upper().startswith("TCPIP") and parts[1] == "127.0.0.1"
            and parts[2].isdigit() and parts[3].upper() == "SOCKET"):
        return int(parts[2])
    return None
