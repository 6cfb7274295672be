"""Keithley 707B switching matrix, written in pymeasure's declarative style.

The 707B speaks TSP (Lua): commands are function calls such as ``channel.close("1A01")``
and queries print their result (``print(channel.getclose("allslots"))``). A crosspoint is
named ``<slot><row><column>``, e.g. ``1A01`` = card 1, row A, column 1.
"""

from __future__ import annotations

from collections.abc import Sequence

from pymeasure.instruments import Instrument

from dwlab.core.crosspoint import check_crosspoint


def crosspoint_list(value: Sequence[str] | str, values=None) -> str:
    """Validate crosspoints and join them into a TSP channel list (``"1A01,1B02"``).

    Usable as a pymeasure validator; ``values`` is unused.
    """
    items = [value] if isinstance(value, str) else list(value)
    return ",".join(check_crosspoint(item) for item in items)


def _parse_closed(reply: str) -> list[str]:
    reply = reply.strip()
    if reply in ("", "nil"):
        return []
    return [c.strip() for c in reply.split(";") if c.strip()]


class Keithley707B(Instrument):
    """Keithley 707B six-slot switching matrix (TSP).

    .. code-block:: python

        matrix = Keithley707B("TCPIP::192.168.0.7::INSTR")
        matrix.route(["1A01", "1B13"])      # only these two crosspoints closed afterwards
        print(matrix.closed_channels)       # ['1A01', '1B13']
        matrix.open_all()
    """

    def __init__(self, adapter, name="Keithley 707B switching matrix", **kwargs):
        kwargs.setdefault("includeSCPI", False)
        super().__init__(adapter, name, **kwargs)

    id = Instrument.measurement(
        "*IDN?",
        """Get the identification string (str).""",
        cast=str,
        maxsplit=0,
    )

    close_channels = Instrument.setting(
        'channel.close("%s")',
        """Set crosspoints to close, adding to those already closed (list of str such as
        ['1A01', '1B02']).""",
        validator=crosspoint_list,
    )

    open_channels = Instrument.setting(
        'channel.open("%s")',
        """Set crosspoints to open (list of str).""",
        validator=crosspoint_list,
    )

    closed_channels = Instrument.measurement(
        'print(channel.getclose("allslots"))',
        """Get the closed crosspoints of every slot (list of str; empty when all are open).""",
        cast=str,
        maxsplit=0,
        get_process=_parse_closed,
    )

    error_count = Instrument.measurement(
        "print(errorqueue.count)",
        """Get the number of entries in the error queue (int).""",
        cast=lambda v: int(float(v)),
    )

    def open_all(self) -> None:
        """Open every crosspoint of every slot."""
        self.write('channel.open("allslots")')

    def shutdown(self) -> None:
        """Open every crosspoint."""
        self.open_all()
        super().shutdown()

    def route(self, crosspoints: Sequence[str]) -> None:
        """Close exactly ``crosspoints`` (opening all others) and wait until they settle.

        One round trip: the trailing ``print(1)`` answers after the relays have settled,
        because TSP runs the line in order.
        """
        channels = crosspoint_list(crosspoints)
        reply = self.ask(f'channel.exclusiveclose("{channels}") print(1)').strip()
        if reply not in ("1", "1.00000e+00"):
            raise ValueError(f"unexpected reply {reply!r} to a routing command")

    def next_error(self) -> tuple[int, str]:
        """Pop the oldest error-queue entry as (code, message)."""
        reply = self.ask("errorcode, message = errorqueue.next() print(errorcode, message)")
        code, _, message = reply.strip().partition("\t")
        return int(float(code)), message.strip()

    def check_errors(self) -> list[tuple[int, str]]:
        """Read and return every error-queue entry."""
        return [self.next_error() for _ in range(self.error_count)]
