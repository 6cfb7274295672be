"""The base of every role adapter: one driver instance, its errors translated into
dwlab's instrument errors, and retries only where repeating is safe (routing, reads),
each on a fresh session.

Every action is a function of the driver instance (``action(instrument)``), called with the
instance of the current session: after a reconnect no action can reach the closed one.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

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

TEXT_LIMIT = 200
"""Characters of an instrument's reply or error string kept in a dwlab message."""

T = TypeVar("T")
Action = Callable[[Any], T]
"""Something done with the driver instance of the current session."""


def clip(text: str, limit: int = TEXT_LIMIT) -> str:
    """``text`` cut to ``limit`` characters, saying how long it was: what an instrument
    sends ends up in messages and event logs, and must not flood them."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text)} characters)"


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
        raise InstrumentError(f"{name}: VISA error during {what}: {clip(str(exc))}") from exc
    except pyvisa.errors.InvalidSession as exc:
        raise InstrumentConnectionError(f"{name}: connection closed during {what}") from exc
    except (ConnectionError, BrokenPipeError, EOFError) as exc:
        raise InstrumentConnectionError(f"{name}: connection lost during {what}") from exc
    except OSError as exc:
        raise InstrumentConnectionError(f"{name}: I/O failure during {what}: {clip(str(exc))}"
                                        ) from exc
    except (ValueError, LookupError, TypeError) as exc:  # a reply that does not parse
        raise InstrumentReplyError(f"{name}: bad reply during {what}: {clip(str(exc))}"
                                   ) from exc


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
    """Holds one driver instance. A session that failed (timeout, dropped link, garbled
    reply) is never used again: the next action opens a fresh one through ``connect``."""

    def __init__(self, name: str, connect: Callable[[], Any], retries: int = 1):
        self.name = name
        self._connect = connect
        self.retries = retries
        self.instrument = self._open("connecting")
        self._failed = False  # the session failed: reconnect before the next action

    def _open(self, what: str) -> Any:
        try:
            with instrument_errors(self.name, what):
                return self._connect()
        except InstrumentConnectionError:
            raise
        except InstrumentError as exc:  # e.g. a VISA library or interface missing
            raise InstrumentConnectionError(
                f"{self.name}: cannot open: {clip(str(exc.__cause__))}") from exc

    def reconnect(self) -> None:
        """A fresh session: no stale replies in the buffer, a live link."""
        with contextlib.suppress(Exception):
            self.instrument.adapter.close()
        self._failed = True  # until the new session is open
        self.instrument = self._open("reconnecting")
        self._failed = False

    def _attempt(self, what: str, action: Action[T]) -> T:
        """``action`` on the current session (a fresh one if the last failed)."""
        if self._failed:
            self.reconnect()
        try:
            with instrument_errors(self.name, what):
                return action(self.instrument)
        except InstrumentTimeoutError as exc:
            self._failed = True
            connection = getattr(getattr(self.instrument, "adapter", None), "connection", None)
            if peer_closed(connection):
                raise InstrumentConnectionError(
                    f"{self.name}: the instrument closed the connection during {what}"
                ) from exc
            raise
        except InstrumentError:
            self._failed = True
            raise

    def call(self, what: str, action: Action[T], *, idempotent: bool = False) -> T:
        """Run ``action``; repeat it (up to ``retries`` times, each on a fresh session) only
        if it is ``idempotent``. Pulses are never idempotent: a failed fire is reported,
        not repeated."""
        for _ in range(self.retries if idempotent else 0):
            with contextlib.suppress(InstrumentError):
                return self._attempt(what, action)
        return self._attempt(what, action)

    def shutdown_call(self, what: str, action: Action[Any], confirm: Action[bool]) -> None:
        """For safe-state commands: send, then ask the instrument whether it took effect.
        On any failure, try once more on a fresh session."""

        def act_and_confirm(instrument: Any) -> None:
            action(instrument)
            if not confirm(instrument):
                raise InstrumentReplyError(f"{self.name}: {what} not confirmed")

        try:
            self._attempt(what, act_and_confirm)
        except InstrumentError:
            self._attempt(what, act_and_confirm)

    def identify(self) -> str:
        return clip(str(self.call("identify", lambda inst: inst.id, idempotent=True)).strip())

    def errors(self) -> list[str]:
        """Pop every entry of the instrument's error queue (each cut to ``TEXT_LIMIT``)."""
        entries = self.call("reading the error queue", lambda inst: inst.check_errors())
        return [clip(", ".join(str(v) for v in e) if isinstance(e, (list, tuple)) else str(e))
                for e in entries]

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.instrument.adapter.close()
