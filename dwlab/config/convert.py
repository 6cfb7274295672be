"""Plain YAML data to typed objects and back.

:func:`from_data` validates data into a config model (a :class:`Schema`) or into any plain
dataclass (protocol parameters, calibration files); :func:`to_data` turns either back into
plain data; :func:`evolve` is ``dataclasses.replace`` for config models, re-validated.
"""

from __future__ import annotations

import dataclasses
from enum import Enum
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from dwlab.config.dataclass_schema import model_for, to_dataclass
from dwlab.config.problems import config_error, problems
from dwlab.config.schema import Schema

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

__all__ = ["Schema", "evolve", "from_data", "to_data"]


def _validate_hooks(obj: Any, key: str, found: list[tuple[str, str]]) -> None:
    """Call ``validate()`` of every plain dataclass in ``obj``, innermost first."""
    if isinstance(obj, BaseModel) or not dataclasses.is_dataclass(obj):
        return
    for f in dataclasses.fields(obj):
        _validate_hooks(getattr(obj, f.name), f"{key}.{f.name}" if key else f.name, found)
    validate = getattr(obj, "validate", None)
    if validate is not None:
        try:
            validate()
        except ValueError as exc:
            found.append((key or "(top level)", str(exc)))


def from_data(cls: type[T], data: Any, *, file: str | None = None, key: str = "") -> T:
    """Build ``cls`` (a config model or a plain dataclass) from plain YAML data.

    Every problem is reported at once in one ConfigError naming ``file`` and the dotted
    key (prefixed by ``key``). A plain dataclass may define ``validate(self) -> None``
    raising ``ValueError``; its message is reported against the dataclass's key.
    """
    if data is None:
        data = {}
    try:
        if isinstance(cls, type) and issubclass(cls, BaseModel):
            return cls.model_validate(data)
        obj = to_dataclass(model_for(cls).model_validate(data))
    except ValidationError as exc:
        raise config_error(problems(exc, cls, key), file) from None
    found: list[tuple[str, str]] = []
    _validate_hooks(obj, key, found)
    if found:
        raise config_error(found, file)
    return obj


def to_data(obj: Any) -> Any:
    """Plain data (for YAML/JSON) from a config model or dataclass; enums as their values."""
    if isinstance(obj, BaseModel):
        return {name: to_data(getattr(obj, name)) for name in type(obj).model_fields}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_data(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_data(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_data(v) for k, v in obj.items()}
    if isinstance(obj, Enum):
        return obj.value
    return obj


def evolve(model: M, **changes: Any) -> M:
    """A copy of config model ``model`` with ``changes``, validated like a config file."""
    current = {name: getattr(model, name) for name in type(model).model_fields}
    return from_data(type(model), {**current, **changes})
