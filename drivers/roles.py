"""The three roles of a hardware array, and adapters that give each driver its role.

``HardwareArray`` talks to a :class:`PulseSource`, a :class:`ConductanceMeter` and a
:class:`Router`; any object with these methods fits (structural typing). The adapters here
wrap the pymeasure drivers, translate transport failures into dwlab's instrument errors,
and retry only what is safe to repeat (routing, reads), reconnecting after a dropped link.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol, runtime_checkable

import pyvisa
from dwlab.drivers.agilent81110a import compound_burst_message
from pyvisa.constants import StatusCode

from dwlab.core.errors import (
    InstrumentConnectionError,
    InstrumentError,
    InstrumentReplyError,
    InstrumentTimeoutError,
)
from dwlab.core.types import PUSH


@runtime_checkable
class Instrument(Protocol):
    """What every role offers: a name, its identity, its error queue, a way to hang up."""

    name: str

    def identify(self) -> str: ...

    def errors(self) -> list[str]: ...

    def close(self) -> None: ...


@runtime_checkable
class SourceInstrument(Instrument, Protocol):
    """An instrument with an output that must be off in the safe state."""

    def output_on(self) -> None: ...

    def output_off(self) -> None: ...


@runtime_checkable
class PulseSource(SourceInstrument, Protocol):
    def configure(self, amplitude_volts: float, width_seconds: float,
                  period_seconds: float) -> None: ...

    def fire(self, bursts: Sequence[tuple[int, int]]) -> None:
        """Fire (polarity PUSH/PULL, count) bursts in order; return once they are out."""


@runtime_checkable
class ConductanceMeter(SourceInstrument, Protocol):
    def configure(self, bias_volts: float, compliance_amps: float, wires: int,
                  nplc: float) -> None: ...

    def measure_current(self) -> float: ...


@runtime_checkable
class Router(Instrument, Protocol):
    def route(self, crosspoints: Sequence[str]) -> None: ...

    def open_all(self) -> None: ...

    def closed(self) -> list[str]: ...


_CONNECTION_CODES = {
    StatusCode.error_connection_lost,
    StatusCode.error_resource_not_found,
    StatusCode.error_io,
    StatusCode.error_closing_failed,
    StatusCode.error_invalid_object,
}


@contextlib.contextmanager
def instrument_errors(name: str, what: str) -> Iterator[None]:
    """Turn transport and parsing failures into dwlab instrument errors naming the
    instrument and the operation."""
    try:
        yield
    except InstrumentError:
        raise
    except pyvisa.errors.VisaIOError as exc:
        if exc.error_code == StatusCode.error_timeout:
            raise InstrumentTimeoutError(f"{name}: no reply in time to {what}") from exc
        if exc.error_code in _CONNECTION_CODES:
            raise InstrumentConnectionError(f"{name}: connection lost during {what}") from exc
        raise InstrumentError(f"{name}: VISA error during {what}: {exc}") from exc
    except pyvisa.errors.InvalidSession as exc:
        raise InstrumentConnectionError(f"{name}: connection closed during {what}") from exc
    except (ConnectionError, BrokenPipeError, EOFError) as exc:
        raise InstrumentConnectionError(f"{name}: connection lost during {what}") from exc
    except OSError as exc:
        raise InstrumentConnectionError(f"{name}: I/O failure during {what}: {exc}") from exc
    except (ValueError, IndexError, TypeError) as exc:
        raise InstrumentReplyError(f"{name}: bad reply during {what}: {exc}") from exc


def visa_socket(connection: Any) -> socket.socket | None:
    """The TCP socket under a pyvisa-py ``...::SOCKET`` session, if there is one."""
    visalib = getattr(connection, "visalib", None)
    session = getattr(visalib, "sessions", {}).get(getattr(connection, "session", None))
    sock = getattr(session, "interface", None)
    return sock if isinstance(sock, socket.socket) else None


def peer_closed(connection: Any) -> bool:
    """Whether the instrument closed a raw-socket link (pyvisa-py reports that as a
    timeout, which would hide the real cause)."""
    sock = visa_socket(connection)
    if sock is None:
        return False
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


class RoleAdapter:
    """Holds one driver instance; reconnects through ``connect`` after a failure."""

    def __init__(self, name: str, connect: Callable[[], Any], retries: int = 1):
        self.name = name
        self._connect = connect
        self.retries = retries
        self.instrument = self._open("connecting")

    def _open(self, what: str) -> Any:
        try:
            with instrument_errors(self.name, what):
                return self._connect()
        except InstrumentConnectionError:
            raise
        except InstrumentError as exc:  # e.g. a VISA library or interface missing
            raise InstrumentConnectionError(f"{self.name}: cannot open: {exc.__cause__}"
                                            ) from exc

    def reconnect(self) -> None:
        """A fresh session: no stale replies in the buffer, a live link."""
        with contextlib.suppress(Exception):
            self.instrument.adapter.close()
        self.instrument = self._open("reconnecting")

    def _attempt(self, what: str, action: Callable[[], Any]) -> Any:
        try:
            with instrument_errors(self.name, what):
                return action()
        except InstrumentTimeoutError as exc:
            connection = getattr(getattr(self.instrument, "adapter", None), "connection", None)
            if peer_closed(connection):
                raise InstrumentConnectionError(
                    f"{self.name}: the instrument closed the connection during {what}"
                ) from exc
            raise

    def call(self, what: str, action: Callable[[], Any], *, idempotent: bool = False) -> Any:
        """Run ``action``; repeat it (up to ``retries`` times, on a fresh connection) only
        if it is ``idempotent``. Pulses are never idempotent: a failed fire is reported,
        not repeated."""
        attempts = 1 + (self.retries if idempotent else 0)
        for attempt in range(attempts):
            try:
                return self._attempt(what, action)
            except InstrumentError:
                if attempt + 1 == attempts:
                    raise
                self.reconnect()
        raise AssertionError("unreachable")

    def shutdown_call(self, what: str, action: Callable[[], Any],
                      confirm: Callable[[], bool]) -> None:
        """For safe-state commands: send, then ask the instrument whether it took effect.
        On any failure, reconnect and try once more."""

        def act_and_confirm() -> None:
            action()
            if not confirm():
                raise InstrumentReplyError(f"{self.name}: {what} not confirmed")

        try:
            self._attempt(what, act_and_confirm)
        except InstrumentError:
            self.reconnect()
            self._attempt(what, act_and_confirm)

    def identify(self) -> str:
        return str(self.call("identify", lambda: self.instrument.id, idempotent=True)).strip()

    def errors(self) -> list[str]:
        """Pop every entry of the instrument's error queue."""
        entries = self.call("reading the error queue", self.instrument.check_errors)
        return [", ".join(str(v) for v in e) if isinstance(e, (list, tuple)) else str(e)
                for e in entries]

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.instrument.adapter.close()


def _polarity_word(polarity: int) -> str:
    return "normal" if polarity == PUSH else "inverted"


class ChannelPulser(RoleAdapter):
    """Pulse source on one channel of a pulse generator: baseline 0 V, high level =
    amplitude; a subclass selects the pulse mode and fires the bursts."""

    def __init__(self, name: str, connect: Callable[[], Any], channel: int = 1,
                 retries: int = 1):
        super().__init__(name, connect, retries)
        self.channel = channel

    @property
    def ch(self):
        raise NotImplementedError

    def _select_pulse_mode(self, period_seconds: float) -> None:
        """Manually triggered pulses repeating at ``period_seconds`` within a burst."""
        raise NotImplementedError

    def configure(self, amplitude_volts: float, width_seconds: float,
                  period_seconds: float) -> None:
        def setup() -> None:
            self._select_pulse_mode(period_seconds)
            self.ch.voltage_low = 0.0
            self.ch.voltage_high = amplitude_volts
            self.ch.pulse_width = width_seconds

        self.call("configuring the pulse", setup)

    def _confirm_fired(self, reply: str) -> None:
        if reply != "1":
            raise InstrumentReplyError(f"{self.name}: burst not confirmed (reply {reply!r})")


class Agilent81110APulser(ChannelPulser):
    """Pulse source on an Agilent 81110A channel: polarity normal for push and inverted for
    pull."""

    @property
    def ch(self):
        return self.instrument.ch_1 if self.channel == 1 else self.instrument.ch_2

    def _select_pulse_mode(self, period_seconds: float) -> None:
        self.instrument.arm_source = "manual"
        self.instrument.pulse_period = period_seconds

    def output_on(self) -> None:
        self.call("switching the output on", lambda: setattr(self.ch, "output_enabled", True))

    def output_off(self) -> None:
        self.shutdown_call("switching the output off",
                           lambda: setattr(self.ch, "output_enabled", False),
                           lambda: self.ch.output_enabled is False)

    def fire(self, bursts: Sequence[tuple[int, int]]) -> None:
        words = [(_polarity_word(p), int(n)) for p, n in bursts]
        self._confirm_fired(self.call("firing a burst", lambda: self.ch.fire(words)))


class Keysight81160APulser(ChannelPulser):
    """Pulse source on a Keysight 81160A channel (pymeasure's stock driver)."""

    @property
    def ch(self):
        return self.instrument.channels[self.channel]

    def _select_pulse_mode(self, period_seconds: float) -> None:
        self.ch.shape = "PULS"
        self.ch.trigger_mode = "MAN"
        self.ch.pulse_period = period_seconds

    def output_on(self) -> None:
        self.call("switching the output on", lambda: setattr(self.ch, "output", True))

    def output_off(self) -> None:
        self.shutdown_call("switching the output off", lambda: setattr(self.ch, "output", False),
                           lambda: self.ch.output is False)

    def fire(self, bursts: Sequence[tuple[int, int]]) -> None:
        for _, count in bursts:
            if not 1 <= int(count) <= 2_147_483_647:
                raise ValueError(f"burst count {count} out of range")
        message = compound_burst_message(
            [("NORM" if polarity == PUSH else "INV", int(count)) for polarity, count in bursts],
            polarity_command=f":OUTP{self.channel}:POL {{}}",
            count_command=f":TRIG{self.channel}:COUN {{}}")
        self._confirm_fired(self.call("firing a burst",
                                      lambda: self.instrument.ask(message).strip()))


class VoltageBiasMeter(RoleAdapter):
    """Conductance meter on a source-measure unit: voltage bias, current measured; a
    subclass selects 2- or 4-wire sensing."""

    def _select_sensing(self, wires: int) -> None:
        raise NotImplementedError

    def configure(self, bias_volts: float, compliance_amps: float, wires: int,
                  nplc: float) -> None:
        def setup() -> None:
            smu = self.instrument
            smu.source_mode = "voltage"
            smu.compliance_current = compliance_amps  # before the output is ever on
            smu.source_voltage = bias_volts
            self._select_sensing(wires)
            smu.current_nplc = nplc

        self.call("configuring the read-out", setup)

    def measure_current(self) -> float:
        return float(self.call("measuring", lambda: float(self.instrument.current),
                               idempotent=True))


class Keithley2450Meter(VoltageBiasMeter):
    """Conductance meter on a Keithley 2450."""

    def _select_sensing(self, wires: int) -> None:
        self.instrument.write(':SENS:FUNC "CURR"')
        self.instrument.write(f":SENS:CURR:RSEN {'ON' if wires == 4 else 'OFF'}")

    def output_on(self) -> None:
        self.call("switching the output on", self.instrument.enable_source)

    def output_off(self) -> None:
        self.shutdown_call("switching the output off", self.instrument.disable_source,
                           lambda: self.instrument.ask("OUTPUT?").strip() in ("0", "OFF"))


class Keithley2400Meter(VoltageBiasMeter):
    """Conductance meter on a Keithley 2400 (pymeasure's stock driver)."""

    def _select_sensing(self, wires: int) -> None:
        self.instrument.wires = wires

    def output_on(self) -> None:
        self.call("switching the output on", lambda: setattr(self.instrument,
                                                              "source_enabled", True))

    def output_off(self) -> None:
        self.shutdown_call("switching the output off",
                           lambda: setattr(self.instrument, "source_enabled", False),
                           lambda: self.instrument.source_enabled is False)


class Keithley707BRouter(RoleAdapter):
    """Router on a Keithley 707B switching matrix."""

    def route(self, crosspoints: Sequence[str]) -> None:
        self.call("routing", lambda: self.instrument.route(list(crosspoints)), idempotent=True)

    def open_all(self) -> None:
        self.shutdown_call("opening every crosspoint", self.instrument.open_all,
                           lambda: self.instrument.closed_channels == [])

    def closed(self) -> list[str]:
        return list(self.call("listing closed crosspoints",
                              lambda: self.instrument.closed_channels, idempotent=True))
