"""Config validation on pydantic: finite numbers, quantities with units, every problem of a
file at once, re-validated copies, and the JSON schema for editors."""

import json
import math
import typing
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

import dwlab.config as config
from dwlab.app.cli import main
from dwlab.config import (
    ControllerConfig,
    LabConfig,
    PulseConfig,
    evolve,
    from_data,
    load_config,
    to_data,
)
from dwlab.config.quantities import UNIT_SUFFIXES
from dwlab.core.errors import ConfigError
from dwlab.core.schemes import Scheme

BENCH = Path(__file__).resolve().parents[1] / "lab_configs" / "bench_example.yaml"


def _load(tmp_path, data) -> LabConfig:
    f = tmp_path / "lab.yaml"
    f.write_text(yaml.safe_dump(data) if isinstance(data, dict) else data)
    return load_config(f).config


def _error(tmp_path, data) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, data)
    assert str(tmp_path / "lab.yaml") in str(info.value)
    return info.value


def _bench() -> dict:
    return yaml.safe_load(BENCH.read_text())


@pytest.mark.parametrize("text, key", [
    ("controller: {lr: .nan}\n", "controller.lr"),
    ("controller: {temperature: .inf}\n", "controller.temperature"),
    ("controller: {lr: nan}\n", "controller.lr"),
    ("arrays:\n  main: {limits: {max_amplitude_volts: -.inf}}\n",
     "arrays.main.limits.max_amplitude_volts"),
    ("arrays:\n  main: {twin: {params: {mu_push: .nan}}}\n", "arrays.main.twin.params.mu_push"),
    ("arrays:\n  main: {pulse: {amplitude_volts: 1.0, width_seconds: inf ns}}\n",
     "arrays.main.pulse.width_seconds"),
])
def test_nan_and_infinity_are_refused_with_file_and_key(tmp_path, text, key):
    err = _error(tmp_path, text)
    assert err.key == key
    assert "finite" in str(err)


def test_a_numeric_string_is_a_number(tmp_path):
    # YAML 1.1 reads 1e-8 (no dot) as a string.
    cfg = _load(tmp_path, "arrays:\n  main: {pulse: {amplitude_volts: 1, width_seconds: 1e-8}}\n")
    assert cfg.arrays["main"].pulse.width_seconds == 1e-8
    assert cfg.arrays["main"].pulse.amplitude_volts == 1.0


def test_quantities_with_units_become_si_floats(tmp_path):
    data = _bench()
    chip = data["arrays"]["chip"]
    chip["pulse"] = {"amplitude_volts": "1.2 V", "width_seconds": "5 ns"}
    chip["hardware"]["devices"].update(conductance_min_siemens="250 uS",
                                       conductance_max_siemens="0.46 mS")
    chip["hardware"]["read"].update(bias_volts="10 mV", compliance_amps="50 uA",
                                    series_resistance_ohms="0.12 kohm")
    chip["hardware"]["pulse_period_seconds"] = "1 us"
    chip = _load(tmp_path, data).arrays["chip"]
    assert chip.pulse.amplitude_volts == pytest.approx(1.2)
    assert chip.pulse.width_seconds == pytest.approx(5e-9)
    assert chip.hardware.devices.conductance_min_siemens == pytest.approx(2.5e-4)
    assert chip.hardware.devices.conductance_max_siemens == pytest.approx(4.6e-4)
    assert chip.hardware.read.bias_volts == pytest.approx(0.01)
    assert chip.hardware.read.compliance_amps == pytest.approx(5e-5)
    assert chip.hardware.read.series_resistance_ohms == pytest.approx(120.0)
    assert chip.hardware.pulse_period_seconds == pytest.approx(1e-6)
    assert type(chip.pulse.width_seconds) is float


@pytest.mark.parametrize("pulse, key, says", [
    ({"amplitude_volts": 1.0, "width_seconds": "5 V"}, "width_seconds", "not a quantity in s"),
    ({"amplitude_volts": "10 ns", "width_seconds": 1e-8}, "amplitude_volts",
     "not a quantity in V"),
    ({"amplitude_volts": "1 parsec", "width_seconds": 1e-8}, "amplitude_volts",
     "not a quantity in V"),
    ({"amplitude_volts": "one volt", "width_seconds": 1e-8}, "amplitude_volts",
     "expected a number in V"),
])
def test_a_quantity_of_the_wrong_dimension_is_refused(tmp_path, pulse, key, says):
    err = _error(tmp_path, {"arrays": {"main": {"pulse": pulse}}})
    assert err.key == f"arrays.main.pulse.{key}"
    assert says in str(err)


def _models() -> list[type[BaseModel]]:
    return [v for v in vars(config).values()
            if isinstance(v, type) and issubclass(v, BaseModel) and v is not config.Schema]


def _metadata(hint) -> list:
    """Everything annotated on a type, through unions and nested Annotated."""
    args = typing.get_args(hint)
    return [m for a in args for m in ([a] + _metadata(a))]


def test_every_field_named_for_a_unit_takes_quantities_of_that_unit():
    checked = 0
    for model in _models():
        hints = typing.get_type_hints(model, include_extras=True)
        for name in model.model_fields:
            for suffix, quantity in UNIT_SUFFIXES.items():
                if name.endswith(suffix):
                    unit_parser = typing.get_args(quantity)[1]
                    assert unit_parser in _metadata(hints[name]), f"{model.__name__}.{name}"
                    checked += 1
    assert checked == 17


def test_every_problem_of_a_file_is_reported_at_once(tmp_path):
    err = _error(tmp_path, "seed: one\ncontroller: {update_bitz: 7, lr: -1}\n"
                           "training: {epochs: 0}\n")
    message = str(err)
    assert "4 problems" in message and "\n" not in message
    for key, says in [("seed", "expected an integer"), ("controller.update_bitz", "unknown key"),
                      ("controller.lr", "greater than 0"), ("training.epochs", "1")]:
        assert f"{tmp_path / 'lab.yaml'}: key '{key}': " in message and says in message
    assert err.key == "seed" and err.file == str(tmp_path / "lab.yaml")


def test_an_unknown_key_lists_the_allowed_ones():
    with pytest.raises(ConfigError, match="allowed keys: amplitude_volts, width_seconds"):
        from_data(LabConfig, {"arrays": {"main": {"pulse": {"amplitude_volt": 1.0}}}})


def test_evolve_returns_a_revalidated_copy():
    base = ControllerConfig()
    changed = evolve(base, scheme="float_sgd", update_bits=3)
    assert changed.scheme is Scheme.FLOAT_SGD and changed.update_bits == 3
    assert base.update_bits == 7
    with pytest.raises(ConfigError, match="update_bits"):
        evolve(base, update_bits=0)
    with pytest.raises(ConfigError, match="unknown key"):
        evolve(base, update_bitz=3)


def test_to_data_is_plain_yaml_that_loads_back():
    cfg = load_config(BENCH).config
    data = to_data(cfg)
    assert data["controller"]["scheme"] == "push_pull"  # the enum's plain value
    assert from_data(LabConfig, yaml.safe_load(yaml.safe_dump(data))) == cfg


def test_models_are_frozen():
    pulse = PulseConfig(amplitude_volts=1.0, width_seconds=1e-8)
    with pytest.raises(ValueError):
        pulse.amplitude_volts = 2.0
    assert math.isclose(pulse.amplitude_volts, 1.0)


def test_schema_export(tmp_path, capsys):
    assert main(["config", "schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert {"arrays", "controller", "training", "mapping", "virtual_lab"} <= set(
        schema["properties"])
    assert schema["additionalProperties"] is False
    assert all(d.get("additionalProperties") is False for d in schema["$defs"].values()
               if d.get("type") == "object")
    width = schema["$defs"]["PulseConfig"]["properties"]["width_seconds"]
    assert {"type": "number"} in width["anyOf"] and {"type": "string"} in width["anyOf"]
    out = tmp_path / "lab.schema.json"
    assert main(["config", "schema", "-o", str(out)]) == 0
    assert json.loads(out.read_text()) == schema
