"""Labs that do not collide, and bursts that take their time.

Two labs on one machine serve on their own free ports with their own serials; a taken port
is one error naming it; nothing listening gets a hint to start the lab; errors another
client left are cleared on connect; a run checks it talks to the lab it started. A burst
lasts its pulses times their period: a client that re-routes before it ends misroutes the
rest, as on a bench, and dwlab's arrays wait for it.
"""

from __future__ import annotations

import socket

import pytest
import torch
from dwlab.drivers.registry import connect_driver
from dwlab.sim.virtual_lab import VirtualLab
from test_virtual_lab_support import lab_config

from dwlab.app.backends import open_backends, open_hardware, start_virtual_lab
from dwlab.config import load_config
from dwlab.core.errors import InstrumentConnectionError
from dwlab.core.types import PulsePlan, PulseShape

PULSE = PulseShape(1.0, 1e-8)


def _plan(push: torch.Tensor) -> PulsePlan:
    return PulsePlan.uniform(push, torch.zeros_like(push), PULSE)


def test_two_labs_at_once_do_not_interfere(tmp_path):
    loaded = load_config(lab_config(tmp_path))
    first, second = start_virtual_lab(loaded), start_virtual_lab(loaded)
    try:
        assert set(first.ports.values()).isdisjoint(second.ports.values())
        assert first.serial != second.serial
        a = open_hardware(loaded, "chip", resources=first.resources)
        b = open_hardware(loaded, "chip", resources=second.resources)
        try:
            assert all(first.serial in i for i in a.describe().identity.values())
            assert all(second.serial in i for i in b.describe().identity.values())
            push = torch.zeros(3, 4, dtype=torch.long)
            push[1, 2] = 3
            a.apply(_plan(push))
            b.read()
            assert torch.equal(first.delivered_push.reshape(3, 4), push)
            assert int(second.delivered_push.sum()) == 0
        finally:
            a.close()
            b.close()
    finally:
        first.stop()
        second.stop()


def test_a_taken_port_is_one_error_naming_it(tmp_path, capsys):
    from dwlab.app.cli import main

    path = lab_config(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(InstrumentConnectionError, match=f"port {port} on 127.0.0.1"):
            start_virtual_lab(load_config(path), {"pulser": port})
        assert main(["virtual-lab", "--config", str(path), "--base-port", str(port),
                     "--serve-seconds", "0"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"port {port} on 127.0.0.1 (the pulser) is already in use" in err[0]


def test_nothing_listening_gets_a_hint_to_start_the_lab(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # free once closed: nothing listens there
    path = lab_config(tmp_path, resources={"pulser": f"TCPIP::127.0.0.1::{port}::SOCKET"},
                      virtual_lab={"autostart": False})
    with pytest.raises(InstrumentConnectionError, match="start the virtual lab first") as info:
        with open_backends(load_config(path)) as backends:
            backends.array("chip")
    assert f"dwlab virtual-lab --config {path}" in str(info.value)


def test_errors_left_by_another_client_are_cleared_on_connect(tmp_path):
    with VirtualLab.from_config(load_config(lab_config(tmp_path))) as lab:
        other = connect_driver("keithley2450", lab.resources["meter"])
        other.write(":NOT:A:COMMAND")
        assert other.ask("SYST:ERR:COUN?").strip() == "1"
        other.adapter.close()
        meter = connect_driver("keithley2450", lab.resources["meter"])
        assert meter.check_errors() == []
        meter.adapter.close()


def test_a_run_trains_only_through_the_lab_it_started(tmp_path, monkeypatch):
    """The serial its lab's instruments answer with is checked; an instrument answering
    with another lab's serial stops the run before any pulse."""
    path = lab_config(tmp_path, virtual_lab={"autostart": True})
    with open_backends(load_config(path)) as backends:
        backends.array("chip")  # its own lab: accepted
        lab = backends.lab
        assert lab is not None and backends.lab.serial in backends.arrays[0].describe().identity[
            "pulser"]
    start = VirtualLab.start

    def another_labs_instruments(lab):  # as if another lab had taken the port since
        start(lab)
        lab.serial = "VLOTHER00"
        return lab

    monkeypatch.setattr(VirtualLab, "start", another_labs_instruments)
    with pytest.raises(InstrumentConnectionError, match="not the virtual lab this run started"):
        with open_backends(load_config(path)) as backends:
            backends.array("chip")


# -- timing ----------------------------------------------------------------------------------

SLOW = {"pulse_period_seconds": 0.05}
"""10 pulses take 0.5 s: far longer than the round trips that follow them."""


def _route(matrix, lab, device: int) -> None:
    matrix.route(sorted(lab.wiring[device][0]))


def _slow_pulser(lab):
    pulser = connect_driver("agilent81110a", lab.resources["pulser"])
    pulser.write(":ARM:SOUR MAN;:PULS:PER 0.05;:TRIG:COUN 10;:VOLT1:LOW 0;:VOLT1:HIGH 1;"
                 ":PULS:WIDT1 1e-8;:OUTP1 ON")
    return pulser


@pytest.mark.parametrize("synchronised", [False, True])
def test_re_routing_before_a_burst_ends_misroutes_its_rest(tmp_path, synchronised):
    with VirtualLab.from_config(load_config(lab_config(tmp_path))) as lab:
        matrix = connect_driver("keithley707b", lab.resources["router"])
        pulser = _slow_pulser(lab)
        _route(matrix, lab, 0)
        if synchronised:
            assert pulser.ask("*TRG;*OPC?").strip() == "1"  # answered once the burst is out
        else:
            pulser.write("*TRG")
        _route(matrix, lab, 1)
        pulser.ask("*OPC?")
        delivered = lab.delivered_push[:2].tolist()
        pulser.adapter.close()
        matrix.adapter.close()
    assert sum(delivered) == 10
    if synchronised:
        assert delivered == [10, 0]
    else:  # the rest of the burst went to the device routed next
        assert delivered[0] < 10 and delivered[1] > 0


def test_a_burst_lasts_its_pulses_times_their_period(tmp_path):
    with VirtualLab.from_config(load_config(lab_config(tmp_path))) as lab:
        matrix = connect_driver("keithley707b", lab.resources["router"])
        pulser = _slow_pulser(lab)
        _route(matrix, lab, 0)
        pulser.write("*TRG")
        pulser.ask(":OUTP1?")  # the trigger has been taken
        early = int(lab.delivered_push.sum())
        pulser.ask("*OPC?")
        assert early < 10  # half a second's burst has only begun
        assert int(lab.delivered_push.sum()) == 10
        pulser.adapter.close()
        matrix.adapter.close()


def test_dwlab_arrays_wait_for_each_burst_before_re_routing(tmp_path):
    path = lab_config(tmp_path, hardware=SLOW, limits={"max_pulses_per_device": 8})
    loaded = load_config(path)
    with VirtualLab.from_config(loaded) as lab:
        array = open_hardware(loaded, "chip", resources=lab.resources)
        try:
            push = torch.zeros(3, 4, dtype=torch.long)
            push[0, 0], push[0, 1] = 4, 2
            array.apply(_plan(push))
        finally:
            array.close()
        assert torch.equal(lab.delivered_push.reshape(3, 4), push)
