"""A training run on hardware (the virtual lab) records what its arrays report and closes
their instrument connections, whether it finishes or an instrument fault stops it; the lab
it starts itself is stopped on every way out, and each array is made safe once at close."""

from __future__ import annotations

import socket
import threading
import time

import pytest
from dwlab.drivers.hardware_array import HardwareArray
from dwlab.sim.twin import TwinArray
from dwlab.sim.virtual_lab import VirtualLab
from test_virtual_lab_support import autostarted_lab, training_lab_config

from dwlab.app.cli import main
from dwlab.app.training import TrainingRun
from dwlab.records import read_events, read_table

LABEL = "push_pull_pair-3bit"  # the device run of lab_configs/virtual_lab.yaml


def _train(path, run_dir, limit_train: int = 64) -> int:
    """One epoch of ``limit_train`` images: batches of 64, so one step per 64 images."""
    return main(["train", "--config", str(path), "--no-float", "--no-progress",
                 "--epochs", "1", "--limit-train", str(limit_train), "--limit-test", "64",
                 "--run-dir", str(run_dir)])


def _connections_closed(lab, seconds: float = 5.0) -> bool:
    """Whether every client connection is gone (the server notices a close promptly)."""
    deadline = time.monotonic() + seconds
    while any(lab.open_connections().values()):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _delivered(lab) -> int:
    return int(lab.delivered_push.sum() + lab.delivered_pull.sum())


def test_a_finished_run_records_every_apply_and_closes_the_instruments(tmp_path):
    path = training_lab_config(tmp_path)
    with autostarted_lab(path) as lab:
        assert _train(path, tmp_path / "run") == 0
        assert lab.is_safe()
        assert _connections_closed(lab), lab.open_connections()
        events = read_events(tmp_path / "run" / LABEL / "device_events.jsonl")
        applies = [e for e in events if e["event"] == "apply"]
        assert applies and all(e["array"] == "chip" and e["time"] for e in applies)
        # every pulse the instruments delivered is in the run's record
        assert sum(e["pulses"] for e in applies) == _delivered(lab) > 0


def test_an_aborted_run_records_the_pulses_sent_before_the_stop_and_closes(
        tmp_path, capsys, monkeypatch):
    path = training_lab_config(tmp_path)
    with autostarted_lab(path) as lab:
        def break_the_pulser_after_step_one(run, step):
            if step == 1:  # the pulser drops its connection partway through step 2
                lab.inject("pulser", "drop", after=100, match="*TRG")

        monkeypatch.setattr(TrainingRun, "after_step", break_the_pulser_after_step_one)
        assert _train(path, tmp_path / "run", limit_train=128) == 1
        assert "closed the connection" in capsys.readouterr().err
        assert [r["step"] for r in read_table(tmp_path / "run" / LABEL / "steps.csv")] == ["1"]
        assert lab.is_safe()
        assert _connections_closed(lab), lab.open_connections()
        events = read_events(tmp_path / "run" / LABEL / "device_events.jsonl")
        assert [e["event"] for e in events][-1] == "apply_aborted"
        aborted = events[-1]
        assert aborted["pulses_applied"] > 0  # step 2 had fired 100 bursts before the stop
        recorded = sum(e["pulses"] for e in events[:-1]) + aborted["pulses_applied"]
        # nothing that reached the devices is missing from the record; at most the one
        # unconfirmed burst (sent, then the link dropped) may have gone out unrecorded
        unconfirmed = aborted["unconfirmed"]
        assert unconfirmed is not None
        extra = _delivered(lab) - recorded
        assert 0 <= extra <= sum(n for _, n in unconfirmed["bursts"])


# -- a run that starts its own lab (the config's autostart) --------------------------------


@pytest.fixture
def own_lab(monkeypatch):
    """Records the labs a run starts (with their ports) and every safe_state per array."""
    started: list[tuple[VirtualLab, dict[str, int]]] = []
    safe_states: dict[int, int] = {}
    start = VirtualLab.start

    def recording_start(lab):
        start(lab)
        started.append((lab, dict(lab.ports)))
        return lab

    monkeypatch.setattr(VirtualLab, "start", recording_start)
    for cls in (HardwareArray, TwinArray):
        def counting(array, _original=cls.safe_state):
            safe_states[id(array)] = safe_states.get(id(array), 0) + 1
            _original(array)

        monkeypatch.setattr(cls, "safe_state", counting)
    return started, safe_states


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def _lab_threads(seconds: float = 5.0) -> list[threading.Thread]:
    """Server and connection threads still alive once they have had time to end."""
    deadline = time.monotonic() + seconds
    while True:
        alive = [t for t in threading.enumerate()
                 if t.name.startswith("vlab-") or "process_request_thread" in t.name]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.02)


def _assert_lab_stopped_and_safe(started) -> None:
    assert len(started) == 1  # the run served its lab, once
    lab, ports = started[0]
    assert lab.is_safe()
    assert not any(lab.open_connections().values())
    assert all(_refused(port) for port in ports.values()), ports
    assert _lab_threads() == []


def test_a_run_stops_the_lab_it_started_and_makes_each_array_safe_once_at_close(
        tmp_path, monkeypatch, own_lab):
    started, safe_states = own_lab
    at_close: dict[int, int] = {}
    train = TrainingRun._train

    def train_then_note_the_counts(run, model, opt):
        result = train(run, model, opt)
        at_close.update(safe_states)
        return result

    monkeypatch.setattr(TrainingRun, "_train", train_then_note_the_counts)
    assert _train(training_lab_config(tmp_path), tmp_path / "run") == 0
    _assert_lab_stopped_and_safe(started)
    assert at_close  # the chip's array
    assert {array: safe_states[array] - n for array, n in at_close.items()} == dict.fromkeys(
        at_close, 1)


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_a_failing_run_stops_its_lab_and_leaves_every_array_safe(
        tmp_path, monkeypatch, own_lab, error):
    started, _ = own_lab
    closed: list[int] = []
    close = HardwareArray.close

    def recording_close(array):
        closed.append(id(array))
        close(array)

    def fail_after_step_one(run, step):
        if step == 1:
            raise error("injected")

    monkeypatch.setattr(HardwareArray, "close", recording_close)
    monkeypatch.setattr(TrainingRun, "after_step", fail_after_step_one)
    path = training_lab_config(tmp_path)
    if error is KeyboardInterrupt:
        assert _train(path, tmp_path / "run", limit_train=128) == 130
    else:
        with pytest.raises(RuntimeError, match="injected"):
            _train(path, tmp_path / "run", limit_train=128)
    _assert_lab_stopped_and_safe(started)
    assert len(closed) == 1 == len(set(closed))  # the chip, closed once
