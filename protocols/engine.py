"""The engine: run one protocol into a record folder.

The estimate is checked against the array's limits before any pulse; rows are flushed as
measured; the first Ctrl-C stops between steps; the run always ends in
``array.safe_state()`` and a metadata file that says how it ended.
"""

from __future__ import annotations

import dataclasses
import logging
import time
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
from dwlab.records.live import LiveView, numeric
from dwlab.records.status import RunStatus, StopRequest, error_text

log = logging.getLogger(__name__)

MAP_EVERY = 10
"""Steps between two conductance maps in the live view (and the last step)."""

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
    bar = tqdm(total=estimate.steps, desc=protocol.name, unit="step",
               disable=None if progress else True, leave=False)
    live = LiveView(folder)
    started = time.perf_counter()
    try:
        with StopRequest() as stop:
            for done, _ in enumerate(steps, start=1):
                bar.update(1)
                live_step(live, ctx, done, last=done == estimate.steps)
                log.debug("%s step %d/%d: %d pulses, %d device reads, %.1f s", protocol.name,
                          done, estimate.steps, ctx.pulses, ctx.device_reads,
                          time.perf_counter() - started)
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
        live.close()
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


def live_step(live: LiveView, ctx: RunContext, step: int, last: bool) -> None:
    """One protocol step in the live view: the mean of every numeric column of the rows it
    recorded, the counters, the last read's conductances (histogram; a crossbar map of a 2-D
    array every ``MAP_EVERY`` steps and at the last)."""
    for table, rows in ctx.step_rows.items():
        columns: dict[str, list[float]] = {}
        for row in rows:
            for key, value in row.items():
                number = numeric(value)
                if number is not None and key != "device":
                    columns.setdefault(key, []).append(number)
        live.scalars(table, {k: sum(v) / len(v) for k, v in columns.items()}, step)
    ctx.step_rows.clear()
    live.scalars("run", {"pulses": ctx.pulses, "device_reads": ctx.device_reads}, step)
    g = ctx.last_read
    if g is None:
        return
    live.histogram("conductance", g.numpy(), step)
    shape = ctx.info.shape
    if len(shape) == 2 and g.numel() == ctx.info.size and (last or step % MAP_EVERY == 0):
        from dwlab.records import plots  # matplotlib loads only when something is drawn

        window = (ctx.info.conductance_min_siemens, ctx.info.conductance_max_siemens)
        live.figure("crossbar/conductance", plots.crossbar_maps(
            {"last read": g.numpy().reshape(shape)}, None, window=window,
            title=f"{ctx.folder.name} (step {step})"), step)
