"""The configs-and-inputs campaign (benchmarks/campaign_configs.py) kept in the suite, on a
bounded sample: every mutated checked-in config or protocol script, and every hostile file,
either loads (when valid) or gives one dwlab error naming the file and the exact key; never
another exception. Then the holes it found, one test each."""

import importlib.util
import math
import random
import sys
from pathlib import Path

import pytest
import yaml
from dwlab.protocols.registry import get_protocol
from dwlab.protocols.script import load_script
from dwlab.sim.calibration_file import load_calibration_params, write_calibration
from dwlab.sim.twin import PRESETS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dwlab.app.cli import main
from dwlab.config import from_data, load_config
from dwlab.core.errors import ConfigError, ProtocolError

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("campaign_configs",
                                               ROOT / "benchmarks" / "campaign_configs.py")
campaign = sys.modules.setdefault("campaign_configs", importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(campaign)

CASES = campaign.all_cases()
LEAVES = sorted({(c.file, c.path) for c in CASES if c.kind == "nan"})
SAMPLE = settings(max_examples=40, deadline=None, derandomize=True,
                  suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return campaign.workspace(tmp_path_factory.mktemp("campaign"))


@SAMPLE
@given(case=st.sampled_from(CASES))
def test_every_mutation_loads_when_valid_or_names_file_and_key(work, case):
    outcome, why = campaign.run_case(case, work)
    assert outcome == "handled", why


ANY_VALUE = st.one_of(
    st.floats(), st.integers(min_value=-10**40, max_value=10**40), st.booleans(), st.none(),
    st.text(max_size=12), st.lists(st.floats(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2))


@SAMPLE
@given(leaf=st.sampled_from(LEAVES), value=ANY_VALUE)
def test_any_value_anywhere_loads_or_gives_one_dwlab_error(work, leaf, value):
    outcome, why = campaign.run_case(campaign.Case(*leaf, "value", value), work)
    assert outcome == "handled", why


def test_every_input_probe_is_refused_or_loads_as_it_should(work):
    campaign._outside(work)
    found = []
    for name, write, should_load in campaign.probes(random.Random(campaign.SEED)):
        outcome, why = campaign.judge(write(work), should_load, None)
        if outcome != "handled":
            found.append(f"{name}: {outcome}: {why}")
    assert not found


def _error(tmp_path, text: str, name: str = "lab.yaml") -> ConfigError:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.file == str(path)
    return info.value


@pytest.mark.parametrize("text, key", [
    ("arrays:\n  main: {limits: {max_amplitude_volts: 0}}\n",
     "arrays.main.limits.max_amplitude_volts"),
    ("arrays:\n  main: {limits: {min_width_seconds: -1.0e-9}}\n",
     "arrays.main.limits.min_width_seconds"),
    ("arrays:\n  main: {limits: {max_pulses_per_device: 0}}\n",
     "arrays.main.limits.max_pulses_per_device"),
    ("arrays:\n  main: {limits: {max_duty_cycle: 0}}\n", "arrays.main.limits.max_duty_cycle"),
    ("arrays:\n  main: {shape: [1000000000000000000000000000000]}\n", "arrays.main.shape"),
    ("seed: 1000000000000000000000000000000\n", "seed"),
    ("training: {width: 1000000000000}\n", "training.width"),
    ("controller: {update_range: 2}\n", "controller.update_range"),
])
def test_zero_negative_and_huge_settings_are_refused_at_their_key(tmp_path, text, key):
    assert _error(tmp_path, text).key == key


@pytest.mark.parametrize("old, new, key", [
    ("pulse_period_seconds: 1.0e-6", "pulse_period_seconds: .nan",
     "arrays.chip.hardware.pulse_period_seconds"),
    ("pulse_period_seconds: 1.0e-6", "pulse_period_seconds: 1.0e+30",
     "arrays.chip.hardware.pulse_period_seconds"),
    ('resource: "TCPIP::127.0.0.1::50302::SOCKET"}',
     'resource: "TCPIP::127.0.0.1::50302::SOCKET", timeout_seconds: 1.0e+30}',
     "arrays.chip.hardware.instruments.meter.timeout_seconds"),
    ('resource: "TCPIP::127.0.0.1::50303::SOCKET"}',
     'resource: "TCPIP::127.0.0.1::50303::SOCKET", visa_library: "@nowhere"}',
     "arrays.chip.hardware.instruments.router.visa_library"),
    ('resource: "TCPIP::127.0.0.1::50301::SOCKET"}',
     'resource: "TCPIP::127.0.0.1::50301::SOCKET", visa_library: "bogus"}',
     "arrays.chip.hardware.instruments.pulser.visa_library"),
    ("twin: {preset: continuous_dw}\n  latency", "twin: {preset: warp}\n  latency",
     "virtual_lab.twin.preset"),
])
def test_config_check_refuses_bad_hardware_and_virtual_lab_settings(tmp_path, capsys,
                                                                    old, new, key):
    path, text = tmp_path / "vl.yaml", (ROOT / "lab_configs" / "virtual_lab.yaml").read_text()
    assert text.count(old) == 1
    path.write_text(text.replace(old, new))
    assert main(["config", "check", str(path)]) == 1
    assert f"FAIL {path}: key '{key}'" in capsys.readouterr().out


@pytest.mark.parametrize("text, says, key", [
    ("name: a\nseed: 1\nname: b\n", "duplicate key (lines 1 and 3)", "name"),
    ("controller: {lr: 0.1, lr: 0.2}\n", "duplicate key", "controller.lr"),
    ("name: " + "[" * 5000 + "]" * 5000 + "\n", "nested deeper than", None),
])
def test_duplicate_keys_and_deep_nesting_are_refused(tmp_path, text, says, key):
    err = _error(tmp_path, text)
    assert says in str(err) and err.key == key


def test_binary_and_oversized_files_are_refused_before_parsing(tmp_path):
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"name: x\n\xff\xfe")
    with pytest.raises(ConfigError, match="not a UTF-8 text file"):
        load_config(binary)
    huge = tmp_path / "huge.yaml"
    with huge.open("wb") as f:
        f.truncate(10**11)  # sparse: reading it would take minutes and 100 GB
    with pytest.raises(ConfigError, match="larger than"):
        load_config(huge)


@pytest.mark.parametrize("target", ["../../../../etc/passwd", "/etc/passwd",
                                    "calibrations/../../outside.yaml", "calibrations/link.yaml"])
def test_a_calibration_path_cannot_leave_the_config_folder_nor_be_quoted(tmp_path, target):
    secret = tmp_path / "outside.yaml"
    secret.write_text("the-secret-first-line\n")
    (tmp_path / "lab" / "calibrations").mkdir(parents=True)
    (tmp_path / "lab" / "calibrations" / "link.yaml").symlink_to(secret)
    text = f"arrays:\n  main: {{twin: {{calibration: '{target}'}}}}\n"
    err = _error(tmp_path / "lab", text)
    assert err.key == "arrays.main.twin.calibration" and "outside" in str(err)
    assert "the-secret-first-line" not in str(err) and "root:" not in str(err)


def _script(tmp_path, params: str) -> Path:
    path = tmp_path / "script.yaml"
    path.write_text(f"name: s\nlab_config: {ROOT / 'lab_configs' / 'default.yaml'}\n"
                    f"steps:\n  - protocol: pulse_response\n    params: {params}\n")
    return path


@pytest.mark.parametrize("params, key", [
    ("{amplitudes_volts: [1.0, .nan]}", "steps[0].params.amplitudes_volts[1]"),
    ("{pulses: '7'}", "steps[0].params.pulses"),
    ("{pulses: 1.0e+30}", "steps[0].params.pulses"),
    ("{pulses: 1000000000000000000000000000000}", "steps[0].params.pulses"),
    ("{widths_seconds: [.inf]}", "steps[0].params.widths_seconds[0]"),
])
def test_protocol_parameters_are_strict_and_finite_with_file_and_key(tmp_path, params, key):
    path = _script(tmp_path, params)
    with pytest.raises(ConfigError) as info:
        load_script(path)
    assert isinstance(info.value, ProtocolError)
    assert info.value.file == str(path) and info.value.key == key


def test_numeric_strings_still_count_as_floats_and_ints_as_ints(tmp_path):
    params = from_data(get_protocol("pulse_response").Params,
                       {"widths_seconds": ["1e-8"], "pulses": 7})
    assert params.widths_seconds == [1e-8] and params.pulses == 7


def test_a_sweep_cannot_expand_without_bound(tmp_path):
    path = tmp_path / "sweep.yaml"
    values = list(range(1, 201))
    path.write_text(yaml.safe_dump({
        "name": "s", "lab_config": "x.yaml",
        "steps": [{"protocol": "read_noise", "sweep": {"reads": values[1:],
                                                       "disturb_reads": values}}]}))
    with pytest.raises(ConfigError, match="more than 10000 steps") as info:
        load_script(path)
    assert info.value.key == "steps[0].sweep"


def test_a_calibration_file_keeps_its_nan_standard_errors(tmp_path):
    path = tmp_path / "cal.yaml"
    write_calibration(path, {"mu_push": 0.02}, {}, {"mu_push": "track/pulse"},
                      (1.0, 1e-8), [], {})
    assert "stderr: .nan" in path.read_text()
    params = load_calibration_params(path, PRESETS["continuous_dw"])
    assert params.mu_push == 0.02 and not math.isnan(params.mu_push)


def test_device_cuda_on_a_build_without_it_fails_before_a_run_folder(tmp_path, capsys):
    run_dir = tmp_path / "run"
    code = main(["train", "--config", str(ROOT / "lab_configs" / "default.yaml"),
                 "--device", "cuda:99", "--run-dir", str(run_dir), "--no-progress"])
    assert code == 1 and not run_dir.exists()  # a dwlab error (see the exit-code convention)
    err = capsys.readouterr().err
    assert "key 'training.torch_device'" in err and "--device cuda:99" in err
