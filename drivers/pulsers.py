"""Pulse-source adapters: one channel of a pulse generator fires push and pull bursts."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from dwlab.drivers.adapters import RoleAdapter, clip
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

    def ch(self, instrument: Any) -> Any:
        """The channel of ``instrument`` (the driver instance of the current session)."""
        raise NotImplementedError

    def _select_pulse_mode(self, instrument: Any, period_seconds: float) -> None:
        """Manually triggered pulses repeating at ``period_seconds`` within a burst."""
        raise NotImplementedError

    def configure(self, amplitude_volts: float, width_seconds: float,
                  period_seconds: float) -> None:
        def setup(instrument: Any) -> None:
            self._select_pulse_mode(instrument, period_seconds)
            ch = self.ch(instrument)
            ch.voltage_low = 0.0
            ch.voltage_high = amplitude_volts
            ch.pulse_width = width_seconds

        self.call("configuring the pulse", setup)

    def _confirm_fired(self, reply: str) -> None:
        if reply != "1":
            raise InstrumentReplyError(f"{self.name}: burst not confirmed "
                                       f"(reply {clip(repr(reply))})")


class Agilent81110APulser(ChannelPulser):
    """Pulse source on an Agilent 81110A channel: polarity normal for push and inverted for
    pull."""

    def ch(self, instrument: Any) -> Any:
        return instrument.ch_1 if self.channel == 1 else instrument.ch_2

    def _select_pulse_mode(self, instrument: Any, period_seconds: float) -> None:
        instrument.arm_source = "manual"
        instrument.pulse_period = period_seconds

    def output_on(self) -> None:
        self.call("switching the output on",
                  lambda inst: setattr(self.ch(inst), "output_enabled", True))

    def output_off(self) -> None:
        self.shutdown_call("switching the output off",
                           lambda inst: setattr(self.ch(inst), "output_enabled", False),
                           lambda inst: self.ch(inst).output_enabled is False)

    def fire(self, bursts: Sequence[tuple[int, int]]) -> None:
        words = [(_polarity_word(p), int(n)) for p, n in bursts]
        self._confirm_fired(self.call("firing a burst", lambda inst: self.ch(inst).fire(words)))


class Keysight81160APulser(ChannelPulser):
    """Pulse source on a Keysight 81160A channel (pymeasure's stock driver)."""

    def ch(self, instrument: Any) -> Any:
        return instrument.channels[self.channel]

    def _select_pulse_mode(self, instrument: Any, period_seconds: float) -> None:
        ch = self.ch(instrument)
        ch.shape = "PULS"
        ch.trigger_mode = "MAN"
        ch.pulse_period = period_seconds

    def output_on(self) -> None:
        self.call("switching the output on", lambda inst: setattr(self.ch(inst), "output", True))

    def output_off(self) -> None:
        self.shutdown_call("switching the output off",
                           lambda inst: setattr(self.ch(inst), "output", False),
                           lambda inst: self.ch(inst).output is False)

    def fire(self, bursts: Sequence[tuple[int, int]]) -> None:
        for _, count in bursts:
            if not 1 <= int(count) <= 2_147_483_647:
                raise ValueError(f"burst count {count} out of range")
        message = compound_burst_message(
            [("NORM" if polarity == PUSH else "INV", int(count)) for polarity, count in bursts],
            polarity_command=f":OUTP{self.channel}:POL {{}}",
            count_command=f":TRIG{self.channel}:COUN {{}}")
        self._confirm_fired(self.call("firing a burst", lambda inst: inst.ask(message).strip()))
