from pathlib import Path

from dwlab.app.cli import main

CONFIG_DIR = Path(__file__).resolve().parents[1] / "lab_configs"


def test_config_check_accepts_checked_in_files(capsys):
    files = [str(p) for p in sorted(CONFIG_DIR.glob("*.yaml"))]
    assert main(["config", "check", *files]) == 0
    assert capsys.readouterr().out.count("ok") == len(files)


def test_config_check_reports_bad_file(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("seed: 1\nbogus: 2\n")
    assert main(["config", "check", str(bad)]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "bogus" in out and str(bad) in out


def test_config_check_names_an_unknown_twin_preset(tmp_path, capsys):
    bad = tmp_path / "preset.yaml"
    bad.write_text("arrays:\n  main:\n    twin: {preset: no_such_device}\n")
    assert main(["config", "check", str(bad)]) == 1
    out = capsys.readouterr().out
    assert str(bad) in out and "arrays.main.twin.preset" in out and "continuous_dw" in out


def test_config_check_names_an_unknown_twin_parameter(tmp_path, capsys):
    bad = tmp_path / "param.yaml"
    bad.write_text("arrays:\n  main:\n    twin: {params: {mu_sideways: 0.1}}\n")
    assert main(["config", "check", str(bad)]) == 1
    out = capsys.readouterr().out
    assert "arrays.main.twin.params" in out and "mu_sideways" in out


def test_config_check_names_a_missing_calibration_file(tmp_path, capsys):
    bad = tmp_path / "cal.yaml"
    bad.write_text("arrays:\n  main:\n    twin: {calibration: calibrations/absent.yaml}\n")
    assert main(["config", "check", str(bad)]) == 1
    assert "absent.yaml" in capsys.readouterr().out
