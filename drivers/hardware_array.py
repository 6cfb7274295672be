"""HardwareArray: a DeviceArray built from a pulse source, a conductance meter and a router.

Per device: route (close its crosspoints), fire its bursts, and read on demand. A plan is
grouped by pulse shape, so the pulse source is reconfigured once per group; inside a group
each device costs one routing round trip and one firing round trip: all its pulses go in one
compound message, push and pull alternating while both remain and the surplus after (the
twin's order). Push and pull of different shapes form two groups (push block, pull block).
With ``read_back`` each device is also measured right after its pulses: one more round trip
when the write and read paths share a routing (bias tee, ``wiring.shared_path``).

Safety: the plan, the duty cycle, the read bias and the compliance are checked before any
command is sent; the meter's compliance is set before its output is first switched on; every
exit path (error, timeout, Ctrl-C) ends in :meth:`safe_state` (outputs off, every crosspoint
open, or a :class:`~dwlab.drivers.safe_state.SafeStateError` naming what may remain on or
closed). Records first: a completed apply is recorded (``last_receipt``, the ``apply``
event) before its closing safe state, and an aborted one says what was applied before the
stop (``exc.receipt``, the ``apply_aborted`` event).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Sequence
from typing import Any

import torch
from dwlab.drivers.adapters import clip
from dwlab.drivers.firing_order import firing_groups
from dwlab.drivers.safe_state import SafeStateError, make_safe

from dwlab.core.device import ArrayBase
from dwlab.core.errors import InstrumentError, InstrumentReplyError, PulseLimitError
from dwlab.core.roles import ConductanceMeter, PulseSource, Router
from dwlab.core.types import (
    PUSH,
    ArrayInfo,
    Bursts,
    PulseLimits,
    PulsePlan,
    PulseReceipt,
    PulseShape,
    Readout,
)
from dwlab.records import now_iso

EVENT_TEXT = 1000
"""Characters of an error kept in an event or a composed message."""


class HardwareArray(ArrayBase):
    """Domain-wall devices on a bench (or on the virtual lab), behind ``DeviceArray``.

    The three roles come already open (``dwlab.app.backends`` opens them from a lab
    config); from then on the array owns them: :meth:`close` hangs them up.
    """

    backend = "hardware"

    def __init__(
        self,
        *,
        name: str,
        shape: Sequence[int],
        pulser: PulseSource,
        meter: ConductanceMeter,
        router: Router,
        wiring: Sequence[tuple[Sequence[str], Sequence[str]]],
        limits: PulseLimits,
        nominal_pulse: PulseShape,
        conductance_range_siemens: tuple[float, float],
        step_siemens: float,
        step_sigma_siemens: float,
        read_bias_volts: float = 0.01,
        compliance_amps: float = 1e-4,
        max_read_bias_volts: float = 0.1,
        max_compliance_amps: float = 1e-3,
        wires: int = 2,
        nplc: float = 0.1,
        series_resistance_ohms: float = 0.0,
        pulse_period_seconds: float = 1e-6,
        strategy: str = "grouped",
        read_back: bool = False,
        shared_path: bool = False,
        event_log: Any = None,
    ):
        self.name = name
        self.shape = tuple(int(s) for s in shape)
        self.size = math.prod(self.shape)
        if len(wiring) != self.size:
            raise ValueError(f"wiring lists {len(wiring)} devices; the shape needs {self.size}")
        if strategy not in ("grouped", "naive"):
            raise ValueError(f"strategy must be 'grouped' or 'naive', got {strategy!r}")
        # Safety limits first: nothing has been sent to any instrument yet.
        self.check_settings(read_bias_volts=read_bias_volts, compliance_amps=compliance_amps,
                            max_read_bias_volts=max_read_bias_volts,
                            max_compliance_amps=max_compliance_amps, limits=limits,
                            nominal_pulse=nominal_pulse)
        self.pulser, self.meter, self.router = pulser, meter, router
        self.write_paths = [tuple(w) for w, _ in wiring]
        self.read_paths = [tuple(r) for _, r in wiring]
        self.limits = limits
        self.nominal_pulse = nominal_pulse
        self.g_min, self.g_max = conductance_range_siemens
        self.step_siemens = step_siemens
        self.step_sigma_siemens = step_sigma_siemens
        self.read_bias_volts = read_bias_volts
        self.compliance_amps = compliance_amps
        self.series_resistance_ohms = series_resistance_ohms
        self.pulse_period_seconds = pulse_period_seconds
        self.strategy = strategy
        self.read_back = read_back
        self.shared_path = shared_path
        self.event_log = event_log
        self.pulses_applied = 0
        self.last_receipt: PulseReceipt | None = None
        self._routed: tuple[str, ...] | None = None
        self._maybe_closed: frozenset[str] = frozenset()  # since the last confirmed open
        self.identity: dict[str, str] = {}
        try:
            for role in ("pulser", "meter", "router"):
                self.identity[role] = getattr(self, role).identify()
            self.meter.configure(read_bias_volts, compliance_amps, wires, nplc)
        except BaseException as exc:
            self._stop_after(exc)
            raise
        self.safe_state()

    @staticmethod
    def check_settings(*, read_bias_volts: float = 0.01, compliance_amps: float = 1e-4,
                       max_read_bias_volts: float = 0.1, max_compliance_amps: float = 1e-3,
                       limits: PulseLimits, nominal_pulse: PulseShape, **_: Any) -> None:
        """The safety checks of the settings, made before any instrument is even opened."""
        if not 0 < read_bias_volts <= max_read_bias_volts:
            raise PulseLimitError(f"read bias {read_bias_volts:g} V outside (0, "
                                  f"{max_read_bias_volts:g}] V")
        if not 0 < compliance_amps <= max_compliance_amps:
            raise PulseLimitError(f"compliance {compliance_amps:g} A outside (0, "
                                  f"{max_compliance_amps:g}] A")
        limits.check_shape(nominal_pulse, "nominal pulse")

    # -- DeviceArray -------------------------------------------------------------------

    def describe(self) -> ArrayInfo:
        return ArrayInfo(
            name=self.name, backend=self.backend, shape=self.shape,
            conductance_min_siemens=self.g_min, conductance_max_siemens=self.g_max,
            limits=self.limits, nominal_pulse=self.nominal_pulse,
            step_siemens=self.step_siemens, step_sigma_siemens=self.step_sigma_siemens,
            identity=dict(self.identity),
        )

    def check_plan(self, plan: PulsePlan) -> None:
        """Every check an apply makes before sending anything (shape, limits, duty cycle)."""
        plan.check_against(self.shape, self.limits)
        for what, shape in (("push pulse", plan.push_shape), ("pull pulse", plan.pull_shape)):
            period = self.pulse_period_seconds
            duty = shape.width_seconds / period if period > 0 else math.inf
            if not duty <= self.limits.max_duty_cycle:  # a NaN period fails too
                raise PulseLimitError(
                    f"{what}: width {shape.width_seconds:g} s at a period of "
                    f"{self.pulse_period_seconds:g} s is a duty cycle of {duty:.3g}, above "
                    f"the limit {self.limits.max_duty_cycle:g}"
                )

    def apply(self, plan: PulsePlan) -> PulseReceipt:
        self.check_plan(plan)  # before any I/O
        started = time.perf_counter()
        pushed = torch.zeros(self.size, dtype=torch.long)
        pulled = torch.zeros(self.size, dtype=torch.long)
        read_back: dict[int, float] = {}
        in_flight: tuple[int, Bursts] | None = None
        groups = firing_groups(plan, self.strategy)
        try:
            if self.read_back:
                self.meter.output_on()
            for shape, items in groups:
                self.pulser.configure(shape.amplitude_volts, shape.width_seconds,
                                      self.pulse_period_seconds)
                self.pulser.output_on()
                for device, bursts in items:
                    self._route(device, write=True)
                    in_flight = (device, bursts)
                    self.pulser.fire(bursts)
                    in_flight = None
                    for polarity, n in bursts:
                        (pushed if polarity == PUSH else pulled)[device] += n
                    if self.read_back:
                        self._route(device, write=False)
                        read_back[device] = self._conductance(self.meter.measure_current())
                self.pulser.output_off()
                self._check_errors()
        except BaseException as exc:
            receipt = self._receipt(pushed, pulled, started, read_back, len(groups))
            receipt.details["aborted"] = clip(f"{type(exc).__name__}: {exc}", EVENT_TEXT)
            if in_flight is not None:
                receipt.details["unconfirmed"] = {"device": in_flight[0],
                                                  "bursts": in_flight[1]}
            self._record(receipt, {"event": "apply_aborted", "array": self.name,
                                   "error": receipt.details["aborted"],
                                   "pulses_applied": receipt.pulses_total,
                                   "devices_touched": int(((pushed + pulled) > 0).sum()),
                                   "unconfirmed": receipt.details.get("unconfirmed")})
            with contextlib.suppress(Exception):
                exc.receipt = receipt  # type: ignore[attr-defined]
            if isinstance(exc, InstrumentError) and len(exc.args) == 1:
                touched = int(((pushed + pulled) > 0).sum())
                note = f"{receipt.pulses_total} pulses applied to {touched} devices before the stop"
                if in_flight is not None:
                    note += f"; the burst to device {in_flight[0]} is unconfirmed"
                exc.args = (f"{exc.args[0]} ({note})",)
            self._stop_after(exc)
            raise
        receipt = self._receipt(pushed, pulled, started, read_back, len(groups))
        # recorded before the closing safe state: a failure there cannot lose it
        self._record(receipt, {"event": "apply", "array": self.name,
                               "pulses": receipt.pulses_total,
                               "groups": receipt.details["groups"],
                               "seconds": round(receipt.duration_seconds, 6)})
        try:
            self.safe_state()
        except SafeStateError as exc:
            exc.receipt = receipt  # type: ignore[attr-defined]
            exc.args = (f"{exc.args[0]} (after all {receipt.pulses_total} pulses of the "
                        "apply were applied)",)
            raise
        return receipt

    def read(self, n_averages: int = 1, devices: torch.Tensor | None = None) -> Readout:
        if n_averages < 1:
            raise ValueError("n_averages must be at least 1")
        if devices is None:
            index = list(range(self.size))
        else:
            index = [int(i) for i in torch.as_tensor(devices).reshape(-1).tolist()]
            bad = [i for i in index if not 0 <= i < self.size]
            if bad:
                raise IndexError(f"device {bad[0]} outside the array of {self.size}")
        values = torch.empty(len(index), n_averages, dtype=torch.float64)
        try:
            self.meter.output_on()
            for k, device in enumerate(index):
                self._route(device, write=False)
                for j in range(n_averages):
                    values[k, j] = self._conductance(self.meter.measure_current())
        except BaseException as exc:
            self._stop_after(exc)
            raise
        self.safe_state()
        mean = values.mean(dim=1).float()
        spread = values.std(dim=1).float() if n_averages > 1 else None
        if devices is None:
            mean = mean.reshape(self.shape)
            spread = spread.reshape(self.shape) if spread is not None else None
        return Readout(mean, spread, n_averages)

    def snapshot(self) -> dict[str, Any]:
        """The measured conductances (a chip's state cannot be copied, only re-programmed)."""
        return {"backend": self.backend, "name": self.name, "shape": list(self.shape),
                "identity": dict(self.identity), "pulses_applied": self.pulses_applied,
                "conductance_siemens": self.read().conductance_siemens.clone()}

    def restore(self, snapshot: dict[str, Any], *, tolerance_steps: float = 1.5,
                max_rounds: int = 20) -> None:
        """Program the devices back to the snapshot's conductances (write and verify)."""
        if list(snapshot["shape"]) != list(self.shape):
            raise ValueError(f"snapshot of shape {snapshot['shape']} for an array of shape "
                             f"{list(self.shape)}")
        target = torch.as_tensor(snapshot["conductance_siemens"]).reshape(-1).double()
        cap = self.limits.max_pulses_per_device
        for _ in range(max_rounds):
            error = target - self.read().conductance_siemens.reshape(-1).double()
            steps = (error / self.step_siemens).round().long()
            steps[error.abs() <= tolerance_steps * self.step_siemens] = 0
            if not bool(steps.any()):
                return
            push = steps.clamp(min=0, max=cap).reshape(self.shape)
            pull = (-steps).clamp(min=0, max=cap).reshape(self.shape)
            self.apply(PulsePlan.uniform(push, pull, self.nominal_pulse))
        raise InstrumentError(f"{self.name}: devices did not reach the snapshot's "
                              f"conductances within {max_rounds} write-verify rounds")

    def safe_state(self) -> None:
        """Outputs off and every crosspoint open; tries every step even if one fails. A
        :class:`SafeStateError` (also in the event log) names what may remain on or closed."""
        self._routed = None
        try:
            make_safe({"pulser": self.pulser, "meter": self.meter, "router": self.router},
                      self._maybe_closed)
        except BaseException as exc:
            error = exc if isinstance(exc, SafeStateError) else getattr(
                exc, "safe_state_error", None)
            if error is not None:
                self._log({"event": "safe_state_failed", "array": self.name,
                           "error": clip(str(error), EVENT_TEXT),
                           "unconfirmed": error.unconfirmed})
            if error is None or "router" not in error.unconfirmed:
                self._maybe_closed = frozenset()
            raise
        self._maybe_closed = frozenset()

    def _stop_after(self, exc: BaseException) -> None:
        """Safe state after a failure, keeping ``exc`` as the error the caller sees (a
        failing clean-up is added to it, as ``exc.safe_state_error``, instead of replacing
        it)."""
        try:
            self.safe_state()
        except SafeStateError as cleanup:
            with contextlib.suppress(Exception):
                exc.safe_state_error = cleanup  # type: ignore[attr-defined]
            if isinstance(exc, InstrumentError) and len(exc.args) == 1:
                exc.args = (f"{exc.args[0]}; and {cleanup}",)
        except BaseException as interrupt:  # a Ctrl-C in the clean-up: the first error wins
            cleanup_error = getattr(interrupt, "safe_state_error", interrupt)
            with contextlib.suppress(Exception):
                exc.safe_state_error = cleanup_error  # type: ignore[attr-defined]

    def close(self) -> None:
        """Safe state, then disconnect every instrument (even when the safe state fails)."""
        try:
            self.safe_state()
        finally:
            for role in (self.pulser, self.meter, self.router):
                role.close()

    # -- helpers -----------------------------------------------------------------------

    def _route(self, device: int, *, write: bool) -> None:
        if self.shared_path:
            crosspoints = self.write_paths[device] + self.read_paths[device]
        else:
            crosspoints = self.write_paths[device] if write else self.read_paths[device]
        if crosspoints != self._routed:
            self._routed = None
            self._maybe_closed |= frozenset(crosspoints)  # until the matrix confirms the route
            self.router.route(crosspoints)
            self._routed = crosspoints
            self._maybe_closed = frozenset(crosspoints)  # an exclusive close

    def _conductance(self, current_amps: float) -> float:
        """Device conductance from the current at the read bias, lead resistance removed."""
        if abs(current_amps) >= 0.999 * self.compliance_amps:
            raise InstrumentReplyError(
                f"{self.name}: read current {current_amps:g} A at the compliance "
                f"{self.compliance_amps:g} A (short circuit or wrong wiring?)"
            )
        if current_amps <= 0:
            return 0.0  # open circuit: no conducting device on the read path
        device_ohms = self.read_bias_volts / current_amps - self.series_resistance_ohms
        if device_ohms <= 0:
            raise InstrumentReplyError(
                f"{self.name}: measured {self.read_bias_volts / current_amps:g} ohm, less "
                f"than the series resistance {self.series_resistance_ohms:g} ohm"
            )
        return 1.0 / device_ohms

    def _check_errors(self) -> None:
        for role in ("pulser", "router"):
            entries = getattr(self, role).errors()
            if entries:
                raise InstrumentReplyError(clip(f"{role} reported: {'; '.join(entries)}",
                                                EVENT_TEXT))

    def _receipt(self, pushed: torch.Tensor, pulled: torch.Tensor, started: float,
                 read_back: dict[int, float], groups: int) -> PulseReceipt:
        details: dict[str, Any] = {"strategy": self.strategy, "groups": groups,
                                   "order": "per device: push and pull alternating, "
                                            "then the surplus (one shape); else per shape"}
        if read_back:
            g = torch.full((self.size,), float("nan"))
            for device, value in read_back.items():
                g[device] = value
            details["read_back_siemens"] = g.reshape(self.shape)
        return PulseReceipt(push_applied=pushed.reshape(self.shape),
                            pull_applied=pulled.reshape(self.shape), devices_clipped=0,
                            duration_seconds=time.perf_counter() - started, details=details)

    def _record(self, receipt: PulseReceipt, event: dict[str, Any]) -> None:
        """What an apply delivered: the receipt, the array's pulse count and the event."""
        self.last_receipt = receipt
        self.pulses_applied += receipt.pulses_total
        self._log(event)

    def _log(self, event: dict[str, Any]) -> None:
        if self.event_log is not None:
            self.event_log.write({"time": now_iso(), **event})
