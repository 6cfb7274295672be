"""What one training run inside a run folder trains: scheme, precision, seed."""

from __future__ import annotations

from dataclasses import dataclass

from dwlab.config import ControllerConfig, evolve
from dwlab.core.schemes import Scheme

FLOAT_SCHEMES = tuple(s.value for s in Scheme if not s.uses_devices)


@dataclass(frozen=True)
class RunSpec:
    """One training run inside a run folder; ``label`` names its subfolder."""

    label: str
    scheme: str
    update_bits: int
    seed: int

    def __post_init__(self) -> None:
        # A plain name, not the enum: the spec goes into JSON metadata and into
        # checkpoints that are loaded weights-only.
        object.__setattr__(self, "scheme", Scheme(self.scheme).value)

    def controller(self, base: ControllerConfig) -> ControllerConfig:
        return evolve(base, scheme=Scheme(self.scheme), update_bits=self.update_bits)
