import json
import math

import pytest
import torch
import yaml

from dwlab.app.cli import main
from dwlab.app.training import PosteriorStore, classification_metrics, read_curves
from dwlab.app.training import loop as loop_module
from dwlab.config import LabConfig, from_data, load_config
from dwlab.core.errors import ConfigError
from dwlab.records import read_events, read_table

TINY_TRAINING = {"width": 32, "epochs": 3, "limit_train": 512, "limit_test": 120,
                 "burn_in_epochs": 1, "stationarity_z": None, "thinning_steps": 3,
                 "max_samples": 4,
                 "checkpoint_every_steps": 5}


@pytest.fixture(scope="module")
def tiny_config(digits_twin_config):
    """A fresh dict per call."""
    return lambda: digits_twin_config("tiny", 3, update_bits=5, **TINY_TRAINING)


def write_config(tmp_path, data, name="tiny.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def test_metrics_on_a_hand_worked_example():
    probs = torch.tensor([[0.8, 0.2], [0.8, 0.2], [0.3, 0.7], [0.5, 0.5]])
    labels = torch.tensor([0, 1, 1, 0])
    m = classification_metrics(probs, labels, bins=10)
    # argmax: 0, 0, 1, 0 (ties go to the first class) -> 3 of 4 correct.
    assert m["accuracy"] == pytest.approx(0.75)
    assert m["nll"] == pytest.approx(-(math.log(0.8) + math.log(0.2) + math.log(0.7)
                                       + math.log(0.5)) / 4)
    # Bins: {0.8, 0.8} acc 0.5 -> gap 0.3; {0.7} acc 1 -> 0.3; {0.5} acc 1 -> 0.5.
    assert m["ece"] == pytest.approx(0.5 * 0.3 + 0.25 * 0.3 + 0.25 * 0.5)
    ent = lambda p: -(p * math.log(p) + (1 - p) * math.log(1 - p))  # noqa: E731
    assert m["entropy"] == pytest.approx((2 * ent(0.8) + ent(0.7) + ent(0.5)) / 4)


def test_perfectly_calibrated_predictions_have_zero_ece():
    probs = torch.tensor([[1.0, 0.0]] * 5 + [[0.0, 1.0]] * 5)
    labels = torch.tensor([0] * 5 + [1] * 5)
    m = classification_metrics(probs, labels)
    assert m["accuracy"] == 1.0 and m["ece"] == pytest.approx(0.0)


def test_posterior_store_averages_samples_and_restores_the_weights():
    model = torch.nn.Linear(2, 2, bias=False)
    store = PosteriorStore(max_samples=2)
    for step, value in enumerate([1.0, 2.0, 3.0]):
        with torch.no_grad():
            model.weight.fill_(value)
        store.add(step, model, {"w": {"position": torch.full((2,), value)}})
    assert [s["step"] for s in store.samples] == [1, 2]  # the oldest was dropped
    with torch.no_grad():
        model.weight.fill_(7.0)
    avg = store.average_probs(model, lambda: model.weight.detach().clone())
    assert torch.allclose(avg, torch.full((2, 2), 2.5))
    assert torch.equal(model.weight, torch.full((2, 2), 7.0))
    restored = PosteriorStore(1)
    restored.load_state_dict(store.state_dict())
    assert len(restored) == 2 and restored.samples[1]["devices"]["w"]["position"][0] == 3.0


def test_training_config_is_validated(tmp_path, tiny_config):
    bad = tiny_config()
    bad["training"]["bf16"] = "yes"
    with pytest.raises(ConfigError, match="training.bf16"):
        load_config(write_config(tmp_path, bad))
    bad = tiny_config()
    bad["training"]["epochz"] = 3
    with pytest.raises(ConfigError, match="training.epochz"):
        load_config(write_config(tmp_path, bad))
    bad = tiny_config()
    bad["training"]["model"] = "vgg"
    with pytest.raises(ConfigError, match="training.model"):
        load_config(write_config(tmp_path, bad))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_config):
    tmp = tmp_path_factory.mktemp("train")
    config = write_config(tmp, tiny_config())
    run_dir = tmp / "run"
    rc = main(["train", "--config", str(config), "--run-dir", str(run_dir), "--no-progress"])
    assert rc == 0
    return run_dir


def test_train_writes_a_complete_run_folder(tiny_run, capsys):
    run = tiny_run
    config = from_data(LabConfig, yaml.safe_load((run / "config.yaml").read_text()))
    assert config.training.width == 32 and config.controller.update_bits == 5
    meta = json.loads((run / "metadata.json").read_text())
    assert meta["kind"] == "train" and meta["seed"] == 3
    assert meta["started"] and meta["ended"] and "torch" in meta["versions"]
    assert "git_revision" in meta
    assert [r["label"] for r in meta["runs"]] == ["push_pull_pair-5bit", "float_sgd"]
    events = [e["event"] for e in read_events(run / "events.jsonl")]
    assert events == ["start", "run_finished", "run_finished"]
    assert (run / "learning_curves.png").stat().st_size > 1000

    device_run = run / "push_pull_pair-5bit"
    steps = read_table(device_run / "steps.csv")
    assert [int(r["step"]) for r in steps] == list(range(1, 49))  # 16 batches x 3 epochs
    # Per-step device statistics: a 5-bit pair budget sends 2 * 31 pulses per weight.
    weights = 32 * 64 + 32 * 32 + 10 * 32
    assert all(int(r["pulses_sent"]) >= 62 * weights for r in steps)
    assert all(float(r["effective_temperature"]) > 0 for r in steps)
    epochs = read_table(device_run / "epochs.csv")
    assert [int(r["epoch"]) for r in epochs] == [1, 2, 3]
    result = json.loads((device_run / "result.json").read_text())
    assert result["device_backed"] and result["mapped_weights"] == weights
    assert result["samples"] == 4 and result["prediction"] == "bma"
    assert result["pulses_per_weight"] == pytest.approx(result["pulses_total"] / weights)
    # Trained, not guessing: ten classes, 120 test digits.
    assert result["accuracy"] > 0.6
    assert (device_run / "conductance.png").stat().st_size > 1000

    float_result = json.loads((run / "float_sgd" / "result.json").read_text())
    assert not float_result["device_backed"] and float_result["samples"] == 0
    assert float_result["accuracy"] > 0.6


def test_tensor_temperatures_add_up_to_the_device_noise_of_the_last_step(tiny_run):
    """Each tensor's temperature, weighted by its weights, is the device part of the
    T_eff the last step logged (its share without the rounding of counts)."""
    device_run = tiny_run / "push_pull_pair-5bit"
    result = json.loads((device_run / "result.json").read_text())
    temperatures = result["tensor_temperatures"]
    sizes = {"net.1.weight": 32 * 64, "net.3.weight": 32 * 32, "net.5.weight": 10 * 32}
    assert list(temperatures) == list(sizes)
    # The tensors are mapped by their own initial spread, so they run at different
    # temperatures.
    assert max(temperatures.values()) > 1.5 * min(temperatures.values())
    last = read_table(device_run / "steps.csv")[-1]
    device_part = float(last["effective_temperature"]) * (1 - float(last["rounding_share"]))
    mean = sum(sizes[k] * t for k, t in temperatures.items()) / sum(sizes.values())
    assert mean == pytest.approx(device_part, rel=1e-4)


def test_bf16_autocast_trains_on_cpu_and_update_range_is_overridden(
        tmp_path, tiny_config, capsys, monkeypatch):
    # Pretend this CPU emulates bf16 (as an AVX2 one does): the run says so and goes on.
    monkeypatch.setattr(loop_module, "bf16_emulated", lambda device: True)
    config = write_config(tmp_path, tiny_config())
    assert main(["train", "--config", str(config), "--update-range", "2", "--no-float",
                 "--no-progress"]) != 0
    err = capsys.readouterr().err
    assert "'controller.update_range'" in err and "update_range must lie in (0, 1]" in err
    run_dir = tmp_path / "run"
    assert main(["train", "--config", str(config), "--run-dir", str(run_dir), "--bf16",
                 "--update-range", "0.05", "--no-float", "--no-progress"]) == 0
    resolved = from_data(LabConfig, yaml.safe_load((run_dir / "config.yaml").read_text()))
    assert resolved.training.bf16 and resolved.controller.update_range == 0.05
    result = json.loads((run_dir / "push_pull_pair-5bit" / "result.json").read_text())
    assert result["accuracy"] > 0.6
    assert "bf16 autocast on a CPU without native bf16" in capsys.readouterr().err


def test_posterior_samples_hold_device_states(tiny_run):
    ckpt = torch.load(tiny_run / "push_pull_pair-5bit" / "checkpoint.pt", weights_only=True)
    samples = ckpt["samples"]["samples"]
    # Burn-in of one epoch (16 steps), then every third step; the last four are kept.
    assert [s["step"] for s in samples] == [37, 40, 43, 46]
    first = samples[0]
    assert set(first["devices"]) == {"net.1.weight", "net.3.weight", "net.5.weight"}
    pos = first["devices"]["net.1.weight"]["position"]
    assert pos.shape == (2, 32, 64) and 0 <= float(pos.min()) and float(pos.max()) <= 1
    # The samples differ: the chain moves between them.
    assert not torch.equal(samples[0]["weights"]["net.1.weight"],
                           samples[-1]["weights"]["net.1.weight"])


def test_learning_curves_and_report(tiny_run):
    curves = read_curves(tiny_run / "float_sgd")
    assert curves["step"] == list(range(1, 49)) and curves["epoch"] == [1, 2, 3]
    assert curves["loss"][-1] < curves["loss"][0]
