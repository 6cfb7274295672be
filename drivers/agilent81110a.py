"""Agilent 81110A pulse/pattern generator (165/330 MHz), written in pymeasure's declarative
style. pymeasure has no driver for it; this one covers what domain-wall motion needs:
high-amplitude rectangular pulses, polarity, triggered bursts and the output switch.

Command forms follow the 81100-family SCPI reference (``:VOLT1:HIGH``, ``:PULS:WIDT1``,
``:OUTP1:POL``, ``:TRIG:COUN``, ``:ARM:SOUR``, ``*TRG``).
"""

from __future__ import annotations

from collections.abc import Sequence

from pymeasure.instruments import Channel, Instrument, SCPIMixin
from pymeasure.instruments.validators import strict_discrete_set, strict_range

VOLTAGE_HIGH_RANGE = [-9.9, 10.0]
"""High level into 50 ohm with the 81111A output module, volts."""
VOLTAGE_LOW_RANGE = [-10.0, 9.9]
PULSE_WIDTH_RANGE = [1.5e-9, 999.5e-3]
PULSE_PERIOD_RANGE = [3.03e-9, 999.5e-3]
BURST_COUNT_RANGE = [1, 65536]
POLARITIES = {"normal": "NORM", "inverted": "INV"}


def compound_burst_message(bursts: Sequence[tuple[str, int]], polarity_command: str,
                           count_command: str) -> str:
    """One message firing (polarity keyword, count) bursts in order, then ``*OPC?``.

    ``polarity_command`` and ``count_command`` are templates with one ``{}``; a polarity or
    count is only sent when it changes, so alternating single pulses stay short.
    """
    parts = []
    last_polarity = last_count = None
    for polarity, count in bursts:
        if polarity != last_polarity:
            parts.append(polarity_command.format(polarity))
        if count != last_count:
            parts.append(count_command.format(count))
        parts.append("*TRG")
        last_polarity, last_count = polarity, count
    parts.append("*OPC?")
    return ";".join(parts)


class Agilent81110AChannel(Channel):
    """One output channel of the 81110A."""

    voltage_high = Instrument.control(
        ":VOLT{ch}:HIGH?",
        ":VOLT{ch}:HIGH %g",
        """Control the high level of the pulse in volts (float, -9.9 to 10 V into 50 ohm).""",
        validator=strict_range,
        values=VOLTAGE_HIGH_RANGE,
    )

    voltage_low = Instrument.control(
        ":VOLT{ch}:LOW?",
        ":VOLT{ch}:LOW %g",
        """Control the low (baseline) level in volts (float, -10 to 9.9 V into 50 ohm).""",
        validator=strict_range,
        values=VOLTAGE_LOW_RANGE,
    )

    pulse_width = Instrument.control(
        ":PULS:WIDT{ch}?",
        ":PULS:WIDT{ch} %g",
        """Control the pulse width in seconds (float, 1.5 ns to 999.5 ms).""",
        validator=strict_range,
        values=PULSE_WIDTH_RANGE,
    )

    polarity = Instrument.control(
        ":OUTP{ch}:POL?",
        ":OUTP{ch}:POL %s",
        """Control the output polarity (str, 'normal' or 'inverted'). Inverted mirrors the
        pulse about the baseline, which reverses the current through the device.""",
        validator=strict_discrete_set,
        values=POLARITIES,
        map_values=True,
    )

    output_enabled = Instrument.control(
        ":OUTP{ch}?",
        ":OUTP{ch} %d",
        """Control whether the output is switched on (bool).""",
        validator=strict_discrete_set,
        values={True: 1, False: 0},
        map_values=True,
        cast=int,
    )

    def burst_message(self, bursts: Sequence[tuple[str, int]]) -> str:
        """One compound message that fires ``bursts`` in order and asks for completion.

        Each entry is (polarity 'normal' or 'inverted', pulse count); polarity and count
        are only re-sent when they change, so alternating single pulses stay short. The
        reply to the
        trailing ``*OPC?`` arrives once every burst has left the output, so a caller may
        re-route switches safely after reading it.
        """
        for polarity, count in bursts:
            strict_discrete_set(polarity, POLARITIES)
            strict_range(int(count), BURST_COUNT_RANGE)
        return compound_burst_message(
            [(POLARITIES[polarity], int(count)) for polarity, count in bursts],
            polarity_command=f":OUTP{self.id}:POL {{}}", count_command=":TRIG:COUN {}")

    def fire(self, bursts: Sequence[tuple[str, int]]) -> str:
        """Fire ``bursts`` (see :meth:`burst_message`) in one round trip; returns the reply."""
        return self.ask(self.burst_message(bursts)).strip()


class Agilent81110A(SCPIMixin, Instrument):
    """Agilent 81110A pulse generator.

    .. code-block:: python

        gen = Agilent81110A("GPIB0::10::INSTR")
        gen.arm_source = "manual"          # bursts start on *TRG
        gen.pulse_period = 1e-6            # 1 us repetition inside a burst
        gen.ch_1.voltage_low = 0
        gen.ch_1.voltage_high = 2.5        # 2.5 V pulses
        gen.ch_1.pulse_width = 10e-9
        gen.ch_1.output_enabled = True
        gen.ch_1.fire([("normal", 5), ("inverted", 3)])
        gen.ch_1.output_enabled = False
    """

    ch_1 = Instrument.ChannelCreator(Agilent81110AChannel, 1)
    ch_2 = Instrument.ChannelCreator(Agilent81110AChannel, 2)

    def __init__(self, adapter, name="Agilent 81110A pulse generator", **kwargs):
        super().__init__(adapter, name, **kwargs)

    pulse_period = Instrument.control(
        ":PULS:PER?",
        ":PULS:PER %g",
        """Control the pulse period in seconds (float, 3.03 ns to 999.5 ms); it is the
        repetition period of the pulses inside a burst.""",
        validator=strict_range,
        values=PULSE_PERIOD_RANGE,
    )

    burst_count = Instrument.control(
        ":TRIG:COUN?",
        ":TRIG:COUN %d",
        """Control the number of pulses per arming event (int, 1 to 65536).""",
        validator=strict_range,
        values=BURST_COUNT_RANGE,
        cast=int,
    )

    arm_source = Instrument.control(
        ":ARM:SOUR?",
        ":ARM:SOUR %s",
        """Control what starts a burst (str: 'immediate' = continuous, 'external' = the
        EXT INPUT connector, 'manual' = *TRG or the MAN key).""",
        validator=strict_discrete_set,
        values={"immediate": "IMM", "external": "EXT", "manual": "MAN"},
        map_values=True,
    )

    def trigger(self) -> None:
        """Start one burst (manual arming)."""
        self.write("*TRG")

    def shutdown(self) -> None:
        """Switch both outputs off."""
        self.ch_1.output_enabled = False
        self.ch_2.output_enabled = False
        super().shutdown()
