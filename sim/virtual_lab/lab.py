"""The virtual lab: pulser, source-meter and switch matrix around one twin."""

from __future__ import annotations

import errno
import math
import secrets
import threading
import time
from dataclasses import dataclass

import torch
from dwlab.sim.twin import PRESETS, TwinArray
from dwlab.sim.virtual_lab.faults import FAULT_KINDS, Fault
from dwlab.sim.virtual_lab.instrument import VirtualInstrument
from dwlab.sim.virtual_lab.matrix import VirtualMatrix
from dwlab.sim.virtual_lab.pulser import Burst, VirtualPulser
from dwlab.sim.virtual_lab.server import InstrumentServer, resource_name
from dwlab.sim.virtual_lab.source_meter import VirtualSourceMeter

from dwlab.config import LoadedConfig, socket_port
from dwlab.core.crosspoint import Route
from dwlab.core.instruments import ROLES
from dwlab.core.types import PUSH, PulseLimits, PulsePlan, PulseShape, interleaved

# Generous physical limits of the twin itself: the lab must never refuse what a real
# instrument would happily output (the hardware array enforces the configured limits).
LAB_LIMITS = PulseLimits(max_amplitude_volts=100.0, min_width_seconds=1e-12,
                         max_width_seconds=10.0, max_pulses_per_device=10**7,
                         max_duty_cycle=1.0)


@dataclass
class _InFlight:
    """A burst leaving the pulser: pulse ``k`` leaves at ``start + k * period``."""

    burst: Burst
    start: float
    period: float
    sent: int = 0

    def due(self, now: float) -> int:
        """Pulses that have left the output by ``now``."""
        if now < self.start:
            return 0
        if self.period <= 0:
            return self.burst.pulses
        return min(self.burst.pulses, int((now - self.start) / self.period) + 1)


class LabPortError(OSError):
    """A port the lab was asked to serve on is taken."""


class VirtualLab:
    """Pulser, source-meter and switch matrix served on loopback around one twin.

    ``wiring`` lists (write crosspoints, read crosspoints) per flat device index;
    ``drivers`` names the driver dialect each role speaks; ``ports`` (0 = any free port).
    Each lab has its own ``serial`` (in every instrument's ``*IDN?``), so a client can
    tell its lab from another one served on the same machine.
    """

    def __init__(
        self,
        twin: TwinArray,
        wiring: list[tuple[Route, Route]],
        drivers: dict[str, str],
        ports: dict[str, int] | None = None,
        *,
        latency_seconds: float = 0.0,
        series_resistance_ohms: float = 0.0,
    ):
        if len(wiring) != twin.size:
            raise ValueError(f"wiring lists {len(wiring)} devices; the twin has {twin.size}")
        self.twin = twin
        self.wiring = [(frozenset(w), frozenset(r)) for w, r in wiring]
        self.latency_seconds = float(latency_seconds)
        self.series_resistance_ohms = float(series_resistance_ohms)
        self.lock = threading.RLock()
        self.serial = f"VL{secrets.token_hex(4).upper()}"
        self.pulser = VirtualPulser(self, "pulser", drivers["pulser"], f"{self.serial}-1")
        self.meter = VirtualSourceMeter(self, "meter", drivers["meter"], f"{self.serial}-2")
        self.matrix = VirtualMatrix(self, "router", f"{self.serial}-3")
        self.instruments: dict[str, VirtualInstrument] = {
            "pulser": self.pulser, "meter": self.meter, "router": self.matrix,
        }
        self._ports = dict(ports or {})
        self._servers: dict[str, InstrumentServer] = {}
        self._delivered_push = torch.zeros(twin.size, dtype=torch.long)
        self._delivered_pull = torch.zeros(twin.size, dtype=torch.long)
        self._in_flight: list[_InFlight] = []
        self._connections = dict.fromkeys(self.instruments, 0)

    @classmethod
    def from_config(cls, loaded: LoadedConfig,
                    ports: dict[str, int] | None = None) -> VirtualLab:
        """The virtual lab of a loaded lab config (its ``virtual_lab`` section)."""
        cfg = loaded.config
        vl = cfg.virtual_lab
        if vl is None:
            raise ValueError(f"{loaded.path}: no 'virtual_lab' section")
        array = cfg.arrays[vl.array]
        hw = array.hardware
        # the config checks that the lab serves a hardware array, which has a fixed shape
        assert hw is not None and array.shape is not None
        shape = tuple(array.shape)
        params = PRESETS[vl.twin.preset]
        if vl.twin.calibration is not None:
            from dwlab.sim.calibration_file import load_calibration_params

            params = load_calibration_params(loaded.resolve(vl.twin.calibration), base=params)
        params = params.replace(**vl.twin.params)
        twin = TwinArray(shape, params, preset=vl.twin.preset,
                         seed=cfg.seed + vl.seed_offset, limits=LAB_LIMITS,
                         torch_device=vl.twin.torch_device, name=f"{vl.array}-virtual")
        drivers = {role: getattr(hw.instruments, role).driver for role in ROLES}
        if ports is None:
            ports = {role: _port_of(getattr(hw.instruments, role).resource) for role in ROLES}
        lab = cls(twin, hw.wiring.paths(shape), drivers, ports,
                  latency_seconds=vl.latency_seconds,
                  series_resistance_ohms=hw.read.series_resistance_ohms)
        for fault in vl.faults:
            lab.inject(fault.instrument, fault.kind, after=fault.after, times=fault.times,
                       match=fault.match)
        return lab

    # -- serving ---------------------------------------------------------------------

    def start(self) -> VirtualLab:
        """Serve every instrument; a :class:`LabPortError` naming the port when one is
        taken (the servers already started are stopped)."""
        try:
            for role, instrument in self.instruments.items():
                port = int(self._ports.get(role, 0))
                try:
                    server = InstrumentServer(self, instrument, port)
                except OSError as exc:
                    if exc.errno != errno.EADDRINUSE:
                        raise
                    raise LabPortError(
                        errno.EADDRINUSE, f"port {port} on 127.0.0.1 (the {role}) is already "
                        "in use, by another lab or program; serve on free ports (port 0) or "
                        "choose another base port") from None
                self._servers[role] = server.start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for server in self._servers.values():
            server.stop()
        self._servers.clear()

    def __enter__(self) -> VirtualLab:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def ports(self) -> dict[str, int]:
        return {role: server.port for role, server in self._servers.items()}

    @property
    def resources(self) -> dict[str, str]:
        """VISA resource strings by role, for the drivers."""
        return {role: resource_name(port) for role, port in self.ports.items()}

    def count_connection(self, role: str, change: int) -> None:
        """Called by the servers as a client connects (+1) or leaves (-1)."""
        with self.lock:
            self._connections[role] += change

    # -- inspection and faults (tests) ------------------------------------------------

    def inject(self, role: str, kind: str, *, after: int = 0, times: int = 1,
               match: str | None = None) -> None:
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind '{kind}'")
        self.instruments[role].faults.append(Fault(kind, after, times, match))

    def clear_faults(self) -> None:
        for instrument in self.instruments.values():
            instrument.faults.clear()

    def message_counts(self) -> dict[str, int]:
        """Messages each instrument has received so far."""
        return {role: i.messages for role, i in self.instruments.items()}

    def outputs_on(self) -> dict[str, bool]:
        return {"pulser": self.pulser.output_on(), "meter": self.meter.output_on()}

    def closed_crosspoints(self) -> set[str]:
        return set(self.matrix.closed)

    def open_connections(self) -> dict[str, int]:
        """Client connections each instrument holds open now."""
        with self.lock:
            return dict(self._connections)

    def is_safe(self) -> bool:
        """Outputs off and every crosspoint open."""
        return not any(self.outputs_on().values()) and not self.matrix.closed

    # -- physics (called by the servers under ``lock``) -------------------------------

    @property
    def delivered_push(self) -> torch.Tensor:
        """Push pulses each device has received so far."""
        with self.lock:
            self.settle()
            return self._delivered_push

    @property
    def delivered_pull(self) -> torch.Tensor:
        with self.lock:
            self.settle()
            return self._delivered_pull

    def emit(self, burst: Burst, start: float, period: float) -> None:
        """A burst leaves the pulser from ``start`` on, one pulse per ``period``."""
        self._in_flight.append(_InFlight(burst, start, period))

    def settle(self) -> None:
        """Deliver the pulses that have left the pulser by now to the devices the matrix
        connects now: called before every change of routing and every reading, so a
        client that re-routes while a burst is under way sends its rest elsewhere, as on
        a bench."""
        if not self._in_flight:
            return
        now = time.monotonic()
        out = []
        for flight in self._in_flight:
            due = flight.due(now)
            if due > flight.sent:
                out.append(flight.burst._replace(pulses=due - flight.sent))
                flight.sent = due
        self._in_flight = [f for f in self._in_flight if f.sent < f.burst.pulses]
        self.deliver(out)

    def cut_bursts(self) -> None:
        """The output went off: what has left is delivered, the rest never leaves."""
        self.settle()
        self._in_flight.clear()

    def _connected(self, read: bool) -> list[int]:
        closed = self.matrix.closed
        k = 1 if read else 0
        return [i for i, paths in enumerate(self.wiring) if paths[k] <= closed]

    def deliver(self, bursts: list[Burst]) -> None:
        """Bursts leave the pulser back to back and reach every device the write path
        connects.

        A run of one pulse shape whose pulse order is the twin's own (push and pull
        alternating while both remain, then the surplus) is applied as one twin plan;
        any other order burst by burst, so the walls see the pulses in the order sent.
        """
        devices = self._connected(read=False)
        if not devices or not bursts:
            return
        runs: list[list[Burst]] = []
        for burst in bursts:
            if runs and runs[-1][0].shape == burst.shape:
                runs[-1].append(burst)
            else:
                runs.append([burst])
        for run in runs:
            n_push = sum(n for p, n, _ in run if p == PUSH)
            n_pull = sum(n for p, n, _ in run if p != PUSH)
            order = [p for p, n, _ in run for _ in range(n)]
            if order == [p for p, n in interleaved(n_push, n_pull) for _ in range(n)]:
                self._pulse(devices, n_push, n_pull, run[0].shape)
            else:
                for polarity, n, shape in run:
                    self._pulse(devices, n if polarity == PUSH else 0,
                                0 if polarity == PUSH else n, shape)

    def _pulse(self, devices: list[int], n_push: int, n_pull: int, shape: PulseShape) -> None:
        push = torch.zeros(self.twin.size, dtype=torch.long)
        pull = torch.zeros(self.twin.size, dtype=torch.long)
        push[devices] = n_push
        pull[devices] = n_pull
        self._delivered_push += push
        self._delivered_pull += pull
        self.twin.apply(PulsePlan(push.reshape(self.twin.shape), pull.reshape(self.twin.shape),
                                  shape, shape))

    def current_through_read_path(self, bias_volts: float) -> float:
        """Current at ``bias_volts`` through the devices the read path connects (in
        parallel), each in series with the lead resistance; ~0 A with nothing connected."""
        self.settle()
        devices = self._connected(read=True)
        if not devices:
            return 1e-13 * float(torch.randn(()))
        g = self.twin.read(devices=torch.tensor(devices)).conductance_siemens
        total = 0.0
        for gi in g.tolist():
            resistance = 1.0 / max(gi, 1e-15) + self.series_resistance_ohms
            total += bias_volts / resistance
        return total if math.isfinite(total) else 0.0


def _port_of(resource: str) -> int:
    port = socket_port(resource)
    if port is None:
        raise ValueError(f"resource '{resource}' is not TCPIP::127.0.0.1::PORT::SOCKET")
    return port
