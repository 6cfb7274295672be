"""The virtual lab: its protocol, and injected faults ending safely.

For every fault the run ends with a clear error (or recovers where a retry is safe),
outputs off and switches open (asked of the virtual instruments), and records intact.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest
import torch
from dwlab.drivers.registry import connect_driver
from dwlab.sim.virtual_lab import VirtualLab
from test_virtual_lab_support import (
    CONFIGS,
    autostarted_lab,
    lab_config,
    open_lab_array,
    training_lab_config,
)

from dwlab.config import load_config
from dwlab.core.errors import (
    InstrumentConnectionError,
    InstrumentReplyError,
    InstrumentTimeoutError,
)
from dwlab.core.types import PulsePlan, PulseShape
from dwlab.records import EventLog, read_events

NOMINAL = PulseShape(1.0, 1e-8)


@pytest.fixture
def rig(tmp_path):
    log = EventLog(tmp_path / "events.jsonl")
    lab, array = open_lab_array(lab_config(tmp_path), event_log=log)
    yield lab, array, tmp_path / "events.jsonl"
    array.close()
    lab.stop()
    log.close()


def _all_push(n=5):
    return PulsePlan.uniform(torch.full((3, 4), n), torch.zeros(3, 4, dtype=torch.long),
                             NOMINAL)


def _assert_stopped_and_recorded(lab, exc_info, events_path):
    """Outputs off, switches open, and the receipt / event log agree with the lab."""
    assert lab.is_safe()
    receipt = exc_info.value.receipt
    delivered = lab.delivered_push.reshape(3, 4)
    unconfirmed = receipt.details.get("unconfirmed")
    confirmed = receipt.push_applied
    # every confirmed pulse reached the twin; at most the unconfirmed burst is extra
    extra = delivered - confirmed
    assert int(extra.min()) >= 0
    if unconfirmed is None:
        assert int(extra.sum()) == 0
    else:
        assert int(extra.sum()) in (0, unconfirmed["bursts"][0][1])
    events = read_events(events_path)
    aborted = [e for e in events if e["event"] == "apply_aborted"]
    assert aborted and aborted[-1]["pulses_applied"] == receipt.pulses_total
    return receipt


def test_a_query_left_unanswered_is_a_timeout_and_the_lab_is_left_safe(rig):
    lab, array, events = rig
    lab.inject("pulser", "timeout", after=4, match="*TRG")
    with pytest.raises(InstrumentTimeoutError, match="no reply") as info:
        array.apply(_all_push())
    receipt = _assert_stopped_and_recorded(lab, info, events)
    assert receipt.pulses_total == 4 * 5  # four devices fired before the hang
    assert "20 pulses applied to 4 devices before the stop" in str(info.value)
    assert receipt.details["unconfirmed"]["device"] == 4


def test_a_dropped_matrix_connection_is_retried_because_routing_is_idempotent(rig):
    lab, array, _ = rig
    lab.inject("router", "drop", after=5)
    receipt = array.apply(_all_push())
    assert receipt.pulses_total == 60
    assert torch.equal(lab.delivered_push.reshape(3, 4), torch.full((3, 4), 5))
    assert lab.is_safe()


def test_a_dropped_pulser_connection_stops_the_run_and_reconnects_to_switch_off(rig):
    lab, array, events = rig
    lab.inject("pulser", "drop", match="*TRG", after=2)
    with pytest.raises(InstrumentConnectionError) as info:
        array.apply(_all_push())
    receipt = _assert_stopped_and_recorded(lab, info, events)
    assert receipt.pulses_total == 10
    assert list(lab.pulser.log)[-2:] == [":OUTP1 0", ":OUTP1?"]  # sent on a new connection


def test_an_error_queue_entry_ends_the_group_with_a_clear_error(rig):
    lab, array, events = rig
    lab.inject("pulser", "error", after=3)
    with pytest.raises(InstrumentReplyError, match="Device-specific error") as info:
        array.apply(_all_push())
    # the entry is found by the error check after the group: all pulses went out
    receipt = _assert_stopped_and_recorded(lab, info, events)
    assert receipt.pulses_total == 60


def test_a_garbled_read_is_retried(rig):
    lab, array, _ = rig
    lab.inject("meter", "garble", match=":READ?")
    readout = array.read()
    assert torch.allclose(readout.conductance_siemens, lab.twin.conductance(), atol=3e-6,
                          rtol=0)
    assert sum(m == ":READ?" for m in lab.meter.log) == 13  # 12 devices + one retry
    assert lab.is_safe()


def test_a_read_that_keeps_timing_out_fails_cleanly(rig):
    lab, array, _ = rig
    lab.inject("meter", "timeout", match=":READ?", times=2)
    with pytest.raises(InstrumentTimeoutError):
        array.read()
    assert lab.is_safe()


def test_a_garbled_burst_confirmation_is_not_repeated(rig):
    lab, array, events = rig
    lab.inject("pulser", "garble", match="*TRG", after=1)
    with pytest.raises(InstrumentReplyError, match="not confirmed") as info:
        array.apply(_all_push())
    receipt = _assert_stopped_and_recorded(lab, info, events)
    assert receipt.details["unconfirmed"]["device"] == 1
    # the garbled burst did go out once (the lab executed it) and was not fired again
    assert int(lab.delivered_push.sum()) == receipt.pulses_total + 5


def test_ctrl_c_mid_apply_leaves_outputs_off_and_switches_open(rig):
    lab, array, events = rig
    fire = array.pulser.fire
    calls = []

    def interrupted(bursts):
        calls.append(bursts)
        if len(calls) == 3:
            raise KeyboardInterrupt
        fire(bursts)

    array.pulser.fire = interrupted
    with pytest.raises(KeyboardInterrupt) as info:
        array.apply(_all_push())
    receipt = _assert_stopped_and_recorded(lab, info, events)
    assert receipt.pulses_total == 10


def test_faults_from_the_config_are_injected(tmp_path):
    path = lab_config(tmp_path, virtual_lab={"faults": [
        {"instrument": "router", "kind": "error", "after": 2}]})
    lab, array = open_lab_array(path)
    try:
        with pytest.raises(InstrumentReplyError, match="router reported"):
            array.apply(_all_push(1))
        assert lab.is_safe()
    finally:
        array.close()
        lab.stop()


# -- the servers themselves ----------------------------------------------------------------


@pytest.fixture
def lab(tmp_path):
    with VirtualLab.from_config(load_config(lab_config(tmp_path))) as running:
        yield running


def test_servers_listen_on_loopback_only(lab):
    for role, server in lab._servers.items():
        assert server.server_address[0] == "127.0.0.1", role


def test_unknown_commands_land_in_the_error_queue(lab):
    pulser = connect_driver("agilent81110a", lab.resources["pulser"])
    matrix = connect_driver("keithley707b", lab.resources["router"])
    try:
        pulser.write(":BOGUS:CMD 3")
        assert pulser.ask("SYST:ERR?").startswith("-113")
        assert pulser.ask("SYST:ERR?").startswith("0,")
        matrix.write('channel.close("1A13")')
        matrix.write("os.execute('rm')")
        codes = [code for code, _ in matrix.check_errors()]
        assert codes == [1115, -285]
        assert lab.closed_crosspoints() == set()
    finally:
        pulser.adapter.close()
        matrix.adapter.close()


def test_a_burst_only_reaches_the_devices_the_matrix_connects(lab):
    pulser = connect_driver("agilent81110a", lab.resources["pulser"])
    matrix = connect_driver("keithley707b", lab.resources["router"])
    try:
        pulser.write(":VOLT1:HIGH 1;:PULS:WIDT1 1e-08;:OUTP1 1")
        # word lines take matrix columns 1-3, bit lines 4-7: device (1, 2) is 1A02 + 1B06
        matrix.route(["1A02", "1B06"])
        assert pulser.ch_1.fire([("normal", 4)]) == "1"
        pulser.ch_1.output_enabled = False
        assert pulser.ch_1.fire([("normal", 4)]) == "1"  # output off: nothing moves
        expected = torch.zeros(12, dtype=torch.long)
        expected[1 * 4 + 2] = 4
        assert torch.equal(lab.delivered_push, expected)
    finally:
        pulser.adapter.close()
        matrix.adapter.close()


def test_latency_is_added_per_message(tmp_path):
    path = lab_config(tmp_path, virtual_lab={"latency_seconds": 0.005})
    with VirtualLab.from_config(load_config(path)) as slow:
        matrix = connect_driver("keithley707b", slow.resources["router"])
        try:
            start = time.perf_counter()
            for _ in range(10):
                matrix.ask("print(1)")
            assert time.perf_counter() - start >= 10 * 0.005
        finally:
            matrix.adapter.close()


def test_virtual_lab_command_serves_until_stopped(tmp_path):
    """Free ports by default; ``--write-config`` tells the clients where."""
    from dwlab.app.cli import main

    path = lab_config(tmp_path)
    client = tmp_path / "client.yaml"
    result = {}
    thread = threading.Thread(target=lambda: result.setdefault(
        "rc", main(["virtual-lab", "--config", str(path), "--serve-seconds", "1.5",
                    "--write-config", str(client)])))
    thread.start()
    try:
        deadline = time.monotonic() + 3
        while not client.exists():  # written once the lab listens
            assert time.monotonic() < deadline
            time.sleep(0.05)
        resource = load_config(client).config.arrays["chip"].hardware.instruments.pulser.resource
        pulser = connect_driver("agilent81110a", resource)
        try:
            assert "81110A" in pulser.id
        finally:
            pulser.adapter.close()
    finally:
        thread.join(timeout=10)
    assert result["rc"] == 0


def test_identify_prints_identities_without_touching_outputs(tmp_path, capsys):
    from dwlab.app.cli import main

    path = lab_config(tmp_path)
    loaded = load_config(path)
    with VirtualLab.from_config(loaded) as running:
        path = lab_config(tmp_path, resources=running.resources, name="bench.yaml")
        assert main(["instruments", "identify", str(path)]) == 0
        out = capsys.readouterr().out
        assert running.pulser.idn in out and running.meter.idn in out
        assert running.matrix.idn in out
        for instrument in running.instruments.values():  # clearing status touches nothing
            assert list(instrument.log)[-1] == "*IDN?"
            assert list(instrument.log)[:-1] in (["*CLS"], ["errorqueue.clear()"])


# -- checked-in configs and the mixed mapping ------------------------------------------------


def test_checked_in_instrument_configs_are_valid():
    bench = load_config(CONFIGS / "bench_example.yaml").config
    assert bench.arrays["chip"].hardware.wiring.paths((8, 8))[0][0] == ("3A01", "3B02")
    virtual = load_config(CONFIGS / "virtual_lab.yaml").config
    assert virtual.virtual_lab.array == "chip" and virtual.virtual_lab.autostart


def test_virtual_lab_config_puts_the_last_mlp_layer_on_the_chip():
    from fnmatch import fnmatch

    from dwlab.app.models import build_model

    cfg = load_config(CONFIGS / "virtual_lab.yaml").config
    model = build_model(cfg.training.model, in_channels=1, num_classes=10,
                        width=cfg.training.width, image_size=8)
    weights = [(n, p) for n, p in model.named_parameters() if p.dim() >= 2]
    last_name, last = weights[-1]
    rule = cfg.mapping[0]
    assert fnmatch(last_name, rule.match) and rule.array == "chip"
    assert not any(fnmatch(n, rule.match) for n, _ in weights[:-1])
    assert tuple(cfg.arrays["chip"].shape) == (2, *last.shape)  # a differential pair


def test_train_with_the_last_layer_on_the_virtual_lab(tmp_path, capsys):
    """``dwlab train`` starts the lab in-process and trains through the instruments."""
    from dwlab.app.cli import main

    path = training_lab_config(tmp_path)
    with autostarted_lab(path) as lab:
        rc = main(["train", "--config", str(path), "--no-float", "--no-progress",
                   "--epochs", "1", "--limit-train", "64", "--limit-test", "64",
                   "--run-dir", str(tmp_path / "run")])
        assert rc == 0
        fired = [m for m in lab.pulser.log if "*TRG" in m]
        assert len(fired) >= 320  # every device of the pair array pulsed at least once
        assert int(lab.delivered_push.sum() + lab.delivered_pull.sum()) > 0
        assert lab.is_safe()


def test_identify_reports_an_instrument_that_does_not_answer(tmp_path, capsys):
    from dwlab.app.cli import main

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    dead = f"TCPIP::127.0.0.1::{s.getsockname()[1]}::SOCKET"
    s.close()  # nothing listens there
    path = lab_config(tmp_path, resources={"pulser": dead, "meter": dead, "router": dead})
    assert main(["instruments", "identify", str(path)]) == 1
    out = capsys.readouterr().out
    assert out.count("FAIL") == 3 and "pulser" in out


def test_a_failing_safe_state_is_reported_and_the_other_instruments_still_stop(rig):
    lab, array, events = rig
    lab.inject("pulser", "drop", match="*TRG", after=1)
    lab.inject("pulser", "drop", match=":OUTP1 0", times=10)  # the pulser cannot be stopped
    with pytest.raises(InstrumentConnectionError, match="safe state FAILED"):
        array.apply(_all_push())
    assert not lab.meter.output_on() and lab.closed_crosspoints() == set()
    assert any(e["event"] == "safe_state_failed" for e in read_events(events))
    lab.clear_faults()
    array.safe_state()
    assert lab.is_safe()
