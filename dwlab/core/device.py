"""The one interface every device array implements, real or simulated."""

from __future__ import annotations

from collections.abc import Sequence
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


def apply_all(arrays: Sequence[DeviceArray], plans: Sequence[PulsePlan]
              ) -> list[PulseReceipt]:
    """Apply ``plans[i]`` to ``arrays[i]``, receipts in the same order.

    Arrays of a class that itself defines an ``apply_batch(arrays, plans)`` classmethod
    (the twin) take their plans together, in a few large operations instead of one set per
    array (per-call overhead dominates small arrays); every other array, a subclass that
    may have changed ``apply`` included, takes its own ``apply``, in order.
    """
    if len(arrays) != len(plans):
        raise ValueError(f"{len(arrays)} arrays but {len(plans)} plans")
    receipts: list[PulseReceipt | None] = [None] * len(arrays)
    batches: dict[type, list[int]] = {}
    for i, array in enumerate(arrays):
        if "apply_batch" in vars(type(array)):
            batches.setdefault(type(array), []).append(i)
        else:
            receipts[i] = array.apply(plans[i])
    for cls, members in batches.items():
        done = cls.apply_batch(  # type: ignore[attr-defined]  # checked above
            [arrays[i] for i in members], [plans[i] for i in members])
        for i, receipt in zip(members, done, strict=True):
            receipts[i] = receipt
    out = [r for r in receipts if r is not None]
    assert len(out) == len(arrays)  # every array took its plan
    return out
