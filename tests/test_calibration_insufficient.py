"""INSUFFICIENT DATA: records too small for the held-out tests to mean anything are
neither passed nor called a misfit, and ``dwlab calibrate`` says which data is short."""

from __future__ import annotations

import pytest
import yaml
from dwlab.protocols.script import Script, run_script, script_from_data
from dwlab.sim.calibration.verdict import INSUFFICIENT, MIN_CONDITIONS, MIN_DEVICES
from dwlab.sim.twin import TwinArray

from dwlab.app.cli import main
from dwlab.app.commands.calibrate import run_calibration


def small_script(amplitudes: list[float]) -> Script:
    """Every protocol calibration reads, with few repeats: 4 repeats hold out one step per
    device and condition (``--heldout-every 4``), too few for a per-device variance."""
    return script_from_data({
        "name": "too_small", "lab_config": "../default.yaml", "array": "main", "steps": [
            {"protocol": "device_map",
             "params": {"saturate_pulses": 250, "width_seconds": 2e-8, "n_averages": 16}},
            {"protocol": "read_noise", "params": {"reads": 20, "disturb_reads": 0}},
            {"protocol": "switching_statistics",
             "params": {"amplitudes_volts": amplitudes, "widths_seconds": [1e-8],
                        "repeats": 4, "n_averages": 4}}]})


@pytest.fixture(scope="module")
def small_records(tmp_path_factory):
    """A 2x2 twin (4 devices) measured at two amplitudes."""
    tmp = tmp_path_factory.mktemp("insufficient")
    records = run_script(small_script([0.7, 1.3]), TwinArray((2, 2), seed=3), tmp / "records",
                         progress=False, plots=False)
    return tmp, records.folder


def test_too_few_devices_and_conditions_give_insufficient_data(small_records):
    tmp, folder = small_records
    run = run_calibration([folder], tmp / "cal.yaml", report_parent=tmp / "reports",
                          sim_devices=32, n_bootstrap=20, progress=False)
    v = run.verdict
    print(v.reasons)
    assert v.verdict == INSUFFICIENT and not v.passed
    assert v.reasons == [
        f"4 devices calibrated; the tests need at least {MIN_DEVICES}",
        f"0 conditions with held-out steps of two or more per device; the tests need at "
        f"least {MIN_CONDITIONS} (lower --heldout-every or raise repeats)"]
    assert run.output is None and run.jump_table is None
    report = (run.report / "report.md").read_text().splitlines()
    assert report[0] == f"# Calibration verdict: {INSUFFICIENT}"


def test_cli_exits_1_on_insufficient_data_and_writes_only_when_told(small_records, capsys):
    tmp, folder = small_records
    out = tmp / "cli.yaml"
    args = ["calibrate", str(folder), "-o", str(out), "--report-dir", str(tmp / "cli"),
            "--sim-devices", "32", "--bootstrap", "20"]
    assert main(args) == 1 and not out.exists()
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"verdict: {INSUFFICIENT}"
    assert lines[1] == f"  - 4 devices calibrated; the tests need at least {MIN_DEVICES}"
    assert lines[2].startswith("  - 0 conditions with held-out steps")
    assert f"calibration: not written ({INSUFFICIENT}; --write-anyway writes it)" in lines
    assert main([*args, "--write-anyway"]) == 0
    saved = yaml.safe_load(out.read_text())["goodness_of_fit"]
    assert saved["verdict"] == INSUFFICIENT and saved["passed"] is False


def test_one_amplitude_is_refused_in_one_line(tmp_path, capsys):
    """A threshold cannot be fitted from one amplitude: a clear refusal, not a traceback."""
    records = run_script(small_script([1.0]), TwinArray((2, 2), seed=3), tmp_path / "records",
                         progress=False, plots=False)
    code = main(["calibrate", str(records.folder), "-o", str(tmp_path / "cal.yaml"),
                 "--report-dir", str(tmp_path / "reports")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1
    assert "switching_statistics: steps at 1 amplitude(s) (1 V)" in err[0]
    assert "two or more" in err[0]
