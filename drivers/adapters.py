"""The base of every role adapter: one driver instance, its errors translated into
dwlab's instrument errors, and retries only where repeating is safe (routing, reads),
reconnecting after a dropped link.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pyvisa
from pyvisa.constants import StatusCode

from dwlab.core.errors import (
    InstrumentConnectionError,
    InstrumentError,
    InstrumentReplyError,
    InstrumentTimeoutError,
)

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
