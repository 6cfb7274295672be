from pathlib import Path

from dwlab.cli import main

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
