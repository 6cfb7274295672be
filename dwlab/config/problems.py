"""Validation errors as users read them: ``file: key 'dotted.key': what is wrong``.

pydantic reports every problem of a file at once; each becomes one line naming the dotted
key, worded the way dwlab has always worded it ("expected an integer", "unknown key ...;
allowed keys: ...").
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Union

from pydantic import BaseModel, ValidationError

from dwlab.core.errors import ConfigError

_EXPECTED = {
    "int_type": "an integer", "int_parsing": "an integer", "int_from_float": "an integer",
    "float_type": "a number", "float_parsing": "a number", "finite_number": "a finite number",
    "bool_type": "true or false", "bool_parsing": "true or false",
    "string_type": "a string", "list_type": "a list", "tuple_type": "a list",
    "dict_type": "a mapping", "model_type": "a mapping", "dataclass_type": "a mapping",
    "model_attributes_type": "a mapping", "dataclass_args_type": "a mapping",
    "none_required": "null",
}


class KeyProblem(ValueError):
    """Raised by a validator about one key below the model it validates (``key`` relative to
    that model, e.g. ``pulse.amplitude_volts``), so that the error names that key."""

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key


def dotted_key(prefix: str, loc: tuple[Any, ...]) -> str:
    """``prefix`` extended by a pydantic location: ``mapping[0].array``."""
    key = prefix
    for part in loc:
        if isinstance(part, int):
            key += f"[{part}]"
        elif part != "[key]":  # a dict key that failed validation: name the entry
            key = f"{key}.{part}" if key else str(part)
    return key


def _unwrap(tp: Any) -> Any:
    """``X`` from ``X | None`` and ``Annotated[X, ...]``."""
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (Union, types.UnionType):
            members = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(members) != 1:
                return tp
            tp = members[0]
        else:
            return tp


def _field_types(tp: Any) -> dict[str, Any] | None:
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return {name: f.annotation for name, f in tp.model_fields.items()}
    if dataclasses.is_dataclass(tp):
        return typing.get_type_hints(tp)
    return None


def _allowed_keys(root: type, loc: tuple[Any, ...]) -> list[str]:
    """The keys of the mapping at ``loc`` under the schema ``root`` (empty if unknown)."""
    tp: Any = root
    for part in loc:
        tp = _unwrap(tp)
        fields = _field_types(tp)
        if fields is not None:
            tp = fields.get(part)
        elif typing.get_origin(tp) in (list, tuple, dict):
            tp = typing.get_args(tp)[-1]
        else:
            return []
    fields = _field_types(_unwrap(tp))
    return sorted(fields) if fields else []


def _shown(value: Any, loc: tuple[Any, ...]) -> str:
    """What was given, as the message quotes it: short, and for a whole file (the top
    level) only its type, so that an error never echoes a file it refused."""
    if not loc:
        return f"a {type(value).__name__}"
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:50]}... ({len(text)} characters)"


def _problem(root: type, error: dict[str, Any]) -> str:
    kind, loc = error["type"], error["loc"]
    given = _shown(error.get("input"), loc)
    if kind == "missing":
        return f"required key '{loc[-1]}' is missing"
    if kind in ("extra_forbidden", "unexpected_keyword_argument"):
        allowed = _allowed_keys(root, loc[:-1])
        listed = f"; allowed keys: {', '.join(allowed)}" if allowed else ""
        return f"unknown key '{loc[-1]}'{listed}"
    if kind in _EXPECTED:
        return f"expected {_EXPECTED[kind]}, got {given}"
    if kind in ("enum", "literal_error"):
        return f"expected one of {error['ctx']['expected']}, got {given}"
    message = error["msg"].removeprefix("Value error, ")
    if message.startswith("Input should be "):
        message = f"must be {message.removeprefix('Input should be ')}, got {given}"
    return message


def problems(exc: ValidationError, root: type, key: str = "") -> list[tuple[str, str]]:
    """(dotted key, problem) for every error."""
    out = []
    for error in exc.errors():
        where = dotted_key(key, error["loc"])
        cause = error.get("ctx", {}).get("error")
        if isinstance(cause, KeyProblem):
            where = f"{where}.{cause.key}" if where else cause.key
        out.append((where.replace(".[", "[") or "(top level)", _problem(root, dict(error))))
    return out


def config_error(found: list[tuple[str, str]], file: str | None) -> ConfigError:
    """One ConfigError for all problems found; its ``key`` is the first one's."""
    if len(found) == 1:
        key, problem = found[0]
        return ConfigError(problem, file=file, key=key)
    listed = "; ".join(f"({i}) {ConfigError(problem, file=file, key=key)}"
                       for i, (key, problem) in enumerate(found, 1))
    error = ConfigError(f"{len(found)} problems: {listed}")
    error.file, error.key = file, found[0][0]
    return error
