"""A run killed with SIGKILL mid-epoch resumes from its last checkpoint and ends exactly where
an uninterrupted run ends; nothing written before the kill is lost or corrupted."""

import json
import signal
import subprocess
import sys
import textwrap

import pytest
import torch
import yaml

from dwlab.app.cli import main
from dwlab.records import read_events, read_table

# 8 batches per epoch, 3 epochs; checkpoints every 5 steps and at each epoch end.
TRAINING = {"width": 16, "epochs": 3, "limit_train": 256, "limit_test": 100,
            "burn_in_epochs": 1, "stationarity_z": None, "thinning_steps": 2,
            "max_samples": 3,
            "checkpoint_every_steps": 5}
KILL_AT_STEP = 13  # epoch 2, batch 5: mid-epoch; the last checkpoint was at step 10

# The child trains through the real CLI; the only change is a hook that SIGKILLs the
# process (no cleanup, no flushing) right after the chosen step.
CHILD = textwrap.dedent("""
    import os, signal, sys
    from dwlab.app.training import TrainingRun
    from dwlab.app.cli import main

    def after_step(self, step):
        if self.spec.scheme != "float_sgd" and step == int(sys.argv[1]):
            os.kill(os.getpid(), signal.SIGKILL)

    TrainingRun.after_step = after_step
    sys.exit(main(sys.argv[2:]))
""")

LABELS = ("push_pull_pair-5bit", "float_sgd")


@pytest.fixture
def resume_config(digits_twin_config):
    return digits_twin_config("resume", 11, update_bits=5, **TRAINING)


def test_killed_run_resumes_and_matches_an_uninterrupted_run(tmp_path, resume_config):
    config = tmp_path / "resume.yaml"
    config.write_text(yaml.safe_dump(resume_config))
    straight, killed = tmp_path / "straight", tmp_path / "killed"

    assert main(["train", "--config", str(config), "--run-dir", str(straight),
                 "--no-progress"]) == 0

    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(KILL_AT_STEP), "train", "--config", str(config),
         "--run-dir", str(killed), "--no-progress"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    device_dir = killed / LABELS[0]
    assert not (device_dir / "result.json").exists()
    ckpt = torch.load(device_dir / "checkpoint.pt", weights_only=True)
    assert ckpt["state"]["step"] == 10
    steps_before = read_table(device_dir / "steps.csv")
    assert [int(r["step"]) for r in steps_before] == list(range(1, KILL_AT_STEP + 1))
    written = {name: (device_dir / name).read_bytes() for name in ("steps.csv", "epochs.csv")}
    written["events"] = (killed / "events.jsonl").read_bytes()

    assert main(["train", "--resume", str(killed), "--no-progress"]) == 0

    # Nothing written before the kill was lost or changed: every file only grew.
    for name, before in written.items():
        path = killed / "events.jsonl" if name == "events" else device_dir / name
        assert path.read_bytes().startswith(before), name
    events = [e["event"] for e in read_events(killed / "events.jsonl")]
    assert events == ["start", "resume", "run_finished", "run_finished"]
    # Steps 11-13 were replayed from the checkpoint and recorded again as attempt 1.
    rows = read_table(device_dir / "steps.csv")
    replayed = [int(r["step"]) for r in rows if r["attempt"] == "1"]
    assert replayed == list(range(11, 25))
    # The replayed steps reproduce the killed attempt exactly (same batches, same noise).
    first = {int(r["step"]): r["loss"] for r in rows if r["attempt"] == "0"}
    assert all(first[s] == r["loss"] for r in rows if r["attempt"] == "1"
               for s in [int(r["step"])] if s in first)

    for label in LABELS:
        a = torch.load(straight / label / "model_final.pt", weights_only=True)
        b = torch.load(killed / label / "model_final.pt", weights_only=True)
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), f"{label}: {key} differs after resume"
        ra = json.loads((straight / label / "result.json").read_text())
        rb = json.loads((killed / label / "result.json").read_text())
        for key in ("accuracy", "nll", "ece", "pulses_total", "samples", "steps"):
            assert ra[key] == rb[key], f"{label}: {key}"
    assert json.loads((killed / LABELS[0] / "result.json").read_text())["resumed_attempts"] == 1


def test_resume_refuses_a_corrupt_checkpoint(tmp_path, capsys, resume_config):
    config = tmp_path / "resume.yaml"
    data = resume_config
    data["training"].update(epochs=1, limit_train=64)
    config.write_text(yaml.safe_dump(data))
    run = tmp_path / "run"
    assert main(["train", "--config", str(config), "--run-dir", str(run), "--no-progress",
                 "--no-float"]) == 0
    device_dir = run / LABELS[0]
    (device_dir / "result.json").unlink()
    (device_dir / "checkpoint.pt").write_bytes(b"torn")
    assert main(["train", "--resume", str(run), "--no-progress"]) == 1
    assert "unreadable checkpoint" in capsys.readouterr().err


def test_resume_of_a_folder_that_is_not_a_run(tmp_path, capsys):
    assert main(["train", "--resume", str(tmp_path), "--no-progress"]) == 1
    assert "not a dwlab run folder" in capsys.readouterr().err


@pytest.mark.parametrize("missing", ["config.yaml"])
def test_resume_names_a_missing_config(tmp_path, capsys, missing):
    (tmp_path / "metadata.json").write_text(json.dumps({"config_path": "x", "runs": []}))
    assert main(["train", "--resume", str(tmp_path), "--no-progress"]) == 1
    assert missing in capsys.readouterr().err
