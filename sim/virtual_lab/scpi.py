"""The one SCPI parser every served instrument shares (SCPI-99 and IEEE 488.2 conventions).

A model declares its commands in a table (:mod:`~dwlab.sim.virtual_lab.command_sets`): each
:class:`Command` is written in the manuals' notation, ``[:SOURce]:VOLTage#:HIGH``, where
upper case is the short form, the whole word the long form, ``[...]`` an optional node and
``#`` a numeric suffix (the channel; none means 1). Headers match case-insensitively in
short or long form. A program message is split at ``;``; a header that starts neither
with ``:`` nor ``*`` continues the path of the previous one (SCPI-99 6.2.4).

Every setting has its query; the IEEE 488.2 common commands (``*RST``, ``*CLS``, ``*ESR?``,
``*ESE``, ``*OPC``, ``*OPC?``, ``*WAI``, ``*TRG``, ``*IDN?``, ``*STB?``, ``*SRE``, ``*TST?``)
behave as the standard says; errors go into the queue with the standard codes and set the
matching event-status bit.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from dwlab.sim.virtual_lab.instrument import VirtualInstrument

if TYPE_CHECKING:
    from dwlab.sim.virtual_lab.lab import VirtualLab

# SCPI-99 chapter 21 error codes the virtual instruments raise.
COMMAND_ERROR = (-100, "Command error")
SYNTAX_ERROR = (-102, "Syntax error")
DATA_TYPE_ERROR = (-104, "Data type error")
PARAMETER_NOT_ALLOWED = (-108, "Parameter not allowed")
MISSING_PARAMETER = (-109, "Missing parameter")
UNDEFINED_HEADER = (-113, "Undefined header")
SETTINGS_CONFLICT = (-221, "Settings conflict")
OUT_OF_RANGE = (-222, "Data out of range")
ILLEGAL_VALUE = (-224, "Illegal parameter value")

# IEEE 488.2 standard event status register bits.
ESR_OPC, ESR_QUERY, ESR_DEVICE, ESR_EXECUTION, ESR_COMMAND = 1, 4, 8, 16, 32

Kind = Literal["setting", "query", "event"]


@dataclass(frozen=True)
class Command:
    """One header of a model.

    ``kind``: a ``setting`` is stored under ``key`` and answers its query; a ``query`` only
    answers (``action`` computes the reply); an ``event`` is only sent (``action`` does it).
    ``key`` may hold ``{ch}``, the header's numeric suffix. ``choices`` (in the manual's
    notation) are the only values a setting takes, stored in short form; ``number``
    settings take a number (or MIN, MAX, DEF), kept within ``bounds``; ``boolean`` ones
    ON, OFF or a number, stored as 1 or 0.
    """

    header: str
    key: str | None = None
    default: str = "0"
    kind: Kind = "setting"
    choices: tuple[str, ...] = ()
    number: bool = False
    boolean: bool = False
    bounds: tuple[float, float] | None = None
    action: str | None = None


_NODE = re.compile(r"(\[)?:?([A-Za-z*][A-Za-z0-9*]*?)(#)?(\])?$")


def _mnemonic(word: str) -> tuple[str, str]:
    """(short form, long form) of a mnemonic written as ``VOLTage``."""
    short = "".join(c for c in word if not c.islower())
    return short.upper(), word.upper()


def _node_pattern(word: str, index: int, suffix: bool) -> str:
    short, long = _mnemonic(word)
    forms = sorted({short, long}, key=len, reverse=True)
    digits = rf"(?P<s{index}>\d+)?" if suffix else ""
    return f":(?:{'|'.join(re.escape(f) for f in forms)}){digits}"


def compile_header(header: str) -> re.Pattern[str]:
    """A pattern matching every spelling of ``header`` (with a leading ``:``)."""
    parts = re.findall(r"\[?:?[^:\[\]]+\]?", header)
    pattern = ""
    for index, part in enumerate(parts):
        m = _NODE.match(part)
        if m is None:
            raise ValueError(f"bad header notation {header!r}")
        node = _node_pattern(m.group(2), index, bool(m.group(3)))
        pattern += f"(?:{node})?" if m.group(1) else node
    return re.compile(f"^{pattern}$", re.IGNORECASE)


def choice_forms(choices: tuple[str, ...]) -> dict[str, str]:
    """Each accepted spelling of ``choices`` (upper case) -> its short form."""
    forms = {}
    for choice in choices:
        short, long = _mnemonic(choice)
        forms[short] = forms[long] = short
    return forms


@dataclass(frozen=True)
class CommandSet:
    """What one instrument model answers to: its identity and its commands."""

    maker: str
    model: str
    commands: tuple[Command, ...]

    def compiled(self) -> list[tuple[re.Pattern[str], Command]]:
        return [(compile_header(c.header), c) for c in self.commands]

    def defaults(self, channels: tuple[str, ...] = ("1", "2")) -> dict[str, str]:
        state = {}
        for c in self.commands:
            if c.kind == "setting" and c.key is not None:
                for ch in channels if "{ch}" in c.key else ("1",):
                    state[c.key.format(ch=ch)] = c.default
        return state


_COMMON = re.compile(r"^\*[A-Z]{3}\??$")
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def _split_message(message: str) -> list[str]:
    """Program message units, split at ``;`` outside quotes."""
    units, current, quote = [], "", ""
    for c in message:
        if quote:
            quote = "" if c == quote else quote
        elif c in "\"'":
            quote = c
        elif c == ";":
            units.append(current)
            current = ""
            continue
        current += c
    units.append(current)
    return [u.strip() for u in units if u.strip()]


def format_number(value: float) -> str:
    return f"{value:+.6E}" if value != int(value) or abs(value) >= 1e9 else f"{int(value)}"


class ScpiInstrument(VirtualInstrument):
    """An instrument model speaking SCPI from its :class:`CommandSet`.

    Subclasses set ``command_sets`` (driver name -> command set) and implement the
    ``action`` methods their tables name (``action(ch, value)``; a query's returns its
    reply). ``serial`` goes into ``*IDN?``.
    """

    command_sets: dict[str, CommandSet] = {}

    def __init__(self, lab: VirtualLab, role: str, driver: str, serial: str = "VIRTUAL"):
        super().__init__(lab, role)
        if driver not in self.command_sets:
            raise ValueError(f"the virtual {role} speaks {', '.join(self.command_sets)}, "
                             f"not '{driver}'")
        self.driver = driver
        commands = self.command_sets[driver]
        self.idn = f"{commands.maker},{commands.model},{serial},dwlab-virtual"
        self.table = commands.compiled()
        self.state = commands.defaults()
        self.esr = 0  # standard event status register
        self.ese = 0
        self.sre = 0
        self.busy_until = 0.0  # pending operations (a burst) end then

    # -- errors ----------------------------------------------------------------------

    def push_error(self, code: int, text: str) -> None:
        super().push_error(code, text)
        bit = {1: ESR_COMMAND, 2: ESR_EXECUTION, 3: ESR_DEVICE, 4: ESR_QUERY}.get(
            -code // 100 if code < 0 else 3, ESR_DEVICE)
        self.esr |= bit

    def error(self, error: tuple[int, str], detail: str) -> None:
        self.push_error(error[0], f"{error[1]}; {detail}")

    # -- messages --------------------------------------------------------------------

    def execute(self, message: str) -> str | None:
        """Execute ``message`` unit by unit; ``*WAI`` and ``*OPC?`` wait (with the lab
        unlocked, as other instruments go on working) until pending operations end."""
        replies: list[str] = []
        path = ""
        for unit in _split_message(message):
            head = unit.split(None, 1)[0].upper().lstrip(":")
            if head in ("*WAI", "*OPC?"):
                self.wait_pending()
            with self.lab.lock:
                reply, path = self.unit(unit, path)
            if reply is not None:
                replies.append(reply)
        return ";".join(replies) if replies else None

    def wait_pending(self) -> None:
        delay = self.busy_until - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        with self.lab.lock:
            self.lab.settle()

    def unit(self, unit: str, path: str) -> tuple[str | None, str]:
        """Execute one message unit; (reply, the path the next relative header continues)."""
        header, value = (unit.split(None, 1) + [""])[:2]  # whitespace ends the header
        value = value.strip()
        if header.startswith("*") or header.startswith(":*"):
            return self.common(header.lstrip(":").upper(), value, unit), ""
        absolute = header if header.startswith(":") else f"{path}:{header}"
        nodes = absolute.split(":")
        next_path = ":".join(nodes[:-1])
        query = absolute.endswith("?")
        spelled = absolute[:-1] if query else absolute
        for pattern, command in self.table:
            m = pattern.match(spelled)
            if m is not None:
                ch = next((g for g in m.groups() if g), "1")
                return self.run(command, ch, query, value, unit), next_path
        self.error(UNDEFINED_HEADER, unit)
        return None, next_path

    def run(self, command: Command, ch: str, query: bool, value: str, unit: str
            ) -> str | None:
        if (query and command.kind == "event") or (not query and command.kind == "query"):
            self.error(UNDEFINED_HEADER, unit)
            return None
        if query and value:
            self.error(PARAMETER_NOT_ALLOWED, unit)
            return None
        key = command.key.format(ch=ch) if command.key else None
        if command.kind == "setting" and query:
            if command.action is not None:
                return getattr(self, command.action)(ch, None)
            assert key is not None
            return self.state.get(key, command.default)
        if command.kind == "setting":
            stored = self.parameter(command, value, unit)
            if stored is None:
                return None
            if key is not None:
                self.state[key] = stored
            if command.action is not None:
                getattr(self, command.action)(ch, stored)
            return None
        if command.kind == "event" and value and command.action is None:
            self.error(PARAMETER_NOT_ALLOWED, unit)
            return None
        return getattr(self, command.action)(ch, value) if command.action else None

    def parameter(self, command: Command, value: str, unit: str) -> str | None:
        """The value a setting stores, or None (and an error queued) when it is refused."""
        if not value:
            self.error(MISSING_PARAMETER, unit)
            return None
        text = value.strip().strip("\"'").strip()
        word = text.upper()
        if command.choices:
            forms = choice_forms(command.choices)
            if word not in forms:
                self.error(ILLEGAL_VALUE, unit)
                return None
            return forms[word]
        if command.boolean:
            if word in ("ON", "OFF"):
                return "1" if word == "ON" else "0"
            if not _NUMBER.match(text):
                self.error(ILLEGAL_VALUE, unit)
                return None
            return "1" if round(float(text)) else "0"
        if command.number:
            if word in ("MIN", "MINIMUM", "MAX", "MAXIMUM") and command.bounds:
                return format_number(command.bounds[0 if word.startswith("MIN") else 1])
            if word in ("DEF", "DEFAULT"):
                return command.default
            if not _NUMBER.match(text):
                self.error(DATA_TYPE_ERROR, unit)
                return None
            number = float(text)
            if command.bounds and not command.bounds[0] <= number <= command.bounds[1]:
                self.error(OUT_OF_RANGE, unit)
                return None
            return format_number(number)
        return text

    # -- IEEE 488.2 common commands ----------------------------------------------------

    def common(self, head: str, value: str, unit: str) -> str | None:
        if not _COMMON.match(head):
            self.error(UNDEFINED_HEADER, unit)
            return None
        if head == "*IDN?":
            return self.idn
        if head == "*RST":
            self.reset()
        elif head == "*CLS":
            self.error_queue.clear()
            self.esr = 0
        elif head == "*ESR?":
            esr, self.esr = self.esr, 0
            return str(esr)
        elif head in ("*ESE", "*SRE"):
            if not value.isdigit() or int(value) > 255:
                self.error(ILLEGAL_VALUE if value else MISSING_PARAMETER, unit)
            else:
                setattr(self, head[1:].lower(), int(value))
        elif head == "*ESE?":
            return str(self.ese)
        elif head == "*SRE?":
            return str(self.sre)
        elif head == "*STB?":
            return str(self.status_byte())
        elif head == "*OPC":
            self.esr |= ESR_OPC  # pending work was waited for in ``execute`` only for *OPC?
        elif head == "*OPC?":
            return "1"
        elif head == "*WAI":
            pass
        elif head == "*TST?":
            return "0"
        elif head == "*TRG":
            self.trigger()
        else:
            self.error(UNDEFINED_HEADER, unit)
        return None

    def status_byte(self) -> int:
        """Bit 2: error queue not empty; bit 5: an enabled event; bit 6: a request."""
        stb = (4 if self.error_queue else 0) | (32 if self.esr & self.ese else 0)
        return stb | (64 if stb & self.sre else 0)

    def reset(self) -> None:
        """``*RST``: every setting back to its default (outputs off); the error queue and
        the status registers stay (IEEE 488.2 10.32)."""
        self.state = self.command_sets[self.driver].defaults()

    def trigger(self) -> None:
        """``*TRG``: nothing to trigger unless the model says otherwise."""

    # -- the SYSTem subset every model shares ------------------------------------------

    def next_error(self, ch: str, value: str) -> str:
        code, text = self.error_queue.popleft() if self.error_queue else (0, "No error")
        return f'{code},"{text}"'

    def error_count(self, ch: str, value: str) -> str:
        return str(len(self.error_queue))

    def scpi_version(self, ch: str, value: str) -> str:
        return "1999.0"

    def accept(self, ch: str, value: str) -> None:
        """A command taken with its parameters and nothing to model (a beep)."""

    # -- helpers for the models -------------------------------------------------------

    def number(self, key: str, default: float = 0.0) -> float:
        try:
            return float(self.state.get(key, default))
        except ValueError:
            return default

    def flag(self, key: str) -> bool:
        return self.state.get(key, "0").upper() in ("1", "ON")
