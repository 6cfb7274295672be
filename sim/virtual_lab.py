"""The virtual lab: a twin behind real SCPI/TSP servers on 127.0.0.1.

Each instrument of one hardware array (pulse generator, source-meter, switch matrix) is a
small threaded TCP server speaking the command subset the dwlab drivers send, newline
terminated. All of them share ONE :class:`~dwlab.sim.twin.TwinArray`: a burst from the
pulser moves the walls of the devices whose write crosspoints the matrix has closed, and
the source-meter measures the current through the devices whose read crosspoints are
closed. Drivers reach it through pyvisa-py (``TCPIP::127.0.0.1::PORT::SOCKET``) exactly as
they reach a bench.

Options: latency added before each message; injected faults (a query left unanswered, a
dropped connection, an error-queue entry, a garbled reply). Every server keeps a command
log, and its output and switch state can be read directly by tests.
"""

from __future__ import annotations

import math
import re
import socketserver
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import torch
from dwlab.sim.twin import PRESETS, TwinArray

from dwlab.core.crosspoint import CROSSPOINT
from dwlab.core.types import PULL, PUSH, PulseLimits, PulsePlan, PulseShape, interleaved

HOST = "127.0.0.1"
GARBLED = "#?@!~\x7f~"
NO_READING = "9.91e+37"
"""What a Keithley returns where it has no valid reading."""

# Generous physical limits of the twin itself: the lab must never refuse what a real
# instrument would happily output (the hardware array enforces the configured limits).
LAB_LIMITS = PulseLimits(max_amplitude_volts=100.0, min_width_seconds=1e-12,
                         max_width_seconds=10.0, max_pulses_per_device=10**7,
                         max_duty_cycle=1.0)


@dataclass
class Fault:
    kind: str  # timeout | drop | error | garble
    after: int = 0
    times: int = 1
    match: str | None = None
    seen: int = 0

    def applies(self, message: str) -> bool:
        """Count ``message`` and say whether the fault fires on it."""
        if self.times <= 0:
            return False
        if self.match is not None and self.match not in message:
            return False
        if self.kind in ("timeout", "garble") and not _is_query(message):
            return False  # only a reply can be withheld or garbled
        self.seen += 1
        if self.seen <= self.after:
            return False
        self.times -= 1
        return True


def _is_query(message: str) -> bool:
    return "?" in message or "print(" in message


class VirtualInstrument:
    """Command log, error queue and faults; subclasses interpret the messages."""

    idn = "dwlab,virtual,0,1.0"

    def __init__(self, lab: VirtualLab, role: str):
        self.lab = lab
        self.role = role
        self.log: list[str] = []
        self.error_queue: deque[tuple[int, str]] = deque()
        self.faults: list[Fault] = []

    def push_error(self, code: int, text: str) -> None:
        self.error_queue.append((code, text))

    def respond(self, message: str) -> tuple[str, str | None]:
        """(action, reply) for one received message; action is 'reply' or 'drop'."""
        self.log.append(message)
        fault = next((f for f in self.faults if f.applies(message)), None)
        if fault is not None and fault.kind == "drop":
            return "drop", None
        if fault is not None and fault.kind == "timeout":
            return "reply", None  # hung: the message is neither executed nor answered
        with self.lab.lock:
            reply = self.handle(message)
        if fault is not None and fault.kind == "error":
            self.push_error(-300, "Device-specific error; injected by the virtual lab")
        if fault is not None and fault.kind == "garble":
            reply = GARBLED
        return "reply", reply

    def handle(self, message: str) -> str | None:  # pragma: no cover - overridden
        raise NotImplementedError


class ScpiInstrument(VirtualInstrument):
    """SCPI: ``;``-separated commands, ``HEADER value`` settings and ``HEADER?`` queries.

    ``settings`` maps each header the driver may send (channel digits included) to the
    name of a state entry; queries return the stored value.
    """

    headers: dict[str, str] = {}

    def __init__(self, lab: VirtualLab, role: str):
        super().__init__(lab, role)
        self.state: dict[str, str] = {}

    def handle(self, message: str) -> str | None:
        replies = []
        for command in message.split(";"):
            command = command.strip()
            if not command:
                continue
            reply = self.command(command)
            if reply is not None:
                replies.append(reply)
        return ";".join(replies) if replies else None

    def command(self, command: str) -> str | None:
        head, _, value = command.partition(" ")
        head = head.upper().lstrip(":")
        if head == "*IDN?":
            return self.idn
        if head == "*OPC?":
            return "1"
        if head in ("*RST", "*CLS", "*WAI"):
            if head == "*CLS":
                self.error_queue.clear()
            return None
        if head in ("SYST:ERR?", "SYST:ERR:NEXT?"):
            if self.error_queue:
                code, text = self.error_queue.popleft()
                return f'{code},"{text}"'
            return '0,"No error"'
        special = self.special(head, value.strip())
        if special is not False:
            return special  # type: ignore[return-value]
        query = head.endswith("?")
        key = self.headers.get(head[:-1] if query else head)
        if key is None:
            self.push_error(-113, f"Undefined header; {command}")
            return None
        if query:
            return self.state.get(key, "0")
        if not value.strip():
            self.push_error(-109, f"Missing parameter; {command}")
            return None
        value = value.strip()
        if value.upper() in ("ON", "OFF"):  # SCPI booleans read back as 1 / 0
            value = "1" if value.upper() == "ON" else "0"
        self.state[key] = value
        return None

    def special(self, head: str, value: str) -> str | None | bool:
        """Commands with an effect beyond storing a value; False when ``head`` is not one."""
        return False

    def number(self, key: str, default: float = 0.0) -> float:
        try:
            return float(self.state.get(key, default))
        except ValueError:
            return default

    def flag(self, key: str) -> bool:
        return self.state.get(key, "0").upper() in ("1", "ON")


def _channel_headers(template: dict[str, str]) -> dict[str, str]:
    """Expand ``{ch}`` in headers and keys for channels 1 and 2 (and no digit = 1)."""
    out = {}
    for head, key in template.items():
        if "{ch}" in head:
            for ch in ("1", "2"):
                out[head.format(ch=ch)] = key.format(ch=ch)
            out[head.format(ch="")] = key.format(ch="1")
        else:
            out[head] = key
    return out


class VirtualPulser(ScpiInstrument):
    """An Agilent 81110A or Keysight 81160A: bursts on ``*TRG`` while the output is on."""

    def __init__(self, lab: VirtualLab, role: str, driver: str):
        super().__init__(lab, role)
        self.driver = driver
        if driver == "agilent81110a":
            self.idn = "Agilent Technologies,81110A,VIRTUAL0001,dwlab-virtual"
            count = {"TRIG:COUN": "count1"}  # one burst counter for the mainframe
        else:
            self.idn = "Agilent Technologies,81160A,VIRTUAL0002,dwlab-virtual"
            count = {"TRIG{ch}:COUN": "count{ch}"}
        self.headers = _channel_headers({
            "VOLT{ch}:HIGH": "high{ch}", "VOLT{ch}:LOW": "low{ch}",
            "PULS:WIDT{ch}": "width{ch}", "PULS:PER{ch}": "period{ch}",
            "OUTP{ch}:POL": "polarity{ch}", "OUTP{ch}": "output{ch}",
            "ARM:SOUR{ch}": "arm{ch}", "FUNC{ch}": "function{ch}", **count,
        })
        self.state.update({"output1": "0", "output2": "0", "polarity1": "NORM",
                           "polarity2": "NORM", "count1": "1", "count2": "1",
                           "high1": "0", "high2": "0", "low1": "0", "low2": "0",
                           "width1": "1e-8", "width2": "1e-8"})
        self.bursts_fired = 0

    def output_on(self) -> bool:
        return self.flag("output1") or self.flag("output2")

    def special(self, head: str, value: str) -> str | None | bool:
        if head == "*TRG":
            for ch in ("1", "2"):
                if self.flag(f"output{ch}"):
                    self.fire(ch)
            return None
        return False

    def fire(self, ch: str) -> None:
        count = self.number("count1" if self.driver == "agilent81110a" else f"count{ch}", 1)
        amplitude = self.number(f"high{ch}") - self.number(f"low{ch}")
        width = self.number(f"width{ch}", 1e-8)
        self.bursts_fired += 1
        if amplitude <= 0 or width <= 0 or count < 1:
            return
        polarity = PULL if self.state.get(f"polarity{ch}", "NORM").upper().startswith("INV") \
            else PUSH
        self._pending.append((polarity, int(count), PulseShape(amplitude, width)))

    def handle(self, message: str) -> str | None:
        """Bursts of one message go out back to back; the twin receives them together
        (the routing cannot change within a message: the lab lock is held)."""
        self._pending: list[tuple[int, int, PulseShape]] = []
        reply = super().handle(message)
        self.lab.deliver(self._pending)
        return reply


class VirtualSourceMeter(ScpiInstrument):
    """A Keithley 2450 or 2400 sourcing a small voltage and measuring current."""

    def __init__(self, lab: VirtualLab, role: str, driver: str):
        super().__init__(lab, role)
        self.driver = driver
        if driver == "keithley2450":
            self.idn = "KEITHLEY INSTRUMENTS,MODEL 2450,VIRTUAL0003,dwlab-virtual"
            self.headers = {"SOUR:FUNC": "function", "SOUR:VOLT:ILIM": "compliance",
                            "SOUR:VOLT:LEV": "bias", "SENS:FUNC": "sense",
                            "SENS:CURR:RSEN": "four_wire", "SENS:CURR:NPLC": "nplc",
                            "OUTPUT": "output", "SENS:CURR:RANG:AUTO": "autorange"}
        else:
            self.idn = "KEITHLEY INSTRUMENTS INC.,MODEL 2400,VIRTUAL0004,dwlab-virtual"
            self.headers = {"SOURCE:FUNCTION": "function",
                            "SENSE:CURRENT:PROTECTION": "compliance",
                            "SOURCE:VOLTAGE": "bias", "SYSTEM:RSENSE": "four_wire",
                            "SENSE:CURRENT:NPLCYCLES": "nplc", "OUTPUT": "output",
                            "FORMAT:ELEMENTS": "elements"}
        self.state.update({"output": "0", "bias": "0", "compliance": "1.05e-4"})
        self.compliance_set_while_off = False

    def output_on(self) -> bool:
        return self.flag("output")

    def command(self, command: str) -> str | None:
        head = command.partition(" ")[0].upper().lstrip(":")
        if head in ("SOUR:VOLT:ILIM", "SENSE:CURRENT:PROTECTION") and not self.output_on():
            self.compliance_set_while_off = True
        return super().command(command)

    def special(self, head: str, value: str) -> str | None | bool:
        if head == "READ?" and self.driver == "keithley2450":
            return self.reading()
        if head == "MEASURE:CURRENT?" and self.driver == "keithley2400":
            current = float(self.reading())
            bias = self.number("bias")
            ohms = bias / current if current else float(NO_READING)
            return f"{bias:e},{current:e},{ohms:e},{time.monotonic():e},0"
        return False

    def reading(self) -> str:
        if not self.output_on():
            self.push_error(-221, "Settings conflict; output is off")
            return NO_READING
        current = self.lab.current_through_read_path(self.number("bias"))
        limit = abs(self.number("compliance", 1.05e-4))
        return f"{max(-limit, min(limit, current)):e}"


_TSP = re.compile(
    r'channel\.(?P<op>close|open|exclusiveclose)\("(?P<chans>[^"]*)"\)'
    r'|(?P<getclose>print\(channel\.getclose\("allslots"\)\))'
    r'|(?P<count>print\(errorqueue\.count\))'
    r'|(?P<next>errorcode, message = errorqueue\.next\(\) print\(errorcode, message\))'
    r'|print\((?P<number>-?\d+(?:\.\d*)?)\)'
    r'|(?P<idn>\*IDN\?)'
)


def _tsp_number(value: float) -> str:
    return f"{value:.5e}"


class VirtualMatrix(VirtualInstrument):
    """A Keithley 707B (TSP): crosspoints close and open; queries print."""

    idn = "Keithley Instruments Inc.,Model 707B,VIRTUAL0005,dwlab-virtual"

    def __init__(self, lab: VirtualLab, role: str):
        super().__init__(lab, role)
        self.closed: set[str] = set()

    def handle(self, message: str) -> str | None:
        out = []
        text = message.strip()
        matches = list(_TSP.finditer(text))
        covered = "".join(text[m.start():m.end()] for m in matches)
        if not matches or covered.replace(" ", "") != text.replace(" ", ""):
            self.push_error(-285, f"TSP Syntax error; {text}")
            return None
        for m in matches:
            if m.group("op"):
                self.switch(m.group("op"), m.group("chans"))
            elif m.group("getclose"):
                out.append(";".join(sorted(self.closed)) if self.closed else "nil")
            elif m.group("count"):
                out.append(_tsp_number(len(self.error_queue)))
            elif m.group("next"):
                code, text_ = self.error_queue.popleft() if self.error_queue else (0, "")
                out.append(f"{_tsp_number(code)}\t{text_}")
            elif m.group("number") is not None:
                out.append(_tsp_number(float(m.group("number"))))
            elif m.group("idn"):
                out.append(self.idn)
        return "\n".join(out) if out else None

    def switch(self, op: str, chans: str) -> None:
        names = [c.strip() for c in chans.split(",") if c.strip()]
        if names == ["allslots"] and op == "open":
            self.closed.clear()
            return
        bad = [c for c in names if not CROSSPOINT.match(c)]
        if bad:  # the 707B changes nothing when any channel is invalid
            self.push_error(1115, f"Parameter error invalid channel {bad[0]}")
            return
        if op == "close":
            self.closed.update(names)
        elif op == "open":
            self.closed.difference_update(names)
        else:
            self.closed = set(names)


class _Handler(socketserver.StreamRequestHandler):
    def setup(self) -> None:
        super().setup()
        self._count_connection(+1)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self._count_connection(-1)

    def _count_connection(self, change: int) -> None:
        server: _Server = self.server  # type: ignore[assignment]
        server.lab._count_connection(server.instrument.role, change)

    def handle(self) -> None:
        server: _Server = self.server  # type: ignore[assignment]
        instrument = server.instrument
        while True:
            try:
                raw = self.rfile.readline()
            except OSError:
                return
            if not raw:
                return
            message = raw.decode("ascii", "replace").rstrip("\r\n")
            if not message.strip():
                continue
            if server.lab.latency_seconds:
                time.sleep(server.lab.latency_seconds)
            action, reply = instrument.respond(message)
            if action == "drop":
                return  # closing the socket is the fault
            if reply is not None:
                try:
                    self.wfile.write((reply + "\n").encode("ascii", "replace"))
                    self.wfile.flush()
                except OSError:
                    return


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, lab: VirtualLab, instrument: VirtualInstrument, port: int):
        self.lab = lab
        self.instrument = instrument
        super().__init__((HOST, port), _Handler)


class VirtualLab:
    """Pulser, source-meter and switch matrix served on loopback around one twin.

    ``wiring`` lists (write crosspoints, read crosspoints) per flat device index;
    ``drivers`` names the driver dialect each role speaks; ``ports`` (0 = any free port).
    """

    def __init__(
        self,
        twin: TwinArray,
        wiring: list[tuple[tuple[str, ...], tuple[str, ...]]],
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
        self.pulser = VirtualPulser(self, "pulser", drivers["pulser"])
        self.meter = VirtualSourceMeter(self, "meter", drivers["meter"])
        self.matrix = VirtualMatrix(self, "router")
        self.instruments: dict[str, VirtualInstrument] = {
            "pulser": self.pulser, "meter": self.meter, "router": self.matrix,
        }
        self._ports = dict(ports or {})
        self._servers: dict[str, _Server] = {}
        self._threads: list[threading.Thread] = []
        self.delivered_push = torch.zeros(twin.size, dtype=torch.long)
        self.delivered_pull = torch.zeros(twin.size, dtype=torch.long)
        self._connections = dict.fromkeys(self.instruments, 0)

    @classmethod
    def from_config(cls, loaded: Any, ports: dict[str, int] | None = None) -> VirtualLab:
        """The virtual lab of a loaded lab config (its ``virtual_lab`` section)."""
        cfg = loaded.config
        vl = cfg.virtual_lab
        if vl is None:
            raise ValueError(f"{loaded.path}: no 'virtual_lab' section")
        array = cfg.arrays[vl.array]
        hw = array.hardware
        shape = tuple(array.shape)
        params = PRESETS[vl.twin.preset]
        if vl.twin.calibration is not None:
            from dwlab.sim.calibration_file import load_calibration_params

            params = load_calibration_params(loaded.resolve(vl.twin.calibration), base=params)
        params = params.replace(**vl.twin.params)
        twin = TwinArray(shape, params, preset=vl.twin.preset,
                         seed=cfg.seed + vl.seed_offset, limits=LAB_LIMITS,
                         torch_device=vl.twin.torch_device, name=f"{vl.array}-virtual")
        drivers = {role: getattr(hw.instruments, role).driver
                   for role in ("pulser", "meter", "router")}
        if ports is None:
            ports = {role: _port_of(getattr(hw.instruments, role).resource)
                     for role in drivers}
        lab = cls(twin, hw.wiring.paths(shape), drivers, ports,
                  latency_seconds=vl.latency_seconds,
                  series_resistance_ohms=hw.read.series_resistance_ohms)
        for fault in vl.faults:
            lab.inject(fault.instrument, fault.kind, after=fault.after, times=fault.times,
                       match=fault.match)
        return lab

    # -- serving ---------------------------------------------------------------------

    def start(self) -> VirtualLab:
        for role, instrument in self.instruments.items():
            server = _Server(self, instrument, int(self._ports.get(role, 0)))
            thread = threading.Thread(target=server.serve_forever, name=f"vlab-{role}",
                                      kwargs={"poll_interval": 0.05}, daemon=True)
            thread.start()
            self._servers[role] = server
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        for server in self._servers.values():
            server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join(timeout=2)
        self._servers.clear()
        self._threads.clear()

    def __enter__(self) -> VirtualLab:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def ports(self) -> dict[str, int]:
        return {role: s.server_address[1] for role, s in self._servers.items()}

    @property
    def resources(self) -> dict[str, str]:
        """VISA resource strings by role, for the drivers."""
        return {role: f"TCPIP::{HOST}::{port}::SOCKET" for role, port in self.ports.items()}

    # -- inspection and faults (tests) ------------------------------------------------

    def inject(self, role: str, kind: str, *, after: int = 0, times: int = 1,
               match: str | None = None) -> None:
        if kind not in ("timeout", "drop", "error", "garble"):
            raise ValueError(f"unknown fault kind '{kind}'")
        self.instruments[role].faults.append(Fault(kind, after, times, match))

    def clear_faults(self) -> None:
        for instrument in self.instruments.values():
            instrument.faults.clear()

    def message_counts(self) -> dict[str, int]:
        return {role: len(i.log) for role, i in self.instruments.items()}

    def outputs_on(self) -> dict[str, bool]:
        return {"pulser": self.pulser.output_on(), "meter": self.meter.output_on()}

    def closed_crosspoints(self) -> set[str]:
        return set(self.matrix.closed)

    def open_connections(self) -> dict[str, int]:
        """Client connections each instrument holds open now."""
        with self.lock:
            return dict(self._connections)

    def _count_connection(self, role: str, change: int) -> None:
        with self.lock:
            self._connections[role] += change

    def is_safe(self) -> bool:
        """Outputs off and every crosspoint open."""
        return not any(self.outputs_on().values()) and not self.matrix.closed

    # -- physics (called by the servers under ``lock``) -------------------------------

    def _connected(self, read: bool) -> list[int]:
        closed = self.matrix.closed
        k = 1 if read else 0
        return [i for i, paths in enumerate(self.wiring) if paths[k] <= closed]

    def deliver(self, bursts: list[tuple[int, int, PulseShape]]) -> None:
        """Bursts (polarity, count, shape) leave the pulser back to back and reach every
        device the write path connects.

        A run of one pulse shape whose pulse order is the twin's own (push and pull
        alternating while both remain, then the surplus) is applied as one twin plan;
        any other order burst by burst, so the walls see the pulses in the order sent.
        """
        devices = self._connected(read=False)
        if not devices or not bursts:
            return
        runs: list[list[tuple[int, int, PulseShape]]] = []
        for burst in bursts:
            if runs and runs[-1][0][2] == burst[2]:
                runs[-1].append(burst)
            else:
                runs.append([burst])
        for run in runs:
            n_push = sum(n for p, n, _ in run if p == PUSH)
            n_pull = sum(n for p, n, _ in run if p != PUSH)
            order = [p for p, n, _ in run for _ in range(n)]
            if order == [p for p, n in interleaved(n_push, n_pull) for _ in range(n)]:
                self._pulse(devices, n_push, n_pull, run[0][2])
            else:
                for polarity, n, shape in run:
                    self._pulse(devices, n if polarity == PUSH else 0,
                                0 if polarity == PUSH else n, shape)

    def _pulse(self, devices: list[int], n_push: int, n_pull: int, shape: PulseShape) -> None:
        push = torch.zeros(self.twin.size, dtype=torch.long)
        pull = torch.zeros(self.twin.size, dtype=torch.long)
        push[devices] = n_push
        pull[devices] = n_pull
        self.delivered_push += push
        self.delivered_pull += pull
        self.twin.apply(PulsePlan(push.reshape(self.twin.shape), pull.reshape(self.twin.shape),
                                  shape, shape))

    def current_through_read_path(self, bias_volts: float) -> float:
        """Current at ``bias_volts`` through the devices the read path connects (in
        parallel), each in series with the lead resistance; ~0 A with nothing connected."""
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
    parts = resource.split("::")
    if len(parts) == 4 and parts[2].isdigit():
        return int(parts[2])
    raise ValueError(f"resource '{resource}' is not TCPIP::127.0.0.1::PORT::SOCKET")
