"""Serving one virtual instrument over TCP on loopback, newline-terminated messages of at
most ``LINE_BYTES`` (a longer one is discarded, as an instrument's input buffer overruns)."""

from __future__ import annotations

import contextlib
import socket
import socketserver
import threading
import time
from typing import TYPE_CHECKING

from dwlab.sim.virtual_lab.instrument import VirtualInstrument

if TYPE_CHECKING:
    from dwlab.sim.virtual_lab.lab import VirtualLab

HOST = "127.0.0.1"
"""Loopback only: the virtual lab is never reachable from another machine."""
LINE_BYTES = 16384
"""The longest message read (the instrument's input buffer)."""


def resource_name(port: int) -> str:
    """The VISA resource string a driver opens to reach ``port``."""
    return f"TCPIP::{HOST}::{port}::SOCKET"


class _Handler(socketserver.StreamRequestHandler):
    """One client connection: each line is a message, each reply a line."""

    server: InstrumentServer

    def setup(self) -> None:
        super().setup()
        self.server.clients.add(self.connection)
        self._count_connection(+1)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.clients.discard(self.connection)
            self._count_connection(-1)

    def _count_connection(self, change: int) -> None:
        self.server.lab.count_connection(self.server.instrument.role, change)

    def handle(self) -> None:
        lab = self.server.lab
        instrument = self.server.instrument
        while True:
            try:
                raw = self.rfile.readline(LINE_BYTES + 1)
                if len(raw) > LINE_BYTES and not raw.endswith(b"\n"):
                    self._discard_line()
                    instrument.overrun()
                    continue
            except OSError:
                return
            if not raw:
                return
            message = raw.decode("ascii", "replace").rstrip("\r\n")
            if not message.strip():
                continue
            if lab.latency_seconds:
                time.sleep(lab.latency_seconds)
            action, reply = instrument.respond(message)
            if action == "drop":
                return  # closing the socket is the fault
            if action == "kill":
                self.server.kill()
                return
            if reply is not None:
                try:
                    self.wfile.write((reply + "\n").encode("ascii", "replace"))
                    self.wfile.flush()
                except OSError:
                    return

    def _discard_line(self) -> None:
        """Read up to the end of an over-long line, a buffer at a time."""
        chunk = b"-"
        while chunk and not chunk.endswith(b"\n"):
            chunk = self.rfile.readline(LINE_BYTES)


class InstrumentServer(socketserver.ThreadingTCPServer):
    """``instrument`` served on ``HOST:port`` (0: any free port), a thread per client."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, lab: VirtualLab, instrument: VirtualInstrument, port: int):
        self.lab = lab
        self.instrument = instrument
        self.clients: set[socket.socket] = set()
        self.killed = False
        super().__init__((HOST, port), _Handler)
        self.thread = threading.Thread(target=self.serve_forever,
                                       name=f"vlab-{instrument.role}",
                                       kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def port(self) -> int:
        return self.server_address[1]

    def start(self) -> InstrumentServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        self.thread.join(timeout=2)

    def kill(self) -> None:
        """Die as a crashed instrument server does: stop listening (a reconnect is refused)
        and hang up every client (called from a client's thread, never the serving one)."""
        self.killed = True
        self.shutdown()
        self.server_close()
        for client in list(self.clients):
            with contextlib.suppress(OSError):
                client.shutdown(socket.SHUT_RDWR)
