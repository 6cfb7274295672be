"""The live view and the logs of a training run: TensorBoard events read back against the
CSV records, one log line per epoch when the output is not a terminal, --quiet."""

import subprocess
import sys

import pytest
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from dwlab.app.cli import main
from dwlab.records import read_table

TRAINING = {"width": 16, "epochs": 2, "limit_train": 256, "limit_test": 64,
            "burn_in_epochs": 1, "thinning_steps": 2, "max_samples": 3}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, digits_twin_config):
    """One small training run (push-pull and float SGD) and what it printed."""
    tmp = tmp_path_factory.mktemp("live")
    config = tmp / "live.yaml"
    config.write_text(yaml.safe_dump(digits_twin_config("live", 0, update_bits=4, **TRAINING)))
    # a subprocess: its stderr is a pipe, as when a run's output goes to a log file
    proc = subprocess.run([sys.executable, "-m", "dwlab.app.cli", "train", "--config",
                           str(config), "--run-dir", str(tmp / "run")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return tmp / "run", proc


def events(folder):
    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0,
                                                       "histograms": 0})
    acc.Reload()
    return acc


def test_events_hold_the_records_scalars_maps_and_histograms(trained):
    run, _ = trained
    device = events(run / "push_pull_pair-4bit")
    tags = device.Tags()
    epochs = read_table(run / "push_pull_pair-4bit" / "epochs.csv")
    steps = read_table(run / "push_pull_pair-4bit" / "steps.csv")
    # every numeric column of the records is a scalar, with the recorded values
    for column in ("test_accuracy", "test_nll", "bma_accuracy", "samples", "pulses_total"):
        recorded = [float(r[column]) for r in epochs if r[column] != ""]
        logged = [e.value for e in device.Scalars(f"epoch/{column}")]
        assert logged == pytest.approx(recorded, rel=1e-6), column
    for column in ("loss", "pulses_sent", "effective_temperature", "saturated_devices"):
        logged = {e.step: e.value for e in device.Scalars(f"train/{column}")}
        assert logged == pytest.approx({int(r["step"]): float(r[column]) for r in steps},
                                       rel=1e-5), column
    assert "train/attempt" not in tags["scalars"]  # where a row is, not what it measured
    # crossbar maps of every weight tensor and the pooled histogram, per epoch
    maps = [t for t in tags["images"] if t.startswith("crossbar/")]
    assert sorted(maps) == ["crossbar/net.1.weight", "crossbar/net.3.weight",
                            "crossbar/net.5.weight"]
    image = device.Images("crossbar/net.1.weight")
    assert len(image) == 2 and image[-1].width > 200 and image[-1].height > 100
    assert "conductance/histograms" in tags["images"]
    hist = device.Histograms("conductance/net.1.weight")
    assert [h.step for h in hist] == [int(r["step"]) for r in epochs]
    # the first layer, 16 outputs x 64 pixels, as differential pairs: every device counted
    assert hist[-1].histogram_value.num == 2 * 16 * 64
    change = device.Histograms("conductance_change_per_epoch/net.1.weight")
    assert len(change) == 1 and change[0].histogram_value.max > 0  # the devices moved

    floating = events(run / "float_sgd").Tags()
    assert "epoch/test_accuracy" in floating["scalars"] and not floating["images"]


def test_a_piped_log_has_one_line_per_epoch_and_no_bar(trained):
    _, proc = trained
    assert "\r" not in proc.stderr and "it/s" not in proc.stderr
    lines = proc.stderr.splitlines()
    for label in ("push_pull_pair-4bit", "float_sgd"):
        assert [line.split(" (")[0] for line in lines if line.startswith(f"{label} epoch")] \
            == [f"{label} epoch 1/2", f"{label} epoch 2/2"]
    # samples start after the first epoch's burn-in: the second line has a model average
    assert "model average" in next(line for line in lines
                                   if line.startswith("push_pull_pair-4bit epoch 2/2"))


def test_quiet_keeps_warnings_only_and_burn_in_past_the_end_warns(tmp_path, capsys,
                                                                  digits_twin_config):
    config = tmp_path / "burn.yaml"
    training = {**TRAINING, "epochs": 1, "burn_in_epochs": 2}
    config.write_text(yaml.safe_dump(digits_twin_config("burn", 0, update_bits=4, **training)))
    assert main(["train", "--config", str(config), "--run-dir", str(tmp_path / "run"),
                 "--no-float", "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "epoch 1/1" not in err
    assert "the burn-in (16 steps) is as long as the training (8 steps)" in err


def test_a_protocol_writes_its_steps_into_the_live_view(tmp_path):
    from dwlab.protocols import PROTOCOLS, run_protocol
    from dwlab.sim.twin import PRESETS, TwinArray

    twin = TwinArray((4, 4), PRESETS["continuous_dw"], seed=1)
    result = run_protocol(PROTOCOLS["read_noise"](reads=12, disturb_reads=0), twin,
                          tmp_path / "read_noise", progress=False)
    view = events(result.folder)
    tags = view.Tags()
    reads = read_table(result.folder / "reads.csv")
    # one point per protocol step: the mean over the devices of what that step recorded
    logged = [e.value for e in view.Scalars("reads/conductance_siemens")]
    assert len(logged) == 12
    first = [float(r["conductance_siemens"]) for r in reads if r["read"] == "0"]
    assert logged[0] == pytest.approx(sum(first) / len(first), rel=1e-6)
    assert [e.value for e in view.Scalars("run/device_reads")][-1] == result.device_reads
    assert view.Histograms("conductance")[-1].histogram_value.num == 16
    assert [i.step for i in view.Images("crossbar/conductance")] == [10, 12]
    assert "reads/device" not in tags["scalars"]  # an address, not a measurement


def test_figures_are_redrawn_first_when_forced_and_then_at_most_once_per_interval(monkeypatch):
    from dwlab.records import live

    clock = iter([0.0, 5.0, 19.9, 20.5, 21.0, 21.5])
    monkeypatch.setattr(live.time, "monotonic", lambda: next(clock))
    pacer = live.Pacer(seconds=20.0)
    # t = 0 first, 5 too soon, 19.9 too soon, 20.5 due, 21.0 forced, 21.5 too soon
    assert [pacer.due(), pacer.due(), pacer.due(), pacer.due(), pacer.due(force=True),
            pacer.due()] == [True, False, False, True, True, False]
