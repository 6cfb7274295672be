"""Typed lab configs.

YAML is read with ``yaml.safe_load`` and converted into frozen dataclasses by
:func:`from_data`, which rejects unknown keys and wrong types. Every error is a
:class:`ConfigError` naming the file and the dotted key, and saying what was expected.

Sections are owned by the parts that use them; all schemas live here so that the core
can validate a whole file without importing drivers, sim or protocols.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from dwlab.errors import ConfigError

# ---------------------------------------------------------------------------
# generic conversion


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin in (list, tuple):
        return "a list"
    if origin is dict:
        return "a mapping"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def _convert(tp: Any, value: Any, file: str | None, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"expected {_type_name(tp)}, got {value!r}", file=file, key=key)
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(arg, value, file, key)
            except ConfigError as exc:
                errors.append(exc)
        if len(errors) == 1:
            raise errors[0]
        raise ConfigError(f"expected {_type_name(tp)}, got {value!r}", file=file, key=key)
    if origin in (list, tuple):
        if not isinstance(value, list):
            raise ConfigError(f"expected a list, got {value!r}", file=file, key=key)
        item = args[0] if args else Any
        items = [_convert(item, v, file, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"expected a mapping, got {value!r}", file=file, key=key)
        ktp, vtp = args if args else (Any, Any)
        return {
            _convert(ktp, k, file, f"{key}.{k}"): _convert(vtp, v, file, f"{key}.{k}")
            for k, v in value.items()
        }
    if dataclasses.is_dataclass(tp):
        return from_data(tp, value, file=file, key=key)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"expected true or false, got {value!r}", file=file, key=key)
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"expected an integer, got {value!r}", file=file, key=key)
        return value
    if tp is float:
        # YAML reads 1e-6 (no dot) as a string; accept numeric strings of that form.
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"expected a number, got {value!r}", file=file, key=key)
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"expected a string, got {value!r}", file=file, key=key)
        return value
    raise TypeError(f"unsupported config field type {tp!r} at {key}")


def from_data(cls: type, data: Any, *, file: str | None = None, key: str = "") -> Any:
    """Build dataclass ``cls`` from plain YAML data, rejecting unknown keys.

    A dataclass may define ``validate(self) -> None`` raising ``ValueError``; its message
    is reported against ``key``.
    """
    where = key or "(top level)"
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"expected a mapping, got {data!r}", file=file, key=where)
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        bad = unknown[0]
        raise ConfigError(
            f"unknown key '{bad}'; allowed keys: {', '.join(sorted(fields))}",
            file=file,
            key=f"{key}.{bad}" if key else str(bad),
        )
    kwargs = {}
    for name, f in fields.items():
        sub = f"{key}.{name}" if key else name
        if name in data:
            kwargs[name] = _convert(hints[name], data[name], file, sub)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"required key '{name}' is missing", file=file, key=sub)
    obj = cls(**kwargs)
    validate = getattr(obj, "validate", None)
    if validate is not None:
        try:
            validate()
        except ConfigError:
            raise
        except ValueError as exc:
            raise ConfigError(str(exc), file=file, key=where) from None
    return obj


def to_data(obj: Any) -> Any:
    """Plain data (for YAML/JSON) from a config dataclass."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_data(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_data(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_data(v) for k, v in obj.items()}
    return obj


def read_yaml(path: str | Path) -> Any:
    """``yaml.safe_load`` a file, with a ConfigError for missing or unparsable files."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError("file not found", file=str(path))
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML: {exc}", file=str(path)) from None


# ---------------------------------------------------------------------------
# schemas


@dataclass(frozen=True)
class PulseConfig:
    amplitude_volts: float
    width_seconds: float

    def validate(self) -> None:
        if self.amplitude_volts <= 0 or self.width_seconds <= 0:
            raise ValueError("amplitude_volts and width_seconds must be positive")


@dataclass(frozen=True)
class LimitsConfig:
    max_amplitude_volts: float = 5.0
    min_width_seconds: float = 1e-9
    max_width_seconds: float = 1e-6
    max_pulses_per_device: int = 4096
    max_duty_cycle: float = 0.5


@dataclass(frozen=True)
class TwinConfig:
    """A simulated array: preset name, parameter overrides, optional calibration file."""

    preset: str = "continuous_dw"
    params: dict[str, float] = field(default_factory=dict)
    calibration: str | None = None
    """Path (relative to the config file) of a calibration YAML written by ``dwlab calibrate``."""
    torch_device: str = "cpu"


@dataclass(frozen=True)
class ArrayConfig:
    """One named device array and the backend that implements it."""

    backend: Literal["twin", "hardware"] = "twin"
    shape: list[int] | None = None
    """Fixed shape (hardware arrays); twins sized by the controller leave it empty."""
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    pulse: PulseConfig | None = None
    """Nominal pulse shape; checked against ``limits``."""
    twin: TwinConfig = field(default_factory=TwinConfig)
    hardware: dict[str, Any] | None = None
    """Instruments and wiring of a hardware array (validated by the drivers' schema)."""

    def validate(self) -> None:
        if self.pulse is not None:
            if self.pulse.amplitude_volts > self.limits.max_amplitude_volts:
                raise ValueError(
                    f"pulse.amplitude_volts {self.pulse.amplitude_volts:g} V exceeds "
                    f"limits.max_amplitude_volts {self.limits.max_amplitude_volts:g} V"
                )
            lo, hi = self.limits.min_width_seconds, self.limits.max_width_seconds
            if not lo <= self.pulse.width_seconds <= hi:
                raise ValueError(
                    f"pulse.width_seconds {self.pulse.width_seconds:g} s outside limits "
                    f"[{lo:g}, {hi:g}] s"
                )
        if self.backend == "hardware" and self.hardware is None:
            raise ValueError("backend 'hardware' needs a 'hardware' section")


@dataclass(frozen=True)
class ScheduleConfig:
    """Step size ``lr_t = lr * (1 + t / decay_steps) ** -gamma`` or cyclic cosine."""

    kind: Literal["constant", "polynomial", "cyclic"] = "constant"
    gamma: float = 0.55
    decay_steps: float = 1000.0
    cycle_steps: int = 1000


@dataclass(frozen=True)
class ControllerConfig:
    scheme: Literal[
        "float_sgd", "float_sgld", "push_pull", "push_pull_pair", "gradient_only"
    ] = "push_pull_pair"
    update_bits: int = 7
    lr: float = 0.05
    temperature: float = 1e-4
    prior_sigma: float = 1.0
    dataset_size: int | None = None
    """N in the SGLD potential; empty means the training set size."""
    weight_range: float = 3.0
    """Weights are mapped so that ``weight_range`` standard deviations of the initial layer
    weights span half the conductance range."""
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)

    def validate(self) -> None:
        if not 1 <= self.update_bits <= 12:
            raise ValueError("update_bits must lie in [1, 12]")
        if self.lr <= 0 or self.temperature < 0 or self.prior_sigma <= 0:
            raise ValueError("lr and prior_sigma must be positive, temperature non-negative")


@dataclass(frozen=True)
class MappingRule:
    """Parameters whose name matches ``match`` (fnmatch pattern) go to ``array``."""

    match: str
    array: str


@dataclass(frozen=True)
class TrainingConfig:
    dataset: Literal["digits", "fashion_mnist", "cifar10"] = "digits"
    data_dir: str | None = None
    model: str = "mlp"
    width: int = 64
    epochs: int = 5
    batch_size: int = 64
    eval_batch_size: int = 512
    compare_float: bool = True
    burn_in_epochs: float = 1.0
    thinning_steps: int = 50
    max_samples: int = 10
    checkpoint_every_steps: int = 200
    limit_train: int | None = None
    limit_test: int | None = None
    runs_dir: str = "runs"


@dataclass(frozen=True)
class LabConfig:
    name: str = "unnamed"
    seed: int = 0
    arrays: dict[str, ArrayConfig] = field(default_factory=lambda: {"main": ArrayConfig()})
    controller: ControllerConfig = field(default_factory=ControllerConfig)
    mapping: list[MappingRule] = field(default_factory=list)
    """First matching rule wins; unmatched mapped parameters go to the array 'main'."""
    training: TrainingConfig = field(default_factory=TrainingConfig)
    virtual_lab: dict[str, Any] | None = None
    """Servers of the virtual lab (validated by ``dwlab.sim``)."""

    def validate(self) -> None:
        for i, rule in enumerate(self.mapping):
            if rule.array not in self.arrays:
                raise ValueError(
                    f"mapping[{i}].array names '{rule.array}', not one of "
                    f"{', '.join(sorted(self.arrays))}"
                )
        if "main" not in self.arrays:
            raise ValueError("arrays must contain 'main' (the default array)")


@dataclass(frozen=True)
class LoadedConfig:
    """A validated config together with where it came from."""

    config: LabConfig
    path: Path

    def resolve(self, relative: str) -> Path:
        """A path named in the config, relative to the config file's folder."""
        p = Path(relative)
        return p if p.is_absolute() else (self.path.parent / p)


def load_config(path: str | Path) -> LoadedConfig:
    """Read and validate a lab config file."""
    path = Path(path)
    data = read_yaml(path)
    return LoadedConfig(from_data(LabConfig, data, file=str(path)), path)
