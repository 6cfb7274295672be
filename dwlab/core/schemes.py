"""The training schemes: the one list that configs, controller and CLI share."""

from __future__ import annotations

from enum import Enum


class Scheme(str, Enum):
    """How a weight tensor is updated."""

    FLOAT_SGD = "float_sgd"
    """Plain SGD in software (the floating-point reference)."""
    FLOAT_SGLD = "float_sgld"
    """SGLD with software Gaussian noise (the ideal Langevin reference)."""
    PUSH_PULL = "push_pull"
    """A fixed budget of push and pull pulses on one device per weight."""
    PUSH_PULL_PAIR = "push_pull_pair"
    """Push-pull on a differential pair ``w = alpha (G+ - G-)``, with re-centring."""
    GRADIENT_ONLY = "gradient_only"
    """Pulses for the gradient step only (noise grows with the gradient)."""

    # Print and format as the plain name ('push_pull'), as configs and run labels spell it.
    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)

    @property
    def uses_devices(self) -> bool:
        return self not in (Scheme.FLOAT_SGD, Scheme.FLOAT_SGLD)

    @property
    def is_pair(self) -> bool:
        return self is Scheme.PUSH_PULL_PAIR

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(s.value for s in cls)

    @classmethod
    def device_names(cls) -> tuple[str, ...]:
        return tuple(s.value for s in cls if s.uses_devices)
