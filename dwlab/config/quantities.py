"""Numbers in configs: finite floats, and physical quantities with or without units.

A quantity field (its name ends in ``_volts``, ``_seconds``, ``_siemens``, ``_amps`` or
``_ohms``) takes a plain number in SI units or a string with a unit of the field's
dimension ("5 ns", "1.2 V", "250 uS"). After validation every value is a plain float in SI
units: the rest of dwlab computes with floats.
"""

from __future__ import annotations

from functools import cache
from typing import Annotated, Any

import pint
from annotated_types import Ge, Le
from pydantic import AfterValidator, BeforeValidator, Field


def parse_number(value: Any) -> Any:
    """YAML reads ``1e-6`` (no dot) as a string: accept numeric strings as numbers."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    return value


Finite = Annotated[float, BeforeValidator(parse_number), Field(allow_inf_nan=False)]
"""The float of every config field: NaN and infinities are refused."""


@cache
def _units() -> pint.UnitRegistry:
    # Built on first use only (about 0.3 s): most configs write plain numbers.
    return pint.UnitRegistry()


def _in_unit(unit: str):
    def parse(value: Any) -> Any:
        value = parse_number(value)
        if not isinstance(value, str):
            return value
        try:
            quantity: pint.Quantity = _units().Quantity(value)
        except (pint.PintError, ValueError, AttributeError, TypeError):
            raise ValueError(f"expected a number in {unit} or a quantity such as "
                             f"'5 m{unit}', got {value!r}") from None
        try:
            return float(quantity.to(unit).magnitude)
        except pint.DimensionalityError:
            raise ValueError(f"{value!r} is not a quantity in {unit} "
                             f"(its dimension is {quantity.dimensionality})") from None
    return parse


def _quantity(unit: str) -> Any:
    # The JSON schema says "number or string", with an example of each.
    return Annotated[
        float,
        BeforeValidator(_in_unit(unit), json_schema_input_type=float | str),
        Field(allow_inf_nan=False, examples=[0.005, f"5 m{unit}"]),
    ]


Volts = _quantity("V")
Seconds = _quantity("s")
Siemens = _quantity("S")
Amps = _quantity("A")
Ohms = _quantity("ohm")

UNIT_SUFFIXES = {"_volts": Volts, "_seconds": Seconds, "_siemens": Siemens, "_amps": Amps,
                 "_ohms": Ohms}
"""Field-name suffix -> the quantity type such a field must have (a test checks)."""


def _not_infinite(value: float) -> float:
    if value in (float("inf"), float("-inf")):
        raise ValueError("must be a finite number or NaN")
    return value


MaybeNaN = Annotated[float, BeforeValidator(parse_number), AfterValidator(_not_infinite)]
"""A float that may be NaN (not known), never infinite: e.g. a standard error that a
calibration could not estimate."""

MAX_INT = 2**31 - 1
Int = Annotated[int, Ge(-MAX_INT), Le(MAX_INT)]
"""An integer of a plain dataclass (protocol parameters, scripts): a 32-bit count."""

MAX_DEVICES = 2**24
"""The most devices an array (the product of its shape) may have."""


def check_shape(shape: list[int]) -> list[int]:
    """A non-empty list of positive sizes whose product is at most MAX_DEVICES."""
    if not shape or min(shape) < 1:
        raise ValueError("shape must be a non-empty list of positive integers")
    total = 1
    for n in shape:
        total *= n
        if total > MAX_DEVICES:
            raise ValueError(f"shape {shape} has more than {MAX_DEVICES} devices")
    return shape
