"""A training run on hardware (the virtual lab) records what its arrays report and closes
their instrument connections, whether it finishes or an instrument fault stops it."""

from __future__ import annotations

import time

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
        assert _train(path, tmp_path / "run", limit_train=128) == 2
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
