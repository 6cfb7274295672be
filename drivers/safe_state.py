"""The safe state of a hardware array: every output off and every crosspoint open, each
step confirmed by the instrument (each adapter tries once more on a fresh session), and,
where that fails, an error saying exactly what may remain on or closed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection
from typing import Any

from dwlab.core.errors import InstrumentError

STEPS = (("pulser", "output_off"), ("meter", "output_off"), ("router", "open_all"))
"""(role, adapter method) in the order they run: outputs first, then the switches."""


class SafeStateError(InstrumentError):
    """Some outputs or crosspoints could not be confirmed safe.

    ``unconfirmed`` maps each such role to what may remain: ``["output"]`` for the pulser
    or meter, the crosspoints for the router (those closed since the last confirmed
    open); ``causes`` holds each role's error.
    """

    def __init__(self, unconfirmed: dict[str, list[str]], causes: dict[str, BaseException]):
        self.unconfirmed = unconfirmed
        self.causes = causes
        parts = []
        for role, items in unconfirmed.items():
            if role == "router":
                what = (f"crosspoints {', '.join(items)} not confirmed open" if items else
                        "no crosspoint closed since the last confirmed open; open not confirmed")
            else:
                what = f"{role} output not confirmed off"
            parts.append(f"{what} ({causes[role]})")
        super().__init__(f"safe state FAILED: {'; '.join(parts)}")


def make_safe(roles: dict[str, Any], maybe_closed: Collection[str]) -> None:
    """Every output off, then every crosspoint open: each step runs even if another fails
    (a Ctrl-C during one is held until the others have run, then raised).

    ``maybe_closed``: the crosspoints that may be closed now, named if the router fails.
    Raises :class:`SafeStateError` naming what could not be confirmed.
    """
    causes: dict[str, BaseException] = {}
    interrupt: BaseException | None = None
    for role, method in STEPS:
        try:
            getattr(roles[role], method)()
        except Exception as exc:  # keep going: the other outputs must still go off
            causes[role] = exc
        except BaseException as exc:  # Ctrl-C: finish making the rest safe first
            causes[role] = exc
            interrupt = interrupt or exc
    if not causes:
        return
    error = SafeStateError({role: sorted(maybe_closed) if role == "router" else ["output"]
                            for role in causes}, causes)
    if interrupt is None:
        raise error
    with contextlib.suppress(Exception):
        interrupt.safe_state_error = error  # type: ignore[attr-defined]
    raise interrupt
