"""How runs end: every training run (and sweep) says in its metadata how it stands, with
the error when it failed; Ctrl-C leaves a checkpoint, an ``interrupted`` event, safe
arrays and exit code 130; every command answers with the same exit codes."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

import pytest
import yaml

from dwlab.app.cli import build_parser, main
from dwlab.app.commands import ExitCode
from dwlab.records import read_events
from dwlab.records.status import error_text

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import campaign_runs as campaign  # noqa: E402


def _write(folder: Path, name: str, data: object) -> str:
    path = folder / name
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return str(path)


# -- exit codes -------------------------------------------------------------------------------

def failing_commands(tmp: Path) -> dict[str, list[str]]:
    """One failure path per command (each ends in a dwlab error or a failed check)."""
    bad = _write(tmp, "bad.yaml", {"name": "x", "seed": 0, "arrays": {}, "bogus": 1})
    no_lab = _write(tmp, "no_lab.yaml", campaign.CONFIG)
    return {
        "config check": ["config", "check", bad],
        "config schema": ["config", "schema", "-o", str(tmp / "missing" / "schema.json")],
        "train": ["train", "--resume", str(tmp)],
        "sweep": ["sweep", "--config", bad, "--no-progress"],
        "protocols list": ["protocols", "show", "no_such_protocol"],
        "protocols show": ["protocols", "show", "no_such_protocol"],
        "protocols run": ["protocols", "run", _write(tmp, "script.yaml", "steps: 3\n")],
        "calibrate": ["calibrate", str(tmp / "no_records"), "-o", str(tmp / "c.yaml")],
        "instruments identify": ["instruments", "identify", bad],
        "virtual-lab": ["virtual-lab", "--config", no_lab],
        "watch": ["watch", str(tmp / "no_run")],
    }


def test_every_command_fails_with_exit_code_1_and_one_error_line(tmp_path, capsys):
    commands = failing_commands(tmp_path)
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    registered = {f"{name} {leaf}".strip() for name, p in sub.choices.items()
                  for leaf in (next((a.choices for a in p._actions if a.choices
                                     and a.dest.endswith("_command")), None) or [""])}
    assert registered == set(commands)
    for name, argv in commands.items():
        assert main(argv) == ExitCode.FAILED, name
        err = capsys.readouterr().err
        assert err.startswith("error: ") or "FAIL" in err or name == "config check", name


def test_usage_errors_exit_2_and_the_help_lists_the_codes(capsys):
    for argv in ([], ["train"], ["protocols", "run"], ["config", "check", "--nope", "x"]):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == ExitCode.USAGE
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert all(f"  {int(c)}" in out for c in ExitCode) and "Ctrl-C" in out


def test_ctrl_c_in_any_command_exits_130(monkeypatch, capsys):
    from dwlab.app.commands import protocols

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(protocols, "run_list", interrupted)
    assert main(["protocols", "list"]) == ExitCode.INTERRUPTED
    assert capsys.readouterr().err.strip() == "interrupted"


def test_a_protocol_script_stopped_by_ctrl_c_exits_130(tmp_path, monkeypatch):
    from dwlab.sim.twin import TwinArray

    real = TwinArray.apply

    def apply(self, plan):
        signal.raise_signal(signal.SIGINT)  # the first Ctrl-C: stop after this step
        return real(self, plan)

    monkeypatch.setattr(TwinArray, "apply", apply)
    code = main(["protocols", "run", str(campaign.PROTOCOL_SCRIPT), "--runs-dir",
                 str(tmp_path), "--no-progress"])
    assert code == ExitCode.INTERRUPTED
    (run,) = tmp_path.iterdir()
    assert json.loads((run / "metadata.json").read_text())["status"] == "interrupted"


# -- status and error in the metadata ----------------------------------------------------------

def _train(tmp: Path, **training) -> tuple[int, Path]:
    config = json.loads(json.dumps(campaign.CONFIG))
    config["training"].update(training)
    run = tmp / "run"
    return campaign.dwlab("train", "--config", _write(tmp, "c.yaml", config),
                          "--run-dir", str(run)), run


def test_a_finished_run_says_completed_for_itself_and_each_training_run(tmp_path):
    code, run = _train(tmp_path, epochs=1)
    meta = json.loads((run / "metadata.json").read_text())
    assert code == 0
    assert meta["status"] == "completed" and meta["error"] is None and meta["ended"]
    assert meta["run_status"] == {label: "completed" for label in campaign.LABELS}


def test_a_failed_run_records_status_and_error(tmp_path, monkeypatch):
    from dwlab.app.training import loop

    def broken(*args, **kwargs):
        raise OSError("disk gone " + "x" * 10_000)

    monkeypatch.setattr(loop, "predict_probs", broken)  # the first evaluation fails
    code, run = _train(tmp_path, epochs=1)
    meta = json.loads((run / "metadata.json").read_text())
    assert code == ExitCode.FAILED
    assert meta["status"] == "failed" and meta["ended"]
    assert meta["error"].startswith("OSError: disk gone") and len(meta["error"]) < 2100
    assert meta["run_status"] == {campaign.LABELS[0]: "failed"}
    assert read_events(run / "events.jsonl")[-1]["event"] == "failed"


def test_a_sweep_records_its_status_and_each_run(tmp_path):
    config = _write(tmp_path, "c.yaml", campaign.CONFIG)
    code = campaign.dwlab("sweep", "--config", config, "--bits", "2", "--seeds", "0",
                          "--no-float-sgld", "--epochs", "1", "--run-dir",
                          str(tmp_path / "sweep"))
    meta = json.loads((tmp_path / "sweep" / "metadata.json").read_text())
    assert code == 0 and meta["status"] == "completed"
    assert meta["run_status"] == {"float_sgd-s0": "completed",
                                  "push_pull_pair-2bit-s0": "completed"}


def test_recorded_errors_are_bounded():
    short = error_text(ValueError("bad"))
    long = error_text(RuntimeError("e" * 20_000_000))
    assert short == "ValueError: bad"
    assert long.startswith("RuntimeError: eee") and len(long) < 2100
    assert long.endswith("more characters]")


# -- Ctrl-C during training --------------------------------------------------------------------

@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    return campaign.Lab(tmp_path_factory.mktemp("ctrl_c"))


@pytest.mark.parametrize("point, call, presses", [
    ("after step", 5, 1),        # mid-epoch, two steps after the last checkpoint
    ("twin apply", 3, 1),        # inside a device update: the step finishes first
    ("checkpoint write", 2, 2),  # a second Ctrl-C inside a checkpoint write
    ("hardware apply", 25, 1),   # mid-route on the virtual lab's instruments
    ("hardware apply", 25, 2),   # ... twice: the apply stops at once
])
def test_ctrl_c_checkpoints_records_leaves_arrays_safe_and_resumes(lab, point, call, presses):
    """Exit 130, an ``interrupted`` event and status, a checkpoint at the step reached
    (one Ctrl-C) or the last one written (two), every array closed (virtual lab: outputs
    off, crosspoints open, every delivered pulse recorded); twin runs resume bit-exact."""
    assert campaign.ctrl_c(lab, point, call, presses) == ("handled", "checkpoint, safe, 130")

