"""The run context a protocol measures through: the array (through ``DeviceArray`` only),
the selected devices, the record's tables and the pulse and read counters."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from dwlab.protocols.clock import Clock
from dwlab.protocols.estimate import Target
from dwlab.protocols.recenter import RECENTER_ITERATIONS, recenter_walls

from dwlab.core.device import DeviceArray
from dwlab.core.errors import ProtocolError
from dwlab.core.types import ArrayInfo, PulsePlan, PulseShape
from dwlab.records import TableWriter

Cell = str | int | float
"""One recorded value (a CSV cell once written)."""
Row = dict[str, Cell]

PulseCounts = int | torch.Tensor
"""Pulses for every selected device, or one count per selected device."""


class RunContext:
    """The array (through ``DeviceArray`` only), the selected devices, tables and counters."""

    def __init__(self, array: DeviceArray, info: ArrayInfo, folder: Path,
                 tables: Mapping[str, Sequence[str]], devices: int | None, clock: Clock):
        self.array = array
        self.info = info
        self.target = Target.from_info(info)
        self.folder = folder
        self.clock = clock
        n = info.size if devices is None else devices
        if n > info.size:
            raise ProtocolError(f"devices = {n} but the array has only {info.size} devices")
        self.devices = torch.arange(n)
        self.pulses = 0
        self.device_reads = 0
        self._writers = {name: TableWriter(folder / f"{name}.csv", list(cols))
                         for name, cols in tables.items()}
        self.last_read: torch.Tensor | None = None
        """The conductances of the latest read (for the live view)."""
        self.step_rows: dict[str, list[Row]] = {}
        """Rows written since the engine last took them (for the live view)."""

    @property
    def n(self) -> int:
        return int(self.devices.numel())

    def write(self, table: str, rows: list[Row]) -> None:
        """Append the rows of one step (flushed and fsynced together)."""
        self._writers[table].append_rows(rows)
        self.step_rows.setdefault(table, []).extend(rows)

    def device_rows(self, fixed: Mapping[str, Cell], **per_device: torch.Tensor) -> list[Row]:
        """One row per selected device: the ``fixed`` values, the device index, and each
        device's entry of every ``per_device`` tensor."""
        columns = {k: v.tolist() for k, v in per_device.items()}
        return [{**fixed, "device": d, **{k: c[i] for k, c in columns.items()}}
                for i, d in enumerate(self.devices.tolist())]

    def read(self, n_averages: int = 1) -> torch.Tensor:
        """Conductances of the selected devices (float64, CPU)."""
        out = self.array.read(n_averages=n_averages, devices=self.devices)
        self.device_reads += self.n * n_averages
        self.last_read = out.conductance_siemens.detach().to("cpu", torch.float64).reshape(-1)
        return self.last_read

    def apply(self, push: PulseCounts, pull: PulseCounts, push_shape: PulseShape,
              pull_shape: PulseShape | None = None) -> None:
        """Send ``push``/``pull`` pulses (scalars or per selected device) to the selected
        devices; the others get none."""
        full_push = torch.zeros(self.info.size, dtype=torch.long)
        full_pull = torch.zeros(self.info.size, dtype=torch.long)
        full_push[self.devices] = torch.as_tensor(push, dtype=torch.long)
        full_pull[self.devices] = torch.as_tensor(pull, dtype=torch.long)
        plan = PulsePlan(full_push.reshape(self.info.shape), full_pull.reshape(self.info.shape),
                         push_shape, pull_shape or push_shape)
        self.array.apply(plan)
        self.pulses += plan.total_pulses()

    def recenter(self, max_pulses: int, iterations: int = RECENTER_ITERATIONS) -> None:
        """Bring the selected walls near mid-track, spending at most ``max_pulses`` per
        device (see :func:`~dwlab.protocols.recenter.recenter_walls`)."""
        recenter_walls(self, max_pulses, iterations)

    def close(self) -> None:
        for w in self._writers.values():
            w.close()
