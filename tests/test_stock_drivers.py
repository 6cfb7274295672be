"""pymeasure's stock drivers (and dwlab's own) against the virtual lab, through pyvisa-py.

Every public operation of each served model is tried; the tally per model (tried, failed,
the real instrument's error where the model lacks the command) is printed. An operation
fails when it raises or leaves an entry in the error queue other than the one expected.
Then every header of each model's command table (the one the server answers from) is
queried in its short and its long form, and ``*RST`` and ``shutdown()`` leave every output
off.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from dwlab.drivers.agilent81110a import Agilent81110A
from dwlab.drivers.keithley707b import Keithley707B
from dwlab.drivers.registry import connect_driver
from dwlab.sim.virtual_lab.command_sets import PULSERS, SOURCE_METERS
from dwlab.sim.virtual_lab.scpi import compile_header
from pymeasure.instruments.keithley import Keithley2400, Keithley2450
from pymeasure.instruments.keysight import Keysight81160A
from test_virtual_lab_support import lab_config

from dwlab.config import load_config

Op = tuple[str, Callable[[Any], Any], int | None]
"""(operation, what it does with the driver, the error code the real instrument queues
for it, or None)."""


def _smu_ops(model: type) -> list[Op]:
    ops: list[Op] = [
        ("id", lambda s: s.id, None),
        ("reset", lambda s: s.reset(), None),
        ("source_mode = voltage", lambda s: setattr(s, "source_mode", "voltage"), None),
        ("source_mode", lambda s: s.source_mode == "voltage" or 1 / 0, None),
        ("compliance_current", lambda s: setattr(s, "compliance_current", 1e-4), None),
        ("compliance_current?", lambda s: abs(s.compliance_current - 1e-4) < 1e-12 or 1 / 0,
         None),
        ("source_voltage", lambda s: setattr(s, "source_voltage", 0.01), None),
        ("source_voltage?", lambda s: abs(s.source_voltage - 0.01) < 1e-12 or 1 / 0, None),
        ("source_voltage_range", lambda s: setattr(s, "source_voltage_range", 2), None),
        ("apply_voltage", lambda s: s.apply_voltage(compliance_current=1e-4), None),
        ("enable_source", lambda s: s.enable_source(), None),
        ("source_enabled", lambda s: s.source_enabled or 1 / 0, None),
        ("measure_current", lambda s: s.measure_current(), None),
        ("current", lambda s: 0 < s.current < 1e-4 or 1 / 0, None),
        ("current_range", lambda s: setattr(s, "current_range", 1e-4), None),
        ("current_nplc", lambda s: setattr(s, "current_nplc", 0.1), None),
        ("measure_voltage", lambda s: s.measure_voltage(), None),
        ("voltage", lambda s: abs(s.voltage - 0.01) < 1e-9 or 1 / 0, None),
        ("measure_resistance", lambda s: s.measure_resistance(), None),
        ("resistance", lambda s: 1e3 < s.resistance < 1e5 or 1 / 0, None),
        ("wires = 4", lambda s: setattr(s, "wires", 4), None),
        ("wires", lambda s: s.wires == 4 or 1 / 0, None),
        ("apply_current", lambda s: s.apply_current(compliance_voltage=1), None),
        ("source_current", lambda s: setattr(s, "source_current", 1e-6), None),
        ("compliance_voltage", lambda s: setattr(s, "compliance_voltage", 1), None),
        ("ramp_to_current", lambda s: s.ramp_to_current(0, steps=3, pause=0), None),
        ("apply_voltage again", lambda s: s.apply_voltage(), None),
        ("ramp_to_voltage", lambda s: s.ramp_to_voltage(0.02, steps=3, pause=0), None),
        ("beep", lambda s: s.beep(1000, 0.01), None),
        ("use_rear_terminals", lambda s: s.use_rear_terminals(), None),
        ("use_front_terminals", lambda s: s.use_front_terminals(), None),
        ("buffer_points", lambda s: setattr(s, "buffer_points", 3), None),
        ("trigger", lambda s: s.trigger(), None),
        ("disable_source", lambda s: s.disable_source(), None),
    ]
    if model is Keithley2450:
        ops += [
            ("current_filter_state", lambda s: setattr(s, "current_filter_state", "ON"), None),
            ("current_filter_type", lambda s: setattr(s, "current_filter_type", "MOV"), None),
            ("current_filter_count", lambda s: setattr(s, "current_filter_count", 5), None),
            ("voltage_output_off_state",
             lambda s: setattr(s, "voltage_output_off_state", "HIMP"), None),
            ("source_voltage_delay_auto",
             lambda s: setattr(s, "source_voltage_delay_auto", True), None),
            # the 2450 has no 2400-style :TRAC:FEED: it answers "Undefined header"
            ("config_buffer", lambda s: s.config_buffer(3), -113),
            ("start_buffer + means", lambda s: (s.enable_source(), s.start_buffer(),
                                                 s.mean_current), None),
            ("buffer_data", lambda s: len(s.buffer_data) == 9 or 1 / 0, None),
            ("std_current", lambda s: s.std_current, None),
        ]
    else:
        ops += [
            ("filter_enabled", lambda s: setattr(s, "filter_enabled", True), None),
            ("filter_count", lambda s: setattr(s, "filter_count", 5), None),
            ("auto_zero", lambda s: setattr(s, "auto_zero", "ONCE"), None),
            ("output_off_state", lambda s: setattr(s, "output_off_state", "zero"), None),
            ("auto_output_off_enabled",
             lambda s: setattr(s, "auto_output_off_enabled", False), None),
            ("trigger_count", lambda s: setattr(s, "trigger_count", 3), None),
            ("set_trigger_counts", lambda s: s.set_trigger_counts(1, 3), None),
            ("trigger_delay", lambda s: setattr(s, "trigger_delay", 0), None),
            ("arm_source", lambda s: setattr(s, "arm_source", "immediate"), None),
            ("output_trigger_on_external", lambda s: s.output_trigger_on_external(), None),
            ("display_enabled", lambda s: setattr(s, "display_enabled", True), None),
            ("line_frequency", lambda s: setattr(s, "line_frequency", 50), None),
            ("config_buffer", lambda s: s.config_buffer(3), None),
            ("start_buffer + means", lambda s: (s.enable_source(), s.start_buffer(),
                                                 s.mean_current), None),
            ("buffer_data", lambda s: len(s.buffer_data) == 9 or 1 / 0, None),
            ("measure_all-style read", lambda s: len(s.values(":READ?")) == 5 or 1 / 0, None),
        ]
    return [*ops, ("shutdown", lambda s: s.shutdown(), None)]


def _pulser_ops(model: type) -> list[Op]:
    if model is Agilent81110A:
        return [
            ("id", lambda g: g.id, None),
            ("reset", lambda g: g.reset(), None),
            ("arm_source", lambda g: setattr(g, "arm_source", "manual"), None),
            ("arm_source?", lambda g: g.arm_source == "manual" or 1 / 0, None),
            ("pulse_period", lambda g: setattr(g, "pulse_period", 1e-6), None),
            ("burst_count", lambda g: setattr(g, "burst_count", 3), None),
            ("burst_count?", lambda g: g.burst_count == 3 or 1 / 0, None),
            ("voltage_low", lambda g: setattr(g.ch_1, "voltage_low", 0), None),
            ("voltage_high", lambda g: setattr(g.ch_1, "voltage_high", 1.0), None),
            ("voltage_high?", lambda g: g.ch_1.voltage_high == 1.0 or 1 / 0, None),
            ("pulse_width", lambda g: setattr(g.ch_1, "pulse_width", 1e-8), None),
            ("polarity", lambda g: setattr(g.ch_1, "polarity", "inverted"), None),
            ("polarity?", lambda g: g.ch_1.polarity == "inverted" or 1 / 0, None),
            ("output_enabled", lambda g: setattr(g.ch_1, "output_enabled", True), None),
            ("fire", lambda g: g.ch_1.fire([("normal", 2), ("inverted", 1)]) == "1" or 1 / 0,
             None),
            ("trigger", lambda g: g.trigger(), None),
            ("ch_2 output", lambda g: setattr(g.ch_2, "output_enabled", True), None),
            ("raw :VOLT1 / :VOLT1:OFFS / :PULS:DEL1 / :PULS:TRAN1 / :HOLD / :OUTP1:IMP:EXT",
             lambda g: g.write(":VOLT1 2;:VOLT1:OFFS 1;:PULS:DEL1 0;:PULS:TRAN1 2e-9;"
                               ":HOLD VOLT;:OUTP1:IMP:EXT 50"), None),
            ("the amplitude is high - low",
             lambda g: (g.ch_1.voltage_high, g.ch_1.voltage_low) == (2.0, 0.0) or 1 / 0, None),
            ("an 81160A-only header", lambda g: g.write(":FUNC1 PULS"), -113),
            ("shutdown", lambda g: g.shutdown(), None),
        ]
    return [
        ("id", lambda g: g.id, None),
        ("reset", lambda g: g.reset(), None),
        ("shape", lambda g: setattr(g.ch_1, "shape", "PULS"), None),
        ("shape?", lambda g: g.ch_1.shape == "PULS" or 1 / 0, None),
        ("frequency", lambda g: setattr(g.ch_1, "frequency", 1e5), None),
        ("amplitude", lambda g: setattr(g.ch_1, "amplitude", 2.0), None),
        ("amplitude?", lambda g: g.ch_1.amplitude == 2.0 or 1 / 0, None),
        ("offset", lambda g: setattr(g.ch_1, "offset", 1.0), None),
        ("offset?", lambda g: g.ch_1.offset == 1.0 or 1 / 0, None),
        ("voltage_high", lambda g: setattr(g.ch_1, "voltage_high", 2.5), None),
        ("voltage_low", lambda g: setattr(g.ch_1, "voltage_low", 0), None),
        ("amplitude_unit", lambda g: setattr(g.ch_1, "amplitude_unit", "VPP"), None),
        ("pulse_period", lambda g: setattr(g.ch_1, "pulse_period", 1e-6), None),
        ("pulse_width", lambda g: setattr(g.ch_1, "pulse_width", 1e-8), None),
        ("pulse_hold", lambda g: setattr(g.ch_1, "pulse_hold", "WIDT"), None),
        ("pulse_dutycycle", lambda g: setattr(g.ch_1, "pulse_dutycycle", 10), None),
        ("pulse_transition", lambda g: setattr(g.ch_1, "pulse_transition", 2e-9), None),
        ("square_dutycycle", lambda g: setattr(g.ch_1, "square_dutycycle", 50), None),
        ("ramp_symmetry", lambda g: setattr(g.ch_1, "ramp_symmetry", 50), None),
        ("output_load", lambda g: setattr(g.ch_1, "output_load", 50), None),
        ("burst_state", lambda g: setattr(g.ch_1, "burst_state", True), None),
        ("burst_mode", lambda g: setattr(g.ch_1, "burst_mode", "TRIG"), None),
        ("burst_period", lambda g: setattr(g.ch_1, "burst_period", 1e-3), None),
        ("burst_ncycles", lambda g: setattr(g.ch_1, "burst_ncycles", 3), None),
        ("limit_state_enabled", lambda g: setattr(g.ch_1, "limit_state_enabled", True), None),
        ("limit_high", lambda g: setattr(g.ch_1, "limit_high", 5), None),
        ("coupling_enabled", lambda g: setattr(g.ch_1, "coupling_enabled", False), None),
        ("free_memory_slots", lambda g: g.ch_1.free_memory_slots, None),
        ("waveforms", lambda g: g.ch_1.waveforms, None),
        ("trigger_mode", lambda g: setattr(g.ch_1, "trigger_mode", "MAN"), None),
        ("trigger_count", lambda g: setattr(g.ch_1, "trigger_count", 3), None),
        ("trigger_count?", lambda g: g.ch_1.trigger_count == 3 or 1 / 0, None),
        ("output", lambda g: setattr(g.ch_1, "output", True), None),
        ("output?", lambda g: g.ch_1.output is True or 1 / 0, None),
        ("trigger", lambda g: g.trigger(), None),
        ("apply_pulse", lambda g: g.ch_2.apply_pulse(1e5, 1.0, 0.5), None),
        ("apply_dc", lambda g: g.ch_2.apply_dc(0.5), None),
        ("delete_waveform (none stored)", lambda g: g.ch_1.delete_waveform("NONE"), -256),
        ("beep", lambda g: g.beep(), None),
        ("display", lambda g: setattr(g, "display", "dwlab"), None),
        ("clear_display", lambda g: g.clear_display(), None),
        ("shutdown", lambda g: g.shutdown(), None),
    ]


def _queued(instrument: Any) -> list[int]:
    """Pop the error queue (its codes)."""
    codes = []
    for _ in range(40):
        code = int(instrument.ask("SYST:ERR?").split(",")[0])
        if code == 0:
            break
        codes.append(code)
    return codes


def run_operations(instrument: Any, served: Any, ops: list[Op]) -> list[str]:
    """Each operation in turn; the unexpected outcomes. ``served`` is the virtual
    instrument: it tells the errors raised, also those a driver read and only logged."""
    unexpected = []
    for name, op, expected in ops:
        before = len(served.errors_raised)
        try:
            op(instrument)
            instrument.ask("*OPC?")  # the instrument has executed what was written
        except Exception as exc:  # an operation that raises has failed
            unexpected.append(f"{name}: {type(exc).__name__}: {exc}")
            continue
        codes = sorted(set(list(served.errors_raised)[before:]))
        if codes != ([] if expected is None else [expected]):
            unexpected.append(f"{name}: queued {codes}, expected {expected}")
    return unexpected


MODELS = [
    ("keithley2450", "meter", Keithley2450, _smu_ops),
    ("keithley2400", "meter", Keithley2400, _smu_ops),
    ("keysight81160a", "pulser", Keysight81160A, _pulser_ops),
    ("agilent81110a", "pulser", Agilent81110A, _pulser_ops),
]


@pytest.fixture
def lab_for(tmp_path):
    from dwlab.sim.virtual_lab import VirtualLab

    labs = []

    def start(driver: str, role: str):
        options = {"meter": driver} if role == "meter" else {"pulser": driver}
        lab = VirtualLab.from_config(load_config(lab_config(tmp_path, **options))).start()
        labs.append(lab)
        return lab

    yield start
    for lab in labs:
        lab.stop()


def _open(lab, role: str, driver: str) -> Any:
    return connect_driver(driver, lab.resources[role], timeout_seconds=2.0)


def _route_one_device(lab) -> None:
    """Close device 0's read path, so that a source-meter measures a real device."""
    matrix = connect_driver("keithley707b", lab.resources["router"])
    matrix.route(sorted(lab.wiring[0][1]))
    matrix.adapter.close()


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_stock_drivers_every_operation(lab_for, capsys):
    rows, failures = [], []
    for driver, role, model, make_ops in MODELS:
        lab = lab_for(driver, role)
        _route_one_device(lab)
        instrument = _open(lab, role, driver)
        assert isinstance(instrument, model)
        ops = make_ops(model)
        unexpected = run_operations(instrument, lab.instruments[role], ops)
        instrument.adapter.close()
        expected_errors = sum(1 for *_, e in ops if e is not None)
        rows.append(f"{driver:15s} {len(ops):6d} {len(unexpected):7d} {expected_errors:16d}")
        failures += [f"{driver}: {u}" for u in unexpected]
        # (the stock 81160A's shutdown() only marks the driver shut: upstream behaviour)
        if driver != "keysight81160a" and any(lab.outputs_on().values()):
            failures.append(f"{driver}: shutdown left an output on")
    with capsys.disabled():
        print("\nmodel           tried  failed  real-instrument errors (expected)")
        print("\n".join(rows))
    assert not failures, "\n".join(failures)


def test_the_707b_answers_its_tsp_subset(lab_for):
    lab = lab_for("keithley2450", "meter")
    matrix = _open(lab, "router", "keithley707b")
    assert isinstance(matrix, Keithley707B)
    assert lab.serial in matrix.id
    matrix.write("errorqueue.clear()")
    matrix.route(["1A01", "1B02"])
    assert matrix.closed_channels == ["1A01", "1B02"]
    assert matrix.ask("*OPC?").strip() == "1"
    matrix.write("reset()")
    assert matrix.closed_channels == []
    matrix.close_channels = ["1A01"]
    matrix.write("*RST")
    assert matrix.closed_channels == []
    matrix.write("channel.close(1A01)")  # not TSP: a syntax error
    assert matrix.check_errors()[0][0] == -285
    matrix.close_channels = ["1A01"]
    matrix.shutdown()
    matrix.ask("*OPC?")
    assert lab.is_safe()
    matrix.adapter.close()


@pytest.mark.parametrize("driver", [*PULSERS, *SOURCE_METERS])
def test_every_header_of_the_table_answers_in_short_and_long_form(lab_for, driver):
    """The table the server answers from, queried as a client spells it (short form, long
    form, lower case): each setting answers, and nothing lands in the error queue."""
    role = "pulser" if driver in PULSERS else "meter"
    lab = lab_for(driver, role)
    table = (PULSERS | SOURCE_METERS)[driver]
    instrument = _open(lab, role, driver)
    checked = 0
    for command in table.commands:
        if command.kind != "setting":
            continue
        short = re.sub(r"\[:[^\]]*\]|[a-z#]", "", command.header)
        long = re.sub(r"[\[\]]", "", command.header).replace("#", "2")
        assert compile_header(command.header).match(long.upper())
        for spelled in (short, long.upper(), long.lower()):
            reply = instrument.ask(f"{spelled}?").strip()
            assert reply, spelled
            checked += 1
    assert _queued(instrument) == []
    assert checked >= 60
    instrument.ask("*OPC?")
    instrument.adapter.close()


def test_rst_turns_every_output_off_and_restores_defaults(lab_for):
    for driver, role, *_ in MODELS:
        lab = lab_for(driver, role)
        instrument = _open(lab, role, driver)
        if role == "pulser":
            instrument.write(":OUTP1 ON;:OUTP2 ON;:VOLT1:HIGH 3;:PULS:WIDT1 5e-8")
            instrument.ask("*OPC?")
        else:
            instrument.write(":SOUR:VOLT 0.05;:OUTP ON")
        instrument.ask("*OPC?")
        assert any(lab.outputs_on().values())
        instrument.write("*RST")
        instrument.ask("*OPC?")
        assert not any(lab.outputs_on().values()), driver
        if role == "pulser":
            assert float(instrument.ask(":VOLT1:HIGH?")) == 0.1
            instrument.ask("*TRG;*OPC?")  # nothing fires with the outputs off
            assert int(lab.delivered_push.sum() + lab.delivered_pull.sum()) == 0
        else:
            assert float(instrument.ask(":SOUR:VOLT?")) == 0.0
        instrument.adapter.close()


def test_common_commands_follow_ieee_488_2(lab_for):
    lab = lab_for("keithley2450", "meter")
    smu = _open(lab, "meter", "keithley2450")
    smu.write(":SOUR:BOGUS 1")  # a command error: ESR bit 5
    smu.write("*ESE 32")
    assert int(smu.ask("*STB?")) & 0b100100 == 0b100100  # queue not empty, event summary
    assert int(smu.ask("*ESR?")) & 32
    assert int(smu.ask("*ESR?")) == 0  # reading clears it
    assert smu.ask("SYSTem:ERRor?").startswith("-113")
    smu.write(":SOUR:VOLT")  # a setting without its value
    smu.write(":OUTP MAYBE")
    smu.write(":SENS:CURR:NPLC 99")
    assert _queued(smu) == [-109, -224, -222]
    smu.write("*OPC")
    assert int(smu.ask("*ESR?")) & 1
    smu.write(":SENS:CURR:NPLC 0.5;NPLC?")  # a relative header continues the path
    assert smu.read().strip() == "+5.000000E-01"
    smu.adapter.close()
