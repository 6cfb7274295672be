"""Clocks for protocols that need time to pass (retention): real waiting on hardware,
simulated time on arrays that offer it."""

from __future__ import annotations

import time
import typing


class Clock(typing.Protocol):
    """Seconds since the run started, and a way to let time pass."""

    def now(self) -> float: ...

    def wait(self, seconds: float) -> None: ...


class TimeAdvancing(typing.Protocol):
    """An array whose time passes only when told (the twin)."""

    def advance_time(self, seconds: float) -> None: ...


class RealClock:
    """Waits real time (hardware)."""

    def __init__(self) -> None:
        self._start = time.monotonic()

    def now(self) -> float:
        return time.monotonic() - self._start

    def wait(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


class ArrayClock:
    """Time that passes only when told: for arrays offering ``advance_time(seconds)``."""

    def __init__(self, array: TimeAdvancing) -> None:
        self._array = array
        self._now = 0.0

    def now(self) -> float:
        return self._now

    def wait(self, seconds: float) -> None:
        if seconds > 0:
            self._array.advance_time(seconds)
            self._now += seconds


def clock_for(array: object) -> RealClock | ArrayClock:
    """The optional clock hook: simulated time where the array offers it, else real time."""
    if callable(getattr(array, "advance_time", None)):
        return ArrayClock(typing.cast(TimeAdvancing, array))
    return RealClock()
