"""The base class of every characterisation protocol.

A protocol is a class, generic in its parameters (``class ReadNoise(Protocol[ReadNoiseParams])``,
so ``self.params`` has the protocol's own parameter type), with
- ``Params``: that frozen dataclass of typed parameters; each field is declared with
  :func:`~dwlab.protocols.params.param` (unit, help text, bounds) so that
  ``dwlab protocols show`` documents it;
- ``tables``: table name -> recorded columns;
- ``estimate(target)``: pulse shapes, pulse counts, reads and waits, computed from the
  parameters and the array's static description only (no I/O);
- ``run(ctx)``: a generator that measures one step at a time and yields after each, so the
  engine can show progress and stop cleanly between steps (it closes the generator);
- ``plot(folder, tables)``: PNG figures from the recorded tables.
"""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path
from typing import ClassVar, Generic, TypeVar

from dwlab.protocols.context import RunContext
from dwlab.protocols.estimate import DEFAULT_TIMING, Estimate, Target, Timing, check_estimate
from dwlab.protocols.params import ProtocolParams
from dwlab.protocols.plotting import Tables
from dwlab.protocols.recenter import default_recenter_cap

from dwlab.config import from_data
from dwlab.core.errors import ConfigError, ProtocolError

P = TypeVar("P", bound=ProtocolParams)
"""A protocol's parameter type."""
AnyProtocol = TypeVar("AnyProtocol", bound="Protocol")


class Protocol(Generic[P]):
    """Base of every characterisation protocol (see the module docstring)."""

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    Params: type[P]
    """The parameter dataclass, set by each protocol (a class attribute, like the others)."""
    tables: ClassVar[dict[str, tuple[str, ...]]] = {}
    params: P

    def __init__(self, params: P | None = None, **overrides: object):
        if params is None:
            params = self.from_data(overrides).params if overrides else self.Params()
        elif overrides:
            raise TypeError("give params or keyword overrides, not both")
        if not isinstance(params, self.Params):
            raise ProtocolError(f"{self.name}: params must be {self.Params.__name__}")
        self.params = params

    @classmethod
    def from_data(cls: type[AnyProtocol], data: object, file: str | None = None,
                  key: str = "params") -> AnyProtocol:
        """Build from plain (YAML) data; errors name the file and the dotted key."""
        try:
            params = from_data(cls.Params, data, file=file, key=key)
        except ConfigError as exc:
            raise ProtocolError(str(exc)) from None
        return cls(params)

    def devices(self, target: Target) -> int:
        n = self.params.devices
        return target.size if n is None else n

    def recenter_cap(self, target: Target) -> int:
        """Re-centring budget per device: the ``recenter_max_pulses`` parameter, or, when it
        is empty, what crosses 3/4 of the nominal range at the nominal step."""
        cap = getattr(self.params, "recenter_max_pulses", None)
        if cap is not None:
            return int(cap)
        return default_recenter_cap(target)

    def estimate(self, target: Target) -> Estimate:  # pragma: no cover - abstract
        raise NotImplementedError

    def run(self, ctx: RunContext) -> Generator[None, None, None]:  # pragma: no cover - abstract
        raise NotImplementedError

    def plot(self, folder: Path, tables: Tables) -> list[Path]:
        return []

    def check(self, target: Target, max_duration_seconds: float | None = None,
              timing: Timing = DEFAULT_TIMING) -> Estimate:
        """The estimate, after refusing anything outside the array's limits."""
        if self.params.devices is not None and self.params.devices > target.size:
            raise ProtocolError(
                f"{self.name}: devices = {self.params.devices} but the array has "
                f"{target.size} devices"
            )
        try:
            est = self.estimate(target)
        except ValueError as exc:  # e.g. a pulse shape that cannot exist
            raise ProtocolError(f"{self.name}: {exc}") from None
        check_estimate(est, target.limits, self.name, max_duration_seconds, timing)
        return est
