"""Protocol framework: declared parameters, an estimate checked before any pulse, the engine.

A protocol is a class with
- ``Params``: a frozen dataclass of typed parameters; each field is declared with
  :func:`param` (unit, help text, bounds) so that ``dwlab protocols show`` documents it;
- ``tables``: table name -> recorded columns;
- ``estimate(target)``: pulse shapes, pulse counts, reads and waits, computed from the
  parameters and the array's static description only (no I/O);
- ``run(ctx)``: a generator that measures one step at a time and yields after each, so the
  engine can show progress and stop cleanly between steps;
- ``plot(folder, tables)``: PNG figures from the recorded tables.

:func:`run_protocol` checks the estimate against the array's limits (refusing before any
pulse), records everything through :mod:`dwlab.records`, and always ends with
``array.safe_state()``.
"""

from __future__ import annotations

import dataclasses
import math
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from tqdm import tqdm

from dwlab.config import from_data, to_data
from dwlab.core.device import DeviceArray
from dwlab.core.errors import ConfigError, ProtocolError, PulseLimitError
from dwlab.core.types import ArrayInfo, PulseLimits, PulsePlan, PulseShape
from dwlab.records import (
    TableWriter,
    atomic_write_json,
    base_metadata,
    now_iso,
    read_table,
)

# ---------------------------------------------------------------------------
# parameters


def param(default: Any, *, unit: str = "", help: str = "", min: float | None = None,
          max: float | None = None) -> Any:
    """Declare one protocol parameter: default, unit, help text and inclusive bounds.

    Bounds apply to a number or to every element of a list.
    """
    meta = {"unit": unit, "help": help, "min": min, "max": max}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class ProtocolParams:
    """Parameters every protocol has."""

    devices: int | None = param(
        None, help="characterise the first N devices (flat index); empty means all", min=1
    )

    def validate(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            lo, hi = f.metadata.get("min"), f.metadata.get("max")
            values = value if isinstance(value, list) else [value]
            if isinstance(value, list) and not value:
                raise ValueError(f"{f.name} must not be empty")
            for v in values:
                if v is None or isinstance(v, str):
                    continue
                unit = f" {f.metadata.get('unit')}" if f.metadata.get("unit") else ""
                if lo is not None and v < lo:
                    raise ValueError(f"{f.name} = {v:g}{unit} is below the minimum {lo:g}{unit}")
                if hi is not None and v > hi:
                    raise ValueError(f"{f.name} = {v:g}{unit} is above the maximum {hi:g}{unit}")


def describe_params(params_cls: type) -> list[dict[str, Any]]:
    """Name, type, default, unit, bounds and help of each declared parameter."""
    out = []
    for f in dataclasses.fields(params_cls):
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = None
        type_name = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", f.type)
        out.append({"name": f.name, "type": str(type_name), "default": default,
                    "unit": f.metadata.get("unit", ""), "min": f.metadata.get("min"),
                    "max": f.metadata.get("max"), "help": f.metadata.get("help", "")})
    return out


# ---------------------------------------------------------------------------
# estimates


@dataclass(frozen=True)
class Target:
    """What an estimate needs to know about an array: its static description, no I/O."""

    shape: tuple[int, ...]
    limits: PulseLimits
    nominal_pulse: PulseShape
    conductance_min_siemens: float
    conductance_max_siemens: float
    step_siemens: float

    @classmethod
    def from_info(cls, info: ArrayInfo) -> Target:
        return cls(tuple(info.shape), info.limits, info.nominal_pulse,
                   info.conductance_min_siemens, info.conductance_max_siemens, info.step_siemens)

    @property
    def size(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class Timing:
    """Assumed cost of one pulse and one device read, for duration estimates.

    Defaults suit a bench that routes each device through a switch matrix; a twin is far
    faster, so its estimates are upper bounds.
    """

    pulse_seconds: float = 2e-3
    read_seconds: float = 2e-3

    def validate(self) -> None:
        if self.pulse_seconds < 0 or self.read_seconds < 0:
            raise ValueError("timing values must be non-negative")


@dataclass
class Estimate:
    """Everything a protocol will do, counted before it runs."""

    shapes: list[PulseShape] = field(default_factory=list)
    max_pulses_per_apply: int = 0
    """Most pulses one device receives in one ``apply``."""
    pulses: int = 0
    """Pulses over all devices (upper bound where the protocol adapts, e.g. re-centring)."""
    device_reads: int = 0
    """Single device reads (a read of n devices averaged k times counts n * k)."""
    wait_seconds: float = 0.0
    steps: int = 0

    def add_shape(self, shape: PulseShape) -> None:
        if shape not in self.shapes:
            self.shapes.append(shape)

    def add_apply(self, per_device: int, devices: int, count: int = 1) -> None:
        self.max_pulses_per_apply = max(self.max_pulses_per_apply, per_device)
        self.pulses += per_device * devices * count

    def add_reads(self, devices: int, n_averages: int, count: int = 1) -> None:
        self.device_reads += devices * n_averages * count

    def duration_seconds(self, timing: Timing) -> float:
        # Pulse widths (ns to us) are negligible next to the per-pulse overhead.
        return (self.pulses * timing.pulse_seconds + self.device_reads * timing.read_seconds
                + self.wait_seconds)

    def to_data(self, timing: Timing) -> dict[str, Any]:
        return {
            "shapes": [dataclasses.asdict(s) for s in self.shapes],
            "max_pulses_per_apply": self.max_pulses_per_apply, "pulses": self.pulses,
            "device_reads": self.device_reads, "wait_seconds": self.wait_seconds,
            "steps": self.steps, "duration_seconds": self.duration_seconds(timing),
            "timing": dataclasses.asdict(timing),
        }


def check_estimate(estimate: Estimate, limits: PulseLimits, what: str,
                   max_duration_seconds: float | None = None,
                   timing: Timing = Timing()) -> None:
    """Refuse (before any pulse) a protocol whose estimate breaks a limit."""
    for shape in estimate.shapes:
        limits.check_shape(shape, f"{what}: pulse {shape.amplitude_volts:g} V / "
                                  f"{shape.width_seconds:g} s")
    if estimate.max_pulses_per_apply > limits.max_pulses_per_device:
        raise PulseLimitError(
            f"{what}: sends {estimate.max_pulses_per_apply} pulses to one device in one apply; "
            f"the limit is {limits.max_pulses_per_device}"
        )
    duration = estimate.duration_seconds(timing)
    if max_duration_seconds is not None and duration > max_duration_seconds:
        raise ProtocolError(
            f"{what}: estimated duration {duration:.1f} s exceeds the allowed "
            f"{max_duration_seconds:.1f} s"
        )


# ---------------------------------------------------------------------------
# clocks (retention needs time to pass)


class RealClock:
    """Waits real time (hardware)."""

    def __init__(self) -> None:
        self._start = time.monotonic()

    def now(self) -> float:
        return time.monotonic() - self._start

    def wait(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


class ArrayClock:
    """Time that passes only when told: for arrays offering ``advance_time(seconds)``."""

    def __init__(self, array: Any) -> None:
        self._array = array
        self._now = 0.0

    def now(self) -> float:
        return self._now

    def wait(self, seconds: float) -> None:
        if seconds > 0:
            self._array.advance_time(seconds)
            self._now += seconds


def clock_for(array: Any) -> RealClock | ArrayClock:
    """The optional clock hook: simulated time where the array offers it, else real time."""
    return ArrayClock(array) if callable(getattr(array, "advance_time", None)) else RealClock()


# ---------------------------------------------------------------------------
# the context a protocol measures through

RECENTER_ITERATIONS = 3
RECENTER_HELP = ("most nominal pulses per device one re-centring may spend; empty: enough to "
                 "cross 3/4 of the nominal conductance range (within the pulse limit)")
RECENTER_AVERAGES = 4


class RunContext:
    """The array (through ``DeviceArray`` only), the selected devices, tables and counters."""

    def __init__(self, array: DeviceArray, info: ArrayInfo, folder: Path, tables: dict,
                 devices: int | None, clock: Any):
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

    @property
    def n(self) -> int:
        return int(self.devices.numel())

    def write(self, table: str, rows: list[dict[str, Any]]) -> None:
        """Append the rows of one step (flushed and fsynced together)."""
        self._writers[table].append_rows(rows)

    def device_rows(self, fixed: dict[str, Any], **per_device: torch.Tensor) -> list[dict]:
        """One row per selected device: the ``fixed`` values, the device index, and each
        device's entry of every ``per_device`` tensor."""
        columns = {k: v.tolist() for k, v in per_device.items()}
        return [{**fixed, "device": d, **{k: c[i] for k, c in columns.items()}}
                for i, d in enumerate(self.devices.tolist())]

    def read(self, n_averages: int = 1) -> torch.Tensor:
        """Conductances of the selected devices (float64, CPU)."""
        out = self.array.read(n_averages=n_averages, devices=self.devices)
        self.device_reads += self.n * n_averages
        return out.conductance_siemens.detach().to("cpu", torch.float64).reshape(-1)

    def apply(self, push: Any, pull: Any, push_shape: PulseShape,
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
        """Bring the selected walls near mid-track with nominal pulses, using the array's
        nominal step: a few corrective iterations spending at most ``max_pulses`` per device
        in total (so the estimate can bound it)."""
        t = self.target
        if t.step_siemens <= 0 or max_pulses <= 0:
            return
        mid = 0.5 * (t.conductance_min_siemens + t.conductance_max_siemens)
        budget = torch.full((self.n,), max_pulses, dtype=torch.long)
        for _ in range(iterations):
            g = self.read(RECENTER_AVERAGES)
            n = torch.round((mid - g) / t.step_siemens).long()
            n = torch.maximum(torch.minimum(n, budget), -budget)
            if int(n.abs().max()) <= 1:
                return
            budget -= n.abs()
            self.apply(n.clamp(min=0), (-n).clamp(min=0), t.nominal_pulse)

    def close(self) -> None:
        for w in self._writers.values():
            w.close()


def add_recenter(est: Estimate, target: Target, devices: int, max_pulses: int,
                 count: int = 1) -> None:
    """Upper bound of what :meth:`RunContext.recenter` may do, ``count`` times."""
    if max_pulses <= 0:
        return
    est.add_shape(target.nominal_pulse)
    est.add_apply(max_pulses, devices, count)
    est.add_reads(devices, RECENTER_AVERAGES, RECENTER_ITERATIONS * count)


def periodic_cap(first_cap: int, pulses_since: int) -> int:
    """Budget of a re-centring after ``pulses_since`` pulses per device: the walls cannot
    have wandered much further than those pulses moved them, so twice that suffices."""
    return min(first_cap, 2 * pulses_since)


# ---------------------------------------------------------------------------
# protocols


class Protocol:
    """Base of every characterisation protocol (see the module docstring)."""

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    Params: ClassVar[type[ProtocolParams]] = ProtocolParams
    tables: ClassVar[dict[str, tuple[str, ...]]] = {}

    def __init__(self, params: ProtocolParams | None = None, **overrides: Any):
        if params is None:
            params = self.from_data(overrides).params if overrides else self.Params()
        elif overrides:
            raise TypeError("give params or keyword overrides, not both")
        if not isinstance(params, self.Params):
            raise ProtocolError(f"{self.name}: params must be {self.Params.__name__}")
        self.params = params

    @classmethod
    def from_data(cls, data: Any, file: str | None = None, key: str = "params") -> Protocol:
        """Build from plain (YAML) data; errors name the file and the dotted key."""
        try:
            params = from_data(cls.Params, data, file=file, key=key)
        except ConfigError as exc:
            raise ProtocolError(str(exc)) from None
        return cls(params)

    def devices(self, target: Target) -> int:
        n = self.params.devices
        return target.size if n is None else n

    def recenter_cap(self, target: Target) -> int:
        """Re-centring budget per device: the ``recenter_max_pulses`` parameter, or, when it
        is empty, what crosses 3/4 of the nominal range at the nominal step."""
        cap = getattr(self.params, "recenter_max_pulses", None)
        if cap is not None:
            return int(cap)
        if target.step_siemens <= 0:
            return 0
        span = target.conductance_max_siemens - target.conductance_min_siemens
        return int(min(target.limits.max_pulses_per_device,
                       math.ceil(0.75 * span / target.step_siemens)))

    def estimate(self, target: Target) -> Estimate:  # pragma: no cover - abstract
        raise NotImplementedError

    def run(self, ctx: RunContext) -> Iterator[None]:  # pragma: no cover - abstract
        raise NotImplementedError

    def plot(self, folder: Path, tables: dict[str, list[dict[str, str]]]) -> list[Path]:
        return []

    def check(self, target: Target, max_duration_seconds: float | None = None,
              timing: Timing = Timing()) -> Estimate:
        """The estimate, after refusing anything outside the array's limits."""
        if self.params.devices is not None and self.params.devices > target.size:
            raise ProtocolError(
                f"{self.name}: devices = {self.params.devices} but the array has "
                f"{target.size} devices"
            )
        try:
            est = self.estimate(target)
        except ValueError as exc:  # e.g. a pulse shape that cannot exist
            raise ProtocolError(f"{self.name}: {exc}") from None
        check_estimate(est, target.limits, self.name, max_duration_seconds, timing)
        return est


def preflight(array: Any, info: ArrayInfo, estimate: Estimate, what: str) -> None:
    """Let an array that can check a plan without I/O (``check_plan``, e.g. the hardware
    array's duty-cycle check) veto every pulse shape and the largest burst up front."""
    check_plan = getattr(array, "check_plan", None)
    if not callable(check_plan):
        return
    counts = torch.full(info.shape, max(estimate.max_pulses_per_apply, 1), dtype=torch.long)
    for shape in estimate.shapes:
        try:
            check_plan(PulsePlan.uniform(counts, torch.zeros_like(counts), shape))
        except PulseLimitError as exc:
            raise PulseLimitError(f"{what}: {exc}") from None


def pulse_or_nominal(params: Any, nominal: PulseShape) -> PulseShape:
    """The pulse of ``params.amplitude_volts`` and ``params.width_seconds``; an empty one
    is the nominal pulse's."""
    return PulseShape(
        nominal.amplitude_volts if params.amplitude_volts is None else params.amplitude_volts,
        nominal.width_seconds if params.width_seconds is None else params.width_seconds,
    )


def save_figure(fig: Any, path: Path) -> Path:
    """Write a matplotlib figure as PNG atomically and close it."""
    from dwlab.records.plots import save_png  # matplotlib loads only when a record is plotted

    return save_png(fig, path)


def jsonable(value: Any, max_items: int = 4096) -> Any:
    """Plain JSON data from snapshots and descriptions (big tensors are summarised)."""
    if isinstance(value, torch.Tensor):
        if value.numel() <= max_items and value.dtype != torch.uint8:
            return value.detach().cpu().tolist()
        summary: dict[str, Any] = {"shape": list(value.shape), "dtype": str(value.dtype)}
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


# ---------------------------------------------------------------------------
# the engine


@dataclass
class RunResult:
    folder: Path
    status: str
    """'completed', 'interrupted' or 'failed'."""
    estimate: Estimate
    pulses: int
    device_reads: int
    plots: list[Path]


class _StopFlag:
    """First Ctrl-C asks to stop after the current step; a second one interrupts at once."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None
        self._installed = False

    def _handler(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> _StopFlag:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handler)
            self._installed = True
        return self

    def __exit__(self, *exc: object) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)


def run_protocol(
    protocol: Protocol, array: DeviceArray, folder: str | Path, *,
    seed: int | None = None, progress: bool = True, clock: Any = None,
    timing: Timing = Timing(), max_duration_seconds: float | None = None,
    extra_metadata: dict[str, Any] | None = None,
) -> RunResult:
    """Run one protocol into ``folder`` (created if missing).

    The estimate is checked against ``array.describe().limits`` before any pulse. Rows are
    flushed as measured; metadata records the parameters, estimate, array description and
    snapshot, versions, git revision, seed and times. Ends in ``array.safe_state()``.
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
    status = "failed"
    error: str | None = None
    steps = protocol.run(ctx)
    bar = tqdm(total=estimate.steps, desc=protocol.name, unit="step", disable=not progress,
               leave=False)
    try:
        with _StopFlag() as stop:
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
        error = f"{type(exc).__name__}: {exc}"
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
    plots = make_plots(protocol, folder)
    return RunResult(folder, status, estimate, ctx.pulses, ctx.device_reads, plots)


def make_plots(protocol: Protocol, folder: Path) -> list[Path]:
    """Plots of a (possibly partial) record, from its tables."""
    import matplotlib

    matplotlib.use("Agg")
    tables = {name: read_table(folder / f"{name}.csv") for name in protocol.tables
              if (folder / f"{name}.csv").exists()}
    if not any(tables.values()):
        return []
    return protocol.plot(folder, tables)
