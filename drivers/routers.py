"""Router adapter: a switching matrix closes a device's crosspoints."""

from __future__ import annotations

from collections.abc import Sequence

from dwlab.drivers.adapters import RoleAdapter


class Keithley707BRouter(RoleAdapter):
    """Router on a Keithley 707B switching matrix."""

    def route(self, crosspoints: Sequence[str]) -> None:
        self.call("routing", lambda matrix: matrix.route(list(crosspoints)), idempotent=True)

    def open_all(self) -> None:
        self.shutdown_call("opening every crosspoint", lambda matrix: matrix.open_all(),
                           lambda matrix: matrix.closed_channels == [])

    def closed(self) -> list[str]:
        return list(self.call("listing closed crosspoints",
                              lambda matrix: matrix.closed_channels, idempotent=True))
