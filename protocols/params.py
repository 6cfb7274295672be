"""Protocol parameters: each declared with a unit, help text and bounds, validated on load,
and documented by ``dwlab protocols show``."""

from __future__ import annotations

import copy
import dataclasses
import typing
from dataclasses import dataclass, field
from typing import TypedDict, TypeVar

from dwlab.core.types import PulseShape

T = TypeVar("T")


def param(default: T, *, unit: str = "", help: str = "", min: float | None = None,
          max: float | None = None) -> T:
    """Declare one protocol parameter: default, unit, help text and inclusive bounds.

    Bounds apply to a number or to every element of a list; they are checked, with the
    exact key, when parameters are read from data (``from_data``).
    """
    meta = {"unit": unit, "help": help, "min": min, "max": max}
    if isinstance(default, list):
        def fresh() -> T:  # each instance gets its own copy of a list default
            return copy.copy(default)

        return field(default_factory=fresh, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class ProtocolParams:
    """Parameters every protocol has."""

    devices: int | None = param(
        None, help="characterise the first N devices (flat index); empty means all", min=1
    )

    def validate(self) -> None:
        # Types, finiteness and the declared bounds are checked as the data is read
        # (dwlab.config.from_data); what remains is that lists hold something.
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, list) and not value:
                raise ValueError(f"{f.name} must not be empty")


class ParamInfo(TypedDict):
    """One declared parameter, as ``dwlab protocols show`` prints it."""

    name: str
    type: str
    default: object
    unit: str
    min: float | None
    max: float | None
    help: str


def describe_params(params_cls: type[ProtocolParams]) -> list[ParamInfo]:
    """Name, type, default, unit, bounds and help of each declared parameter."""
    out: list[ParamInfo] = []
    for f in dataclasses.fields(params_cls):
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = None
        type_name = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", f.type)
        out.append({"name": f.name, "type": str(type_name), "default": default,
                    "unit": f.metadata.get("unit", ""), "min": f.metadata.get("min"),
                    "max": f.metadata.get("max"), "help": f.metadata.get("help", "")})
    return out


class PulseParams(typing.Protocol):
    """Parameters that choose a pulse, where empty means the array's nominal one."""

    @property
    def amplitude_volts(self) -> float | None: ...

    @property
    def width_seconds(self) -> float | None: ...


def amplitude_param(help: str = "pulse amplitude; empty means nominal") -> float | None:
    """An optional pulse amplitude, for :func:`pulse_or_nominal`."""
    return param(None, unit="V", min=0.0, help=help)


def width_param(help: str = "pulse width; empty means nominal") -> float | None:
    """An optional pulse width, for :func:`pulse_or_nominal`."""
    return param(None, unit="s", min=0.0, help=help)


def pulse_or_nominal(params: PulseParams, nominal: PulseShape) -> PulseShape:
    """The pulse of ``params.amplitude_volts`` and ``params.width_seconds``; an empty one
    is the nominal pulse's."""
    return PulseShape(
        nominal.amplitude_volts if params.amplitude_volts is None else params.amplitude_volts,
        nominal.width_seconds if params.width_seconds is None else params.width_seconds,
    )
