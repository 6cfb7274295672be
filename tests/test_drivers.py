"""Driver tests without hardware: pymeasure's expected command/reply adapter, and the
pyvisa-sim definitions in drivers/sim_yaml (which check that every command parses)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from dwlab.drivers.agilent81110a import Agilent81110A
from dwlab.drivers.keithley707b import Keithley707B
from dwlab.drivers.meters import Keithley2400Meter, Keithley2450Meter
from dwlab.drivers.pulsers import Agilent81110APulser, Keysight81160APulser
from dwlab.drivers.registry import DRIVERS, open_role
from dwlab.drivers.routers import Keithley707BRouter
from pymeasure.adapters import ProtocolAdapter
from pymeasure.instruments.keithley import Keithley2400, Keithley2450
from pymeasure.instruments.keysight import Keysight81160A
from pymeasure.test import expected_protocol

from dwlab.core.errors import InstrumentReplyError
from dwlab.core.roles import ConductanceMeter, PulseSource, Router
from dwlab.core.types import PULL, PUSH

SIM_YAML = Path(__file__).resolve().parents[1] / "drivers" / "sim_yaml"


# -- Agilent 81110A (new declarative driver) --------------------------------------------


def test_81110a_settings_and_queries():
    with expected_protocol(
        Agilent81110A,
        [(":ARM:SOUR MAN", None), (":PULS:PER 1e-06", None), (":VOLT1:HIGH 2.5", None),
         (":VOLT2:LOW -0.5", None), (":PULS:WIDT1 1e-08", None), (":OUTP1:POL INV", None),
         (":OUTP1 1", None), (":OUTP1?", "0"), (":OUTP1:POL?", "NORM"),
         (":TRIG:COUN 7", None), (":PULS:WIDT1?", "2e-08")],
    ) as gen:
        gen.arm_source = "manual"
        gen.pulse_period = 1e-6
        gen.ch_1.voltage_high = 2.5
        gen.ch_2.voltage_low = -0.5
        gen.ch_1.pulse_width = 10e-9
        gen.ch_1.polarity = "inverted"
        gen.ch_1.output_enabled = True
        assert gen.ch_1.output_enabled is False
        assert gen.ch_1.polarity == "normal"
        gen.burst_count = 7
        assert gen.ch_1.pulse_width == pytest.approx(2e-8)


def test_81110a_fire_is_one_compound_query():
    with expected_protocol(
        Agilent81110A,
        [(":OUTP1:POL NORM;:TRIG:COUN 5;*TRG;:OUTP1:POL INV;:TRIG:COUN 3;*TRG;*OPC?", "1")],
    ) as gen:
        assert gen.ch_1.fire([("normal", 5), ("inverted", 3)]) == "1"


@pytest.mark.parametrize("action", [
    lambda g: setattr(g.ch_1, "voltage_high", 12.0),
    lambda g: setattr(g.ch_1, "pulse_width", 1e-10),
    lambda g: setattr(g, "burst_count", 0),
    lambda g: g.ch_1.fire([("normal", 70000)]),
    lambda g: g.ch_1.fire([("sideways", 1)]),
])
def test_81110a_rejects_out_of_range_before_sending(action):
    with expected_protocol(Agilent81110A, []) as gen:  # no message may be sent
        with pytest.raises(ValueError):
            action(gen)


# -- Keithley 707B (new TSP driver) ------------------------------------------------------


def test_707b_route_list_and_errors():
    with expected_protocol(
        Keithley707B,
        [('channel.exclusiveclose("1A01,1B12") print(1)', "1.00000e+00"),
         ('print(channel.getclose("allslots"))', "1A01;1B12"),
         ('channel.close("2C03")', None), ('channel.open("1A01")', None),
         ('channel.open("allslots")', None),
         ('print(channel.getclose("allslots"))', "nil"),
         ("print(errorqueue.count)", "2.00000e+00"),
         ("errorcode, message = errorqueue.next() print(errorcode, message)",
          "-2.85000e+02\tTSP Syntax error"),
         ("errorcode, message = errorqueue.next() print(errorcode, message)",
          "1.11500e+03\tParameter error invalid channel")],
    ) as matrix:
        matrix.route(["1A01", "1B12"])
        assert matrix.closed_channels == ["1A01", "1B12"]
        matrix.close_channels = ["2C03"]
        matrix.open_channels = ["1A01"]
        matrix.open_all()
        assert matrix.closed_channels == []
        assert matrix.check_errors() == [(-285, "TSP Syntax error"),
                                         (1115, "Parameter error invalid channel")]


@pytest.mark.parametrize("bad", ["1A13", "7A01", "1J01", "A101", "1A1"])
def test_707b_rejects_bad_crosspoints_before_sending(bad):
    with expected_protocol(Keithley707B, []) as matrix:
        with pytest.raises(ValueError, match="crosspoint"):
            matrix.route([bad])


def test_707b_route_checks_the_reply():
    with expected_protocol(Keithley707B,
                           [('channel.exclusiveclose("1A01") print(1)', "nil")]) as matrix:
        with pytest.raises(ValueError, match="unexpected reply"):
            matrix.route(["1A01"])


# -- role adapters on the expected-protocol adapter ----------------------------------------


def _role(adapter_cls, instrument_cls, pairs, **kwargs):
    protocol = ProtocolAdapter(pairs)
    role = adapter_cls("test", lambda: instrument_cls(protocol), **kwargs)
    return role, protocol


METER_SEQUENCES = {
    # the compliance is set before the output ever goes on
    "2450": (Keithley2450Meter, Keithley2450, (0.01, 1e-4, 4, 0.1), 2.5e-6, [
        (":SOUR:FUNC VOLT", None), (":SOUR:VOLT:ILIM 0.0001", None),
        (":SOUR:VOLT:LEV 0.01", None), (':SENS:FUNC "CURR"', None),
        (":SENS:CURR:RSEN ON", None), (":SENS:CURR:NPLC 0.1", None),
        ("OUTPUT ON", None), (":READ?", "2.5e-06"),
        ("OUTPUT OFF", None), ("OUTPUT?", "0"),
    ]),
    "2400": (Keithley2400Meter, Keithley2400, (0.02, 2e-4, 2, 1.0), 4e-6, [
        (":FORMAT:ELEMENTS VOLTAGE, CURRENT, RESISTANCE, TIME, STATUS", None),
        (":SOURCE:FUNCTION VOLT", None), (":SENSE:CURRENT:PROTECTION 0.0002", None),
        (":SOURCE:VOLTAGE 0.02", None), (":SYSTEM:RSENSE 0", None),
        (":SENSE:CURRENT:NPLCYCLES 1", None), ("OUTPUT 1", None),
        (":MEASURE:CURRENT?", "2.0E-02,4.0E-06,5.0E+03,1.0E+00,0"),
        ("OUTPUT 0", None), ("OUTPUT?", "0"),
    ]),
}


@pytest.mark.parametrize("model", sorted(METER_SEQUENCES))
def test_meter_command_sequence(model):
    adapter_cls, driver_cls, configure_args, current, pairs = METER_SEQUENCES[model]
    role, protocol = _role(adapter_cls, driver_cls, pairs)
    assert isinstance(role, ConductanceMeter)
    role.configure(*configure_args)
    role.output_on()
    assert role.measure_current() == pytest.approx(current)
    role.output_off()
    assert protocol._index == len(protocol.comm_pairs)


def test_output_off_that_does_not_take_effect_is_an_error():
    role, _ = _role(Keithley2450Meter, Keithley2450, [
        ("OUTPUT OFF", None), ("OUTPUT?", "1"), ("OUTPUT OFF", None), ("OUTPUT?", "1"),
    ])
    with pytest.raises(InstrumentReplyError, match="not confirmed"):
        role.output_off()


def test_81160a_pulser_on_the_stock_driver():
    role, protocol = _role(Keysight81160APulser, Keysight81160A, [
        (":FUNC1 PULS", None), (":ARM:SOUR1 MAN", None), (":PULS:PER1 1.000000e-06", None),
        (":VOLT1:LOW 0.000000", None), (":VOLT1:HIGH 1.500000", None),
        (":PULS:WIDT1 2.000000e-08", None), ("OUTP1 1", None),
        (":OUTP1:POL NORM;:TRIG1:COUN 5;*TRG;:OUTP1:POL INV;:TRIG1:COUN 3;*TRG;*OPC?", "1"),
        ("OUTP1 0", None), ("OUTP1?", "0"),
    ])
    assert isinstance(role, PulseSource)
    role.configure(1.5, 20e-9, 1e-6)
    role.output_on()
    role.fire([(PUSH, 5), (PULL, 3)])
    role.output_off()
    assert protocol._index == len(protocol.comm_pairs)


def test_81110a_pulser_reports_an_unconfirmed_burst():
    role, _ = _role(Agilent81110APulser, Agilent81110A, [
        (":OUTP1:POL NORM;:TRIG:COUN 2;*TRG;*OPC?", "0"),
    ])
    with pytest.raises(InstrumentReplyError, match="not confirmed"):
        role.fire([(PUSH, 2)])


def test_router_role():
    role, protocol = _role(Keithley707BRouter, Keithley707B, [
        ('channel.exclusiveclose("1A01,1B02") print(1)', "1.00000e+00"),
        ('channel.open("allslots")', None), ('print(channel.getclose("allslots"))', "nil"),
    ])
    assert isinstance(role, Router)
    role.route(["1A01", "1B02"])
    role.open_all()
    assert protocol._index == len(protocol.comm_pairs)


# -- pyvisa-sim: every command the role adapters send parses ------------------------------


def _sim_role(tmp_path, driver, role):
    yaml_path = tmp_path / f"{driver}.yaml"
    shutil.copy(SIM_YAML / f"{driver}.yaml", yaml_path)
    return open_role(role, driver, "ASRL1::INSTR", channel=1, timeout_seconds=1.0,
                     visa_library=f"{yaml_path}@sim")


def test_every_registered_driver_has_a_sim_definition():
    for name in DRIVERS:
        assert (SIM_YAML / f"{name}.yaml").is_file(), name


@pytest.mark.parametrize("driver", ["agilent81110a", "keysight81160a"])
def test_pulsers_parse_on_pyvisa_sim(tmp_path, driver):
    pulser = _sim_role(tmp_path, driver, "pulser")
    try:
        assert "SIM" in pulser.identify()
        pulser.configure(1.0, 1e-8, 1e-6)
        pulser.output_on()
        pulser.fire([(PUSH, 5), (PULL, 3)])  # the reply is "1" only if the message matched
        pulser.output_off()
        assert pulser.errors() == []
        assert pulser.identify().endswith("pyvisa-sim")  # no stale ERROR in the buffer
    finally:
        pulser.close()


def test_pyvisa_sim_rejects_an_out_of_range_value(tmp_path):
    """The check above can fail: a value outside the instrument's range gets ERROR."""
    pulser = _sim_role(tmp_path, "agilent81110a", "pulser")
    try:
        pulser.instrument.write(":PULS:WIDT1 5")
        assert pulser.instrument.read().strip() == "ERROR"
    finally:
        pulser.close()


@pytest.mark.parametrize("driver, current", [("keithley2450", 3.512e-6),
                                             ("keithley2400", 3.512e-6)])
def test_meters_parse_on_pyvisa_sim(tmp_path, driver, current):
    meter = _sim_role(tmp_path, driver, "meter")
    try:
        meter.configure(0.01, 1e-4, 2, 0.1)
        meter.output_on()
        assert meter.measure_current() == pytest.approx(current)
        meter.output_off()
        assert meter.errors() == []
        assert "SIM" in meter.identify()
    finally:
        meter.close()


def test_matrix_parses_on_pyvisa_sim(tmp_path):
    router = _sim_role(tmp_path, "keithley707b", "router")
    try:
        router.route(["1A01", "1B02"])
        router.route(["1C01", "1D02"])
        router.open_all()
        assert router.closed() == []
        assert router.errors() == []
        assert "SIM" in router.identify()
    finally:
        router.close()
