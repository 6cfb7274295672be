"""Pulse-source adapters: one channel of a pulse generator fires push and pull bursts."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from dwlab.drivers.adapters import RoleAdapter
from dwlab.drivers.agilent81110a import compound_burst_message

from dwlab.core.errors import InstrumentReplyError
from dwlab.core.types import PUSH


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
