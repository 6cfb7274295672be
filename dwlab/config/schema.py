"""The base of every config model."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Schema(BaseModel):
    """Base of every config section: unknown keys refused, values immutable, no coercion
    of types beyond numeric strings (``update_bits: "7"`` is an error, as in YAML)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True,
                              use_attribute_docstrings=True)
