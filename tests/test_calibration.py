"""Calibration of the twin from protocol records: the round trip on a TwinArray, the
calibration file and its use from a lab config, and clear errors."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
from dwlab.protocols.script import load_script, run_script, script_from_data
from dwlab.sim.calibration import FITTED, Conditions, fit_device
from dwlab.sim.calibration_file import load_calibration_params
from dwlab.sim.twin import PRESETS, TwinArray

from dwlab.app.backends import build_array
from dwlab.app.cli import main
from dwlab.app.commands.calibrate import run_calibration
from dwlab.config import load_config
from dwlab.core.errors import ConfigError

# Parameters the calibration never sees: they differ from every preset and default.
TRUE = PRESETS["continuous_dw"].replace(
    mu_push=0.013, mu_pull=0.008, sigma_push=0.005, sigma_pull=0.0035, v_th_volts=0.55,
    g_p_siemens=6e-4, g_ap_siemens=2e-4, read_noise_siemens=8e-7, mu_spread=0.12,
    sigma_spread=0.08, v_th_spread=0.06, g_spread=0.04,
)

CALIBRATION_SCRIPT = load_script(
    Path(__file__).resolve().parents[1] / "lab_configs" / "protocols" / "calibration.yaml")


def within(value: float, true: float, stderr: float) -> bool:
    """The acceptance rule: within 10 % of the truth, or within 2 reported standard errors."""
    return abs(value - true) <= max(0.10 * abs(true), 2.0 * stderr)


def scrub_truth(folder: Path) -> None:
    """Remove every trace of the true parameters from the records (the twin's snapshot and
    description carry them), so the calibration provably works from measurements alone."""
    for meta_path in folder.rglob("metadata.json"):
        meta = json.loads(meta_path.read_text())
        array = meta.get("array")
        if array:
            for key in ("snapshot_before", "snapshot_after"):
                array[key] = "scrubbed"
            for key in ("conductance_min_siemens", "conductance_max_siemens", "step_siemens",
                        "step_sigma_siemens"):
                array["describe"][key] = None
        meta_path.write_text(json.dumps(meta))


@pytest.fixture(scope="module")
def round_trip(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("round_trip")
    twin = TwinArray((8, 8), TRUE, seed=3)
    result = run_script(CALIBRATION_SCRIPT, twin, tmp / "runs", progress=False)
    assert result.status == "completed"
    scrub_truth(result.folder)
    run = run_calibration([result.folder], tmp / "calibrations" / "twin8x8.yaml",
                          report_parent=tmp / "reports", sim_devices=128, n_bootstrap=200,
                          progress=False)
    return tmp, run


def test_round_trip_recovers_every_parameter(round_trip):
    _, run = round_trip
    cal = run.calibration
    misses = [(name, getattr(cal.params, name), getattr(TRUE, name), cal.stderr[name])
              for name in FITTED
              if not within(getattr(cal.params, name), getattr(TRUE, name), cal.stderr[name])]
    assert not misses
    # Uncertainties are real numbers, not placeholders.
    assert all(0 < cal.stderr[name] < abs(getattr(cal.params, name)) for name in FITTED)


def test_twin_from_calibration_reproduces_heldout_steps(round_trip):
    _, run = round_trip
    assert len(run.verdict.checks) == 16  # 4 amplitudes x 2 widths x 2 polarities
    assert run.verdict.verdict == "PASS" and run.output is not None
    assert all(c.passed for c in run.verdict.checks) and not run.verdict.flags


def test_goodness_of_fit_detects_a_wrong_twin(round_trip):
    """The held-out tests have teeth: steps simulated with a 30 % larger mu are rejected."""
    from dwlab.sim.calibration import compare_steps

    from dwlab.app.commands.calibrate import simulate_switching

    tmp, run = round_trip
    cal = run.calibration
    wrong = cal.params.replace(mu_push=cal.params.mu_push * 1.3)
    twin = TwinArray((128,), wrong, seed=11)
    simulated = simulate_switching(twin, cal, tmp / "wrong", 11, 4, progress=False)
    checks = {c.key: c for c in compare_steps(cal.heldout, simulated, alpha=0.05)}
    worst = checks[(1.3, 2e-8, 1)]
    assert not worst.passed and worst.p["mean"] < 1e-6


def test_report_has_tables_and_overlay_plots(round_trip):
    _, run = round_trip
    names = {p.name for p in run.report.iterdir()}
    for name in ("parameters.csv", "goodness_of_fit.csv", "report.md", "residuals.png",
                 "overlay_step_distributions.png", "overlay_step_moments.png",
                 "device_estimates.png"):
        assert name in names
    assert (run.report / "overlay_step_distributions.png").stat().st_size > 20_000
    lines = (run.report / "report.md").read_text().splitlines()
    assert lines[0] == "# Calibration verdict: PASS"
    assert lines[2].startswith("- all 16 conditions agree")


def test_lab_config_builds_a_twin_from_the_calibration_file(round_trip):
    tmp, run = round_trip
    config = tmp / "calibrated.yaml"
    config.write_text(textwrap.dedent(f"""\
        name: calibrated
        arrays:
          main:
            backend: twin
            shape: [4, 4]
            twin:
              preset: continuous_dw
              calibration: {run.output.relative_to(tmp)}
        """))
    twin = build_array(load_config(config))
    for name in FITTED:
        assert getattr(twin.params, name) == pytest.approx(getattr(run.calibration.params, name))
    assert twin.params.nominal_amplitude_volts == run.calibration.reference[0]


def test_calibration_file_errors_name_file_and_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(textwrap.dedent("""\
        kind: dwlab-twin-calibration
        version: 1
        reference_pulse: {amplitude_volts: 1.0, width_seconds: 1.0e-8}
        params:
          mu_push: {value: 0.01, stderr: 0.001}
          mu_pusch: {value: 0.01}
        """))
    with pytest.raises(ConfigError) as info:
        load_calibration_params(bad, PRESETS["continuous_dw"])
    assert str(bad) in str(info.value) and "mu_pusch" in str(info.value)
    bad.write_text("kind: something-else\nversion: 1\nparams: {}\n"
                   "reference_pulse: {amplitude_volts: 1.0, width_seconds: 1.0e-8}\n")
    with pytest.raises(ConfigError, match="kind must be"):
        load_calibration_params(bad, PRESETS["continuous_dw"])
    bad.write_text("kind: dwlab-twin-calibration\nversion: 1\nparams: {}\n")
    with pytest.raises(ConfigError, match="reference_pulse"):
        load_calibration_params(bad, PRESETS["continuous_dw"])


def test_calibrate_without_needed_records_is_a_clear_error(tmp_path, capsys):
    folder = tmp_path / "records"
    only_read_noise = script_from_data({"name": "rn", "lab_config": "unused.yaml",
                                        "steps": [{"protocol": "read_noise"}]})
    run_script(only_read_noise, TwinArray((2, 2), seed=0), folder, progress=False)
    code = main(["calibrate", str(folder), "-o", str(tmp_path / "c.yaml"), "--report-dir",
                 str(tmp_path / "reports")])
    assert code == 1
    err = capsys.readouterr().err
    assert "device_map" in err and err.startswith("error:")


def test_fit_device_recovers_exact_noise_free_law():
    """The per-device fit inverts the drive law of sim/physics/drive.py exactly."""
    a0, w0, v_th, k_push, k_pull = 1.0, 1e-8, 0.47, 3e-6, 2e-6
    amps = np.array([0.3, 0.6, 0.9, 1.2, 1.5] * 2 * 2)
    widths = np.repeat([1e-8, 3e-8], 5).tolist() * 2
    pol = np.repeat([1, -1], 10)
    drive = np.clip(amps - v_th, 0, None) * np.array(widths) / w0
    mean = np.where(pol > 0, k_push, k_pull) * drive
    sigma_ref = np.where(pol > 0, 1e-6, 0.5e-6)
    var = sigma_ref**2 * drive / (a0 - v_th) + 1e-14
    c = Conditions(amps, np.array(widths), pol.astype(float), np.full(20, 50.0), mean, var,
                   np.full(20, 1e-14))
    fit = fit_device(c, a0, w0)
    assert fit.v_th == pytest.approx(v_th, abs=1e-3)
    assert fit.mu[1] == pytest.approx(k_push * (a0 - v_th), rel=1e-2)
    assert fit.mu[-1] == pytest.approx(k_pull * (a0 - v_th), rel=1e-2)
    assert fit.sigma[1] == pytest.approx(1e-6, rel=1e-2)
    assert fit.sigma[-1] == pytest.approx(0.5e-6, rel=1e-2)


def test_device_map_flags_walls_that_never_reached_the_ends(tmp_path):
    from dwlab.protocols.base import run_protocol
    from dwlab.protocols.registry import PROTOCOLS
    from dwlab.sim.calibration import calibrate, load_records

    from dwlab.core.errors import DatasetError
    from dwlab.records import read_table

    twin = TwinArray((2, 2), seed=0)
    run_protocol(PROTOCOLS["device_map"](saturate_pulses=250, step_pulses=4), twin,
                 tmp_path / "ok", progress=False)
    assert {r["saturated"] for r in read_table(tmp_path / "ok" / "devices.csv")} == {"1"}
    # 5 pulses of 0.01 track per burst never reach an end from mid-track.
    run_protocol(PROTOCOLS["device_map"](saturate_pulses=5, max_bursts=2, step_pulses=4),
                 TwinArray((2, 2), seed=0), tmp_path / "short", progress=False)
    assert {r["saturated"] for r in read_table(tmp_path / "short" / "devices.csv")} == {"0"}
    with pytest.raises(DatasetError, match="no device reached both track ends"):
        calibrate(load_records([tmp_path / "short"]))
