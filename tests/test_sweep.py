import importlib.util
import json
import statistics
from pathlib import Path

import pytest
import yaml
from test_data import write_cifar

from dwlab.app.cli import main
from dwlab.app.commands.sweep import sweep_specs
from dwlab.records import read_table

ROOT = Path(__file__).resolve().parents[1]

CONFIG = {
    "name": "tiny-sweep",
    "seed": 0,
    "arrays": {"main": {"backend": "twin",
                        "pulse": {"amplitude_volts": 1.0, "width_seconds": 1.0e-9}}},
    "controller": {"scheme": "push_pull_pair", "update_bits": 7, "lr": 0.5,
                   "temperature": 0.03, "precision": "fixed_range", "update_range": 0.1},
    "training": {"dataset": "digits", "model": "mlp", "width": 16, "epochs": 1,
                 "batch_size": 32, "limit_train": 128, "limit_test": 60,
                 "burn_in_epochs": 0.5, "stationarity_z": None, "thinning_steps": 1,
                 "max_samples": 2},
}


def test_sweep_specs_cover_references_and_precisions_per_seed():
    specs = sweep_specs("push_pull_pair", [6, 4], [0, 1])
    assert [s.label for s in specs[:4]] == [
        "float_sgd-s0", "float_sgld-s0", "push_pull_pair-4bit-s0", "push_pull_pair-6bit-s0"]
    assert len(specs) == 8 and {s.seed for s in specs[4:]} == {1}
    with pytest.raises(ValueError, match="device scheme"):
        sweep_specs("float_sgd", [4], [0])


def test_sweep_writes_table_csv_and_plot(tmp_path, capsys):
    config = tmp_path / "sweep.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    run = tmp_path / "sweep"
    assert main(["sweep", "--config", str(config), "--bits", "2", "6", "--seeds", "0", "1",
                 "--run-dir", str(run), "--no-progress"]) == 0
    rows = read_table(run / "sweep.csv")
    assert len(rows) == 8
    assert sorted({(r["scheme"], r["update_bits"]) for r in rows if r["scheme"] ==
                   "push_pull_pair"}) == [("push_pull_pair", "2"), ("push_pull_pair", "6")]
    # float runs have no update precision, and the table says none
    assert {r["update_bits"] for r in rows if r["scheme"].startswith("float")} == {""}
    # Pulses per weight follow the budget: a pair sends 2 (2^b - 1) per step, plus re-centring.
    steps = 128 // 32
    for r in rows:
        if r["scheme"] == "push_pull_pair":
            k = 2 ** int(r["update_bits"]) - 1
            assert float(r["pulses_per_weight"]) >= 2 * k * steps
    # The markdown row of 6-bit push-pull is the mean over both seeds' result.json files.
    accs = [json.loads((run / f"push_pull_pair-6bit-s{s}" / "result.json").read_text())
            ["accuracy"] for s in (0, 1)]
    sgd = [json.loads((run / f"float_sgd-s{s}" / "result.json").read_text())["accuracy"]
           for s in (0, 1)]
    table = (run / "sweep.md").read_text()
    line = next(li for li in table.splitlines() if li.startswith("| push_pull_pair | 6 |"))
    assert f"{100 * statistics.fmean(accs):.2f} ± {100 * statistics.stdev(accs):.2f}" in line
    gap = 100 * (statistics.fmean(accs) - statistics.fmean(sgd))
    assert f"{gap:+.2f}" in line
    assert "| float_sgld | - |" in table and table in capsys.readouterr().out
    assert (run / "accuracy_vs_bits.png").stat().st_size > 1000
    # Every precision runs at the config's update range: the same device noise per step,
    # so the same effective temperature (T_eff column) at 2 and 6 bits.
    assert "precision fixed range 0.1," in table
    t_eff = {bits: next(li for li in table.splitlines()
                        if li.startswith(f"| push_pull_pair | {bits} |")).split("|")[8]
             for bits in (2, 6)}
    assert float(t_eff[2]) > 2 * float(t_eff[6])


def load_benchmark():
    spec = importlib.util.spec_from_file_location(
        "precision_sweep", ROOT / "benchmarks" / "precision_sweep.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_precision_benchmark_runs_cifar10_from_files_in_the_real_format(tmp_path, capsys):
    write_cifar(tmp_path / "cifar", n=16)
    bench = load_benchmark()
    run = tmp_path / "bench"
    assert bench.main(["--dataset", "cifar10", "--data-dir", str(tmp_path / "cifar"),
                       "--quick", "--batch-size", "32", "--run-dir", str(run),
                       "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "resnet18 width 4 on cifar10" in out and "| push_pull_pair | 7 |" in out
    assert "| gradient_only | 7 |" in out and "precision fixed range 0.005" in out
    meta = json.loads((run / "bench" / "metadata.json").read_text())
    assert [r["label"] for r in meta["runs"]] == [
        "float_sgd-s0", "float_sgld-s0", "push_pull_pair-1bit-s0", "push_pull_pair-7bit-s0",
        "push_pull-7bit-s0", "gradient_only-7bit-s0"]
    result = json.loads((run / "bench" / "push_pull_pair-7bit-s0" / "result.json")
                        .read_text())
    # 80 training images in batches of 32: 2 steps of a 3-channel ResNet18 at width 4.
    assert result["steps"] == 2 and result["device_backed"]
    assert result["model_parameters"] > 40_000 and result["precision"]["resolution_bits"] > 0
    assert (run / "fixed_range" / "push_pull_pair-7bit-s0" / "result.json").exists()


def test_a_diverging_run_is_recorded_as_failed_and_the_sweep_goes_on(tmp_path):
    data = json.loads(json.dumps(CONFIG))
    data["controller"]["lr"] = 1.0e12  # float SGD blows up within a few steps
    config = tmp_path / "sweep.yaml"
    config.write_text(yaml.safe_dump(data))
    run = tmp_path / "sweep"
    assert main(["sweep", "--config", str(config), "--bits", "2", "--seeds", "0",
                 "--no-float-sgld", "--run-dir", str(run), "--no-progress"]) == 0
    result = json.loads((run / "float_sgd-s0" / "result.json").read_text())
    assert result["failed"].startswith("TrainingDiverged: float_sgd-s0: the training loss")
    assert "- failed: float_sgd-s0: TrainingDiverged" in (run / "sweep.md").read_text()


def test_a_single_run_shows_no_spread():
    from dwlab.app.commands.sweep import _accuracy

    assert _accuracy(0.8932, 0.0, 1) == "89.32"  # one seed: no "± 0.00"
    assert _accuracy(0.8932, 0.0057, 2) == "89.32 ± 0.57"
