"""The command line's conventions, for every command: --version, defaults shown, help text
without docstring markup, --quiet / --verbose, protocol scripts in ``config check``."""

from pathlib import Path

import pytest

import dwlab
from dwlab.app.cli import all_parsers, build_parser, main, plain_text

ROOT = Path(__file__).resolve().parents[1]


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"dwlab {dwlab.__version__}"


def test_every_help_shows_defaults_and_no_markup():
    parsers = list(all_parsers(build_parser()))
    assert len(parsers) >= 12  # dwlab, its commands and their subcommands
    for parser in parsers:
        text = parser.format_help()
        assert "``" not in text and ":class:" not in text and ":func:" not in text, parser.prog
        assert "--quiet" in text and "--verbose" in text, parser.prog
    train = next(p for p in parsers if p.prog == "dwlab train").format_help()
    assert "(default: None)" not in train and "(default: False)" not in train
    calibrate = next(p for p in parsers if p.prog == "dwlab calibrate").format_help()
    assert "(default: 256)" in " ".join(calibrate.split())  # --sim-devices


def test_plain_text_strips_roles_and_literals():
    assert plain_text("see :class:`~dwlab.app.commands.ExitCode` and ``--resume``") == \
        "see ExitCode and --resume"
    assert plain_text(":func:`dwlab.train`") == "dwlab.train"


def test_verbosity_goes_before_or_after_the_command():
    parser = build_parser()
    assert parser.parse_args(["-v", "config", "check", "x.yaml"]).verbose == 1
    assert parser.parse_args(["config", "check", "x.yaml", "-q"]).quiet == 1
    assert parser.parse_args(["config", "check", "x.yaml"]).quiet == 0


def test_config_check_tells_scripts_from_lab_configs(capsys, tmp_path):
    files = [ROOT / "lab_configs" / "default.yaml",
             ROOT / "lab_configs" / "protocols" / "quick.yaml"]
    assert main(["config", "check", *map(str, files)]) == 0
    out = capsys.readouterr().out
    assert "quick.yaml (protocol script)" in out and "default.yaml (lab config)" in out
    bad = tmp_path / "bad_script.yaml"
    bad.write_text(f"name: bad\nlab_config: {files[0]}\nsteps:\n"
                   "  - protocol: read_noise\n    params: {reads: -3}\n")
    assert main(["config", "check", str(bad)]) == 1
    out = capsys.readouterr().out
    assert out.startswith("FAIL") and "bad_script.yaml" in out and "reads" in out


def test_help_of_dwlab_lists_the_public_api():
    import pydoc

    text = pydoc.render_doc(dwlab, renderer=pydoc.plaintext)
    for name in ("load_config", "open_arrays", "run_protocol", "run_script", "calibrate",
                 "build_optimizer", "train", "load_run"):
        assert f"{name}(" in text, name  # listed with its signature and docstring
        assert getattr(dwlab, name).__doc__
    assert "switching_statistics" in dwlab.PROTOCOLS
    with pytest.raises(AttributeError):
        dwlab.no_such_name  # noqa: B018


def test_watch_serves_on_loopback_only_and_refuses_a_missing_folder(tmp_path, capsys):
    from dwlab.app.commands.watch import tensorboard_command

    command = tensorboard_command(tmp_path, 6123)
    assert command[command.index("--host") + 1] == "127.0.0.1"
    assert command[command.index("--logdir") + 1] == str(tmp_path)
    assert main(["watch", str(tmp_path / "missing")]) == 1
    assert "missing: no such run folder" in capsys.readouterr().err
