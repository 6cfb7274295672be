"""Plain dataclasses (protocol parameters, scripts, calibration files) validated as strictly
as the config models.

Each dataclass is mirrored by a generated :class:`Schema` model: unknown keys refused, no
coercion (an int must be an int; numeric strings such as "1e-6" are numbers where a float
is expected, since YAML reads them as strings), every float finite unless declared
:data:`~dwlab.config.quantities.MaybeNaN`, every int a 32-bit count. A field's metadata may
give inclusive bounds, ``min`` and ``max`` (with a ``unit`` for the message), of a number or
of every element of a list. After validation the model turns back into the dataclass.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from enum import Enum
from typing import Annotated, Any, Union

from pydantic import AfterValidator, BaseModel, Field, create_model

from dwlab.config.quantities import Finite, Int
from dwlab.config.schema import Schema

_MODELS: dict[type, type[BaseModel]] = {}
_DATACLASSES: dict[type[BaseModel], type] = {}


def _bounded(name: str, meta: typing.Mapping[str, Any]) -> Any:
    """A validator for the ``min``/``max`` of field ``name``, or None."""
    lo, hi = meta.get("min"), meta.get("max")
    if lo is None and hi is None:
        return None
    unit = f" {meta['unit']}" if meta.get("unit") else ""

    def check(v: Any) -> Any:
        if lo is not None and v < lo:
            raise ValueError(f"{name} = {v:g}{unit} is below the minimum {lo:g}{unit}")
        if hi is not None and v > hi:
            raise ValueError(f"{name} = {v:g}{unit} is above the maximum {hi:g}{unit}")
        return v
    return AfterValidator(check)


def _strict(tp: Any, bound: Any = None) -> Any:
    """``tp`` with floats finite, ints 32-bit, dataclasses as models; ``bound`` on numbers."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is float or tp is int:
        base = Finite if tp is float else Int
        return base if bound is None else Annotated[base, bound]
    if isinstance(tp, type) and issubclass(tp, Enum):
        return Annotated[tp, Field(strict=False)]  # written as its value
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return model_for(tp)
    if origin is Annotated and args[0] in (float, int):  # declared as the author wants it
        return tp if bound is None else Annotated[tp, bound]
    if origin is Annotated:
        parts = (_strict(args[0], bound), *args[1:])
        return Annotated[parts]  # type: ignore[valid-type]
    if origin in (Union, types.UnionType):
        return Union[tuple(_strict(a, bound) for a in args)]  # noqa: UP007
    if origin is list:
        return list[_strict(args[0], bound)]  # type: ignore[misc]
    if origin is dict:
        return dict[args[0], _strict(args[1])]  # type: ignore[misc, valid-type]
    return tp


def model_for(cls: type) -> type[BaseModel]:
    """The strict model that mirrors dataclass ``cls`` (built once)."""
    if cls not in _MODELS:
        hints = typing.get_type_hints(cls, include_extras=True)
        fields: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if not f.init:
                continue
            if f.default is not dataclasses.MISSING:
                spec = Field(default=f.default)
            elif f.default_factory is not dataclasses.MISSING:
                spec = Field(default_factory=f.default_factory)
            else:
                spec = Field()
            fields[f.name] = (_strict(hints[f.name], _bounded(f.name, f.metadata)), spec)
        model = create_model(f"{cls.__name__}Data", __base__=Schema, **fields)
        _MODELS[cls], _DATACLASSES[model] = model, cls
    return _MODELS[cls]


def to_dataclass(value: Any) -> Any:
    """A validated mirror model (and what it holds) back as the dataclasses it mirrors."""
    cls = _DATACLASSES.get(type(value))
    if cls is not None:
        return cls(**{name: to_dataclass(getattr(value, name))
                      for name in type(value).model_fields})
    if isinstance(value, list):
        return [to_dataclass(v) for v in value]
    if isinstance(value, dict):
        return {k: to_dataclass(v) for k, v in value.items()}
    return value
