"""The engine: run one protocol into a record folder.

The estimate is checked against the array's limits before any pulse; rows are flushed as
measured; the first Ctrl-C stops between steps; the run always ends in
``array.safe_state()`` and a metadata file that says how it ended.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from dwlab.protocols.clock import Clock, clock_for
from dwlab.protocols.context import RunContext
from dwlab.protocols.estimate import DEFAULT_TIMING, Estimate, Target, Timing, preflight
from dwlab.protocols.plotting import make_plots
from dwlab.protocols.protocol import Protocol
from tqdm import tqdm

from dwlab.config import to_data
from dwlab.core.device import DeviceArray
from dwlab.records import atomic_write_json, base_metadata, now_iso
from dwlab.records.status import RunStatus, StopRequest, error_text

JSON = None | bool | int | float | str | list["JSON"] | dict[str, "JSON"]


def jsonable(value: object, max_items: int = 4096) -> JSON:
    """Plain JSON data from snapshots and descriptions (big tensors are summarised)."""
    if isinstance(value, torch.Tensor):
        if value.numel() <= max_items and value.dtype != torch.uint8:
            return value.detach().cpu().tolist()
        summary: dict[str, JSON] = {"shape": list(value.shape), "dtype": str(value.dtype)}
        if value.is_floating_point() and value.numel():
            summary.update(mean=float(value.float().mean()), std=float(value.float().std()))
        return summary
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (bytes, bytearray)):
        return f"<{len(value)} bytes>"
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return repr(value)


@dataclass
class RunResult:
    folder: Path
    status: RunStatus
    estimate: Estimate
    pulses: int
    device_reads: int
    plots: list[Path]


def run_protocol(
    protocol: Protocol, array: DeviceArray, folder: str | Path, *,
    seed: int | None = None, progress: bool = True, clock: Clock | None = None,
    timing: Timing = DEFAULT_TIMING, max_duration_seconds: float | None = None,
    extra_metadata: Mapping[str, object] | None = None, plots: bool = True,
) -> RunResult:
    """Run one protocol into ``folder`` (created if missing).

    The estimate is checked against ``array.describe().limits`` before any pulse. Rows are
    flushed as measured; metadata records the parameters, estimate, array description and
    snapshot, versions, git revision, seed and times. Ends in ``array.safe_state()``.
    ``plots=False`` skips the protocol's figures (a calibration check draws its own).
    """
    folder = Path(folder)
    info = array.describe()
    estimate = protocol.check(Target.from_info(info), max_duration_seconds, timing)
    preflight(array, info, estimate, protocol.name)
    folder.mkdir(parents=True, exist_ok=True)
    meta = base_metadata(
        "protocol", seed=seed, protocol=protocol.name, params=to_data(protocol.params),
        estimate=estimate.to_data(timing), tables={k: list(v) for k, v in protocol.tables.items()},
        array={"describe": jsonable(info), "snapshot_before": jsonable(array.snapshot())},
        status="running", **(extra_metadata or {}),
    )
    atomic_write_json(folder / "metadata.json", meta)
    ctx = RunContext(array, info, folder, protocol.tables, protocol.params.devices,
                     clock or clock_for(array))
    status: RunStatus = "failed"
    error: str | None = None
    steps = protocol.run(ctx)
    bar = tqdm(total=estimate.steps, desc=protocol.name, unit="step", disable=not progress,
               leave=False)
    try:
        with StopRequest() as stop:
            for _ in steps:
                bar.update(1)
                if stop.requested:
                    status = "interrupted"
                    break
            else:
                status = "completed"
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    except BaseException as exc:
        error = error_text(exc)
        raise
    finally:
        steps.close()
        bar.close()
        try:
            array.safe_state()
        finally:
            ctx.close()
            meta.update(status=status, finished=now_iso(), error=error,
                        actual={"pulses": ctx.pulses, "device_reads": ctx.device_reads})
            try:
                meta["array"]["snapshot_after"] = jsonable(array.snapshot())
            except Exception as exc:  # a broken instrument must not hide the record
                meta["array"]["snapshot_after"] = f"unavailable: {exc}"
            atomic_write_json(folder / "metadata.json", meta)
    figures = make_plots(protocol, folder) if plots else []
    return RunResult(folder, status, estimate, ctx.pulses, ctx.device_reads, figures)
