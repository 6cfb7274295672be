"""The three roles of a hardware array: pulse source, conductance meter, router.

``HardwareArray`` talks to these protocols only; any object with these methods fits
(structural typing): the driver adapters, or a test's stand-in.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable


@runtime_checkable
class Instrument(Protocol):
    """What every role offers: a name, its identity, its error queue, a way to hang up."""

    name: str

    def identify(self) -> str: ...

    def errors(self) -> list[str]: ...

    def close(self) -> None: ...


@runtime_checkable
class SourceInstrument(Instrument, Protocol):
    """An instrument with an output that must be off in the safe state."""

    def output_on(self) -> None: ...

    def output_off(self) -> None: ...


@runtime_checkable
class PulseSource(SourceInstrument, Protocol):
    def configure(self, amplitude_volts: float, width_seconds: float,
                  period_seconds: float) -> None: ...

    def fire(self, bursts: Sequence[tuple[int, int]]) -> None:
        """Fire (polarity PUSH/PULL, count) bursts in order; return once they are out."""


@runtime_checkable
class ConductanceMeter(SourceInstrument, Protocol):
    def configure(self, bias_volts: float, compliance_amps: float, wires: int,
                  nplc: float) -> None: ...

    def measure_current(self) -> float: ...


@runtime_checkable
class Router(Instrument, Protocol):
    def route(self, crosspoints: Sequence[str]) -> None: ...

    def open_all(self) -> None: ...

    def closed(self) -> list[str]: ...
