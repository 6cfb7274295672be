from pathlib import Path

import pytest

from dwlab.config import LabConfig, from_data, load_config
from dwlab.core.errors import ConfigError

CONFIG_DIR = Path(__file__).resolve().parents[1] / "lab_configs"


@pytest.mark.parametrize("path", sorted(CONFIG_DIR.glob("*.yaml")), ids=lambda p: p.name)
def test_every_checked_in_config_is_valid(path):
    loaded = load_config(path)
    assert isinstance(loaded.config, LabConfig)


def _error(tmp_path, text) -> ConfigError:
    f = tmp_path / "lab.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(f)
    assert str(f) in str(info.value)
    return info.value


@pytest.mark.parametrize("text, key, says", [
    pytest.param("controller:\n  update_bitz: 7\n", "controller.update_bitz", "unknown key",
                 id="unknown key"),
    pytest.param("controller:\n  update_bits: seven\n", "controller.update_bits",
                 "expected an integer", id="wrong type"),
    pytest.param("arrays:\n  main:\n    limits: {max_amplitude_volts: 2.0}\n"
                 "    pulse: {amplitude_volts: 3.0, width_seconds: 1.0e-8}\n",
                 "arrays.main.pulse.amplitude_volts",
                 "exceeds", id="amplitude outside the limits"),
    pytest.param("controller:\n  scheme: magic\n", "controller.scheme", "push_pull_pair",
                 id="unknown literal value"),
])
def test_a_bad_value_is_named_by_file_and_dotted_key(tmp_path, text, key, says):
    err = _error(tmp_path, text)
    assert err.key == key
    assert says in str(err)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "absent.yaml")


def test_invalid_yaml(tmp_path):
    err = _error(tmp_path, "controller: [unclosed\n")
    assert "not valid YAML" in str(err)


def test_required_key_missing():
    with pytest.raises(ConfigError, match="required key 'amplitude_volts'"):
        from_data(LabConfig, {"arrays": {"main": {"pulse": {"width_seconds": 1e-8}}}}, file="x")
