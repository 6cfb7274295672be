"""The one interface every device array implements, real or simulated."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch

from dwlab.core.types import ArrayInfo, PulsePlan, PulseReceipt, Readout


@runtime_checkable
class DeviceArray(Protocol):
    """An array of domain-wall devices that can be pulsed and read.

    Contract (checked by ``tests/contract``):
    - ``apply`` validates the plan (shape, counts, limits) before any I/O or state change
      and raises ``PlanError`` / ``PulseLimitError`` without side effects;
    - ``read`` returns conductances in siemens with the array's shape (or the selected
      flat device indices);
    - ``safe_state`` turns outputs off and opens every switch; it is idempotent and runs on
      every exit path (the context manager calls it).
    """

    def describe(self) -> ArrayInfo: ...

    def apply(self, plan: PulsePlan) -> PulseReceipt: ...

    def read(self, n_averages: int = 1, devices: torch.Tensor | None = None) -> Readout: ...

    def snapshot(self) -> dict[str, Any]: ...

    def restore(self, snapshot: dict[str, Any]) -> None: ...

    def safe_state(self) -> None: ...

    def __enter__(self) -> DeviceArray: ...

    def __exit__(self, *exc: object) -> None: ...


class ArrayBase:
    """Shared behaviour: the context manager ends in ``safe_state``."""

    def safe_state(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.safe_state()

    def close(self) -> None:
        self.safe_state()
