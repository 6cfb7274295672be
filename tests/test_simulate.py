"""Falling back to the twin without editing the config (``--simulate``), and rehearsing a
bench config through a virtual copy of its instruments (``dwlab virtual-lab``)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from dwlab.app.cli import main
from dwlab.app.simulate import simulated, stand_in_twin, with_virtual_copy
from dwlab.config import load_config

CONFIGS = Path(__file__).resolve().parents[1] / "lab_configs"
BENCH = CONFIGS / "bench_example.yaml"
SCRIPT = CONFIGS / "protocols" / "bench_quick.yaml"


def test_simulate_replaces_every_hardware_array_by_a_twin_matched_to_its_figures():
    loaded, notes = simulated(load_config(BENCH))
    chip = loaded.config.arrays["chip"]
    assert chip.backend == "twin" and chip.hardware is None and chip.shape == [8, 8]
    assert loaded.config.virtual_lab is None and len(notes) == 1 and "'chip'" in notes[0]
    from dwlab.app.backends import build_array

    twin = build_array(loaded, "chip")
    info = twin.describe()
    declared = load_config(BENCH).config.arrays["chip"].hardware.devices
    assert info.step_siemens == pytest.approx(declared.step_siemens, rel=1e-6)
    assert info.step_sigma_siemens == pytest.approx(declared.step_sigma_siemens, rel=1e-6)
    assert (info.conductance_min_siemens, info.conductance_max_siemens) == pytest.approx(
        (declared.conductance_min_siemens, declared.conductance_max_siemens))


def test_a_calibration_file_named_by_the_arrays_twin_section_wins(tmp_path):
    calibrations = sorted((CONFIGS / "calibrations").glob("*.yaml"))
    assert calibrations
    data = yaml.safe_load(BENCH.read_text())
    (tmp_path / "cal.yaml").write_text(calibrations[0].read_text())
    data["arrays"]["chip"]["twin"] = {"calibration": "cal.yaml"}
    path = tmp_path / "bench.yaml"
    path.write_text(yaml.safe_dump(data))
    twin, how = stand_in_twin(load_config(path).config.arrays["chip"])
    assert twin["calibration"] == "cal.yaml" and "calibration file cal.yaml" in how


def test_simulate_on_a_protocol_script_of_the_bench_config(tmp_path, capsys):
    assert main(["protocols", "run", str(SCRIPT), "--simulate", "--no-progress",
                 "--runs-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "simulating array 'chip'" in out and "completed" in out
    (folder,) = tmp_path.iterdir()
    metadata = json.loads((folder / "metadata.json").read_text())
    assert metadata["simulated"] and metadata["lab_config"]["arrays"]["chip"]["backend"] == "twin"


def test_simulate_goes_with_config_not_resume(tmp_path, capsys):
    assert main(["train", "--resume", str(tmp_path), "--simulate"]) == 2
    assert "--simulate goes with --config" in capsys.readouterr().err


def _interruptible() -> None:
    """In the lab's process before it starts: Ctrl-C handled as from a terminal, even when
    the tests run in the background (where a shell starts them with SIGINT ignored)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_rehearsal_runs_a_protocol_through_scpi_on_a_virtual_copy_of_the_bench(
        tmp_path, capsys):
    """The bench config's own instruments (81110A, 2400, 707B) served on loopback by
    ``dwlab virtual-lab`` in its own process, their addresses rewritten, and the protocol
    script run end to end through them; Ctrl-C stops the lab."""
    client = tmp_path / "rehearsal.yaml"
    serving = subprocess.Popen(
        [sys.executable, "-m", "dwlab.app.cli", "virtual-lab", "--config", str(BENCH),
         "--write-config", str(client)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, preexec_fn=_interruptible)
    try:
        deadline = time.monotonic() + 60
        while not client.exists():
            assert time.monotonic() < deadline and serving.poll() is None
            time.sleep(0.05)
        rewritten = load_config(client).config.arrays["chip"].hardware.instruments
        assert all(getattr(rewritten, r).resource.startswith("TCPIP::127.0.0.1::")
                   for r in ("pulser", "meter", "router"))
        assert main(["instruments", "identify", "--config", str(client)]) == 0
        assert main(["protocols", "run", str(SCRIPT), "--config", str(client),
                     "--no-progress", "--runs-dir", str(tmp_path / "runs")]) == 0
    finally:
        serving.send_signal(signal.SIGINT)
        served, _ = serving.communicate(timeout=30)
    assert serving.returncode == 130
    assert "  pulser GPIB0::10::INSTR  ->  TCPIP::127.0.0.1::" in served
    assert "MODEL 2400" in served and "81110A" in served and "Model 707B" in served
    out = capsys.readouterr().out
    assert out.count("ok   chip.") == 3 and "completed" in out
    (folder,) = (tmp_path / "runs").iterdir()
    metadata = json.loads((folder / "metadata.json").read_text())
    assert metadata["lab_config"]["arrays"]["chip"]["backend"] == "hardware"


def test_the_virtual_copy_of_a_config_with_several_hardware_arrays_needs_one_named(tmp_path):
    data = yaml.safe_load(BENCH.read_text())
    data["arrays"]["chip2"] = data["arrays"]["chip"]
    path = tmp_path / "two.yaml"
    path.write_text(yaml.safe_dump(data))
    from dwlab.core.errors import ConfigError

    with pytest.raises(ConfigError, match="--array"):
        with_virtual_copy(load_config(path))
    assert with_virtual_copy(load_config(path), "chip2").config.virtual_lab.array == "chip2"


def test_train_on_the_bench_config_with_simulate_says_so_in_output_and_records(
        tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--config", str(BENCH), "--simulate", "--epochs", "1",
                 "--limit-train", "64", "--limit-test", "32", "--no-float", "--no-progress",
                 "--run-dir", str(run)]) == 0
    assert "simulating array 'chip'" in capsys.readouterr().out
    metadata = json.loads((run / "metadata.json").read_text())
    assert "simulating array 'chip'" in metadata["simulated"][0]
    recorded = yaml.safe_load((run / "config.yaml").read_text())
    assert recorded["arrays"]["chip"]["backend"] == "twin"
    assert yaml.safe_load(BENCH.read_text())["arrays"]["chip"]["backend"] == "hardware"
