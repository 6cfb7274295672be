"""The SCPI parser the virtual pulser and source-meter share."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from dwlab.sim.virtual_lab.instrument import VirtualInstrument

if TYPE_CHECKING:
    from dwlab.sim.virtual_lab.lab import VirtualLab


@dataclass(frozen=True)
class Dialect:
    """What one instrument model answers to.

    ``headers`` maps each header its driver may send (channel digits included) to the
    name of a state entry; queries return the stored value.
    """

    idn: str
    headers: dict[str, str]


class ScpiInstrument(VirtualInstrument):
    """SCPI: ``;``-separated commands, ``HEADER value`` settings and ``HEADER?`` queries.

    Subclasses declare the ``dialects`` they speak (by driver name) and the state they
    start in.
    """

    dialects: dict[str, Dialect] = {}
    initial_state: dict[str, str] = {}

    def __init__(self, lab: VirtualLab, role: str, driver: str):
        super().__init__(lab, role)
        if driver not in self.dialects:
            raise ValueError(f"the virtual {role} speaks {', '.join(self.dialects)}, "
                             f"not '{driver}'")
        self.driver = driver
        self.idn = self.dialects[driver].idn
        self.headers = self.dialects[driver].headers
        self.state = dict(self.initial_state)

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


def channel_headers(template: dict[str, str]) -> dict[str, str]:
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
