"""Typed lab configs.

YAML is read with ``yaml.safe_load`` and converted into frozen dataclasses by
:func:`from_data`, which rejects unknown keys and wrong types. Every error is a
:class:`ConfigError` naming the file and the dotted key, and saying what was expected.

Sections are owned by the parts that use them; all schemas live here so that the core
can validate a whole file without importing drivers, sim or protocols.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from dwlab.core.crosspoint import (
    MATRIX_ROWS,
    MATRIX_SLOTS,
    Route,
    crossbar_paths,
    device_paths,
)
from dwlab.core.errors import ConfigError
from dwlab.core.instruments import ROLES, drivers_for
from dwlab.core.schemes import Scheme
from dwlab.core.types import PulseLimits

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
    if isinstance(tp, type) and issubclass(tp, Enum):
        try:
            return tp(value)
        except ValueError:
            names = ", ".join(repr(m.value) for m in tp)
            raise ConfigError(f"expected one of {names}, got {value!r}", file=file,
                              key=key) from None
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
    if isinstance(obj, Enum):
        return obj.value
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

    def pulse_limits(self) -> PulseLimits:
        """These limits as the value an array checks its plans against."""
        return PulseLimits(**dataclasses.asdict(self))


@dataclass(frozen=True)
class TwinConfig:
    """A simulated array: preset name, parameter overrides, optional calibration file."""

    preset: str = "continuous_dw"
    params: dict[str, float] = field(default_factory=dict)
    calibration: str | None = None
    """Path (relative to the config file) of a calibration YAML written by ``dwlab calibrate``."""
    torch_device: str = "cpu"


# -- hardware arrays (instruments by role, wiring, read-out) and the virtual lab ---------

@dataclass(frozen=True)
class InstrumentConfig:
    """One instrument: driver registry name, VISA resource and driver settings."""

    driver: str
    resource: str
    """e.g. ``GPIB0::10::INSTR`` or ``TCPIP::127.0.0.1::50301::SOCKET`` (virtual lab)."""
    timeout_seconds: float = 2.0
    channel: int = 1
    """Output channel (pulse generators)."""
    visa_library: str = "@py"
    """PyVISA backend: '@py' (pyvisa-py) or '' (the system VISA, e.g. NI-VISA)."""

    def validate(self) -> None:
        if self.timeout_seconds <= 0:
            raise ValueError("timeout_seconds must be positive")
        if self.channel not in (1, 2):
            raise ValueError("channel must be 1 or 2")


@dataclass(frozen=True)
class InstrumentsConfig:
    """The three roles of a hardware array."""

    pulser: InstrumentConfig
    meter: InstrumentConfig
    router: InstrumentConfig

    def validate(self) -> None:
        for role in ROLES:
            allowed = drivers_for(role)
            driver = getattr(self, role).driver
            if driver not in allowed:
                raise ValueError(f"{role}.driver '{driver}' is not one of {', '.join(allowed)}")


@dataclass(frozen=True)
class DeviceWiringConfig:
    """Crosspoints (e.g. ``1A01``) closed to pulse a device and to read it."""

    write: list[str]
    read: list[str]


@dataclass(frozen=True)
class CrossbarWiringConfig:
    """Generated wiring of a crossbar chip on a switch matrix.

    The array is viewed as rows x columns (the last axis is the column; leading axes are
    flattened into rows). Word line ``r`` and bit line ``c`` each occupy one matrix column,
    assigned in order: word lines first, then bit lines, filling ``columns_per_slot``
    columns per card from ``first_slot`` on. Device (r, c) is pulsed by closing
    ``write_rows[0]`` on its word line and ``write_rows[1]`` on its bit line, and read
    through ``read_rows`` likewise.
    """

    first_slot: int = 1
    write_rows: list[str] = field(default_factory=lambda: ["A", "B"])
    read_rows: list[str] = field(default_factory=lambda: ["C", "D"])

    def validate(self) -> None:
        for name in ("write_rows", "read_rows"):
            rows = getattr(self, name)
            if len(rows) != 2 or any(r not in MATRIX_ROWS for r in rows):
                raise ValueError(f"{name} must be two matrix rows out of {MATRIX_ROWS}")
        if not 1 <= self.first_slot <= MATRIX_SLOTS:
            raise ValueError(f"first_slot must lie in [1, {MATRIX_SLOTS}]")


@dataclass(frozen=True)
class WiringConfig:
    """Device address (flat index) to write and read crosspoints.

    ``devices`` entries (keys are flat indices) override the generated ``crossbar`` wiring.
    ``shared_path``: write and read paths may be closed together (a bias tee joins pulser
    and meter at the device), so one routing serves a pulse and its read-back.
    """

    crossbar: CrossbarWiringConfig | None = None
    devices: dict[int, DeviceWiringConfig] = field(default_factory=dict)
    shared_path: bool = False

    def paths(self, shape: tuple[int, ...]) -> list[tuple[Route, Route]]:
        """(write crosspoints, read crosspoints) per flat device index."""
        generated = None
        if self.crossbar is not None:
            cb = self.crossbar
            generated = crossbar_paths(shape, cb.first_slot, cb.write_rows, cb.read_rows)
        explicit = {i: (d.write, d.read) for i, d in self.devices.items()}
        return device_paths(math.prod(int(n) for n in shape), generated, explicit)


@dataclass(frozen=True)
class ReadConfig:
    """Small-bias read-out: voltage bias, current compliance, G = I / V minus series R."""

    bias_volts: float = 0.01
    compliance_amps: float = 1e-4
    max_bias_volts: float = 0.1
    """Safety limit: a larger bias is refused before any I/O."""
    max_compliance_amps: float = 1e-3
    """Safety limit on the compliance setting."""
    wires: Literal[2, 4] = 2
    nplc: float = 0.1
    series_resistance_ohms: float = 0.0
    """Lead and contact resistance in series with each device, subtracted from V / I."""

    def validate(self) -> None:
        if not 0 < self.bias_volts <= self.max_bias_volts:
            raise ValueError(
                f"bias_volts {self.bias_volts:g} V must lie in (0, max_bias_volts "
                f"{self.max_bias_volts:g} V]"
            )
        if not 0 < self.compliance_amps <= self.max_compliance_amps:
            raise ValueError(
                f"compliance_amps {self.compliance_amps:g} A must lie in (0, "
                f"max_compliance_amps {self.max_compliance_amps:g} A]"
            )
        if not 0.01 <= self.nplc <= 10:
            raise ValueError("nplc must lie in [0.01, 10]")
        if self.series_resistance_ohms < 0:
            raise ValueError("series_resistance_ohms must be non-negative")


@dataclass(frozen=True)
class DeviceNominalConfig:
    """What characterisation found for the devices (``describe()`` reports it)."""

    conductance_min_siemens: float
    conductance_max_siemens: float
    step_siemens: float
    step_sigma_siemens: float

    def validate(self) -> None:
        if not 0 < self.conductance_min_siemens < self.conductance_max_siemens:
            raise ValueError("need 0 < conductance_min_siemens < conductance_max_siemens")
        if self.step_siemens <= 0 or self.step_sigma_siemens < 0:
            raise ValueError("step_siemens must be positive, step_sigma_siemens non-negative")


@dataclass(frozen=True)
class HardwareConfig:
    """A hardware array: instruments by role, wiring, read-out and strategy."""

    instruments: InstrumentsConfig
    wiring: WiringConfig
    devices: DeviceNominalConfig
    read: ReadConfig = field(default_factory=ReadConfig)
    pulse_period_seconds: float = 1.0e-6
    """Repetition period inside a burst; ``width / period`` is checked against the duty limit."""
    strategy: Literal["grouped", "naive"] = "grouped"
    """grouped: configure the pulser once per pulse shape; naive: once per device (benchmark)."""
    read_back: bool = False
    """Read each device right after its pulses (receipt ``details['read_back_siemens']``)."""
    retries: int = 1
    """Retries of idempotent commands (routing, reads) after a timeout or garbled reply."""

    def validate(self) -> None:
        if self.pulse_period_seconds <= 0:
            raise ValueError("pulse_period_seconds must be positive")
        if self.retries < 0:
            raise ValueError("retries must be non-negative")


@dataclass(frozen=True)
class FaultConfig:
    """A fault the virtual lab injects into one instrument's conversation."""

    instrument: Literal["pulser", "meter", "router"]
    kind: Literal["timeout", "drop", "error", "garble"]
    """timeout: a query gets no reply; drop: the connection closes; error: an entry goes
    into the error queue; garble: a query gets an unparsable reply."""
    after: int = 0
    """Messages that pass before the fault fires."""
    times: int = 1
    match: str | None = None
    """Only messages containing this text count and fault."""


@dataclass(frozen=True)
class VirtualLabConfig:
    """The twin behind SCPI servers on 127.0.0.1, serving one hardware array.

    Ports come from the array's instrument resources (``TCPIP::127.0.0.1::PORT::SOCKET``);
    port 0 picks free ports (tests).
    """

    array: str
    twin: TwinConfig = field(default_factory=TwinConfig)
    seed_offset: int = 1000
    latency_seconds: float = 0.0
    """Added before handling each message."""
    faults: list[FaultConfig] = field(default_factory=list)
    autostart: bool = False
    """Start the lab in-process when the array is built (``dwlab train`` on one command)."""

    def validate(self) -> None:
        if self.latency_seconds < 0:
            raise ValueError("latency_seconds must be non-negative")


def socket_port(resource: str) -> int | None:
    """The port of a ``TCPIP::127.0.0.1::PORT::SOCKET`` resource, else None."""
    parts = resource.split("::")
    if (len(parts) == 4 and parts[0].upper().startswith("TCPIP") and parts[1] == "127.0.0.1"
            and parts[2].isdigit() and parts[3].upper() == "SOCKET"):
        return int(parts[2])
    return None


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
    hardware: HardwareConfig | None = None
    """Instruments, wiring and read-out of a hardware array."""

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
        if self.backend == "hardware":
            if self.hardware is None:
                raise ValueError("backend 'hardware' needs a 'hardware' section")
            if not self.shape:
                raise ValueError("backend 'hardware' needs a fixed 'shape'")
            if any(s < 1 for s in self.shape):
                raise ValueError("shape entries must be positive")
            try:
                self.hardware.wiring.paths(tuple(self.shape))
            except ValueError as exc:
                raise ValueError(f"hardware.wiring: {exc}") from None
            period = self.hardware.pulse_period_seconds
            if self.pulse is not None and self.pulse.width_seconds / period > (
                self.limits.max_duty_cycle
            ):
                raise ValueError(
                    f"pulse width {self.pulse.width_seconds:g} s over hardware."
                    f"pulse_period_seconds {period:g} s exceeds limits.max_duty_cycle "
                    f"{self.limits.max_duty_cycle:g}"
                )


@dataclass(frozen=True)
class ScheduleConfig:
    """Step-size schedule (``dwlab.sgld.learning_rate_at``), with ``t`` the step count.

    constant:   ``lr_t = lr``
    polynomial: ``lr_t = lr * (1 + t / decay_steps) ** -gamma``, i.e. ``a (b + t) ** -gamma``
                with ``b = decay_steps`` and ``a = lr * b ** gamma``
    cyclic:     ``lr_t = lr / 2 * (1 + cos(pi * (t mod cycle_steps) / cycle_steps))``
                (cyclical SG-MCMC: explore at the cycle start, sample as it ends)
    """

    kind: Literal["constant", "polynomial", "cyclic"] = "constant"
    gamma: float = 0.55
    decay_steps: float = 1000.0
    cycle_steps: int = 1000

    def validate(self) -> None:
        if self.gamma < 0 or self.decay_steps <= 0 or self.cycle_steps < 1:
            raise ValueError("need gamma >= 0, decay_steps > 0 and cycle_steps >= 1")


@dataclass(frozen=True)
class ControllerConfig:
    """The SGLD controller (``dwlab.sgld.controller``); see its module docstring for the maths.

    ``lr`` is the step size on the *mean* minibatch loss, like SGD's: the SGLD step size on
    the potential ``U = N * L_batch + |theta|^2 / (2 prior_sigma^2)`` is ``eps = lr / N``.
    """

    scheme: Scheme = Scheme.PUSH_PULL_PAIR
    update_bits: int = 7
    """Pulse budget per device and step ``K = 2 ** update_bits - 1``: the resolution of one
    update (``n+ - n-`` takes ``K + 1`` values)."""
    update_range: float | None = None
    """The largest update (all ``K`` pulses of one polarity) as a fraction of the weight
    window, i.e. of the conductance range of one device. The controller scales the pulse
    width from the array's nominal pulse so that ``K`` pulses span this range at every
    ``update_bits``: more bits refine the same range, and the device noise per step stays
    the same (every config in lab_configs/ sets it; small ranges need short pulses, so the
    array's ``limits.min_width_seconds`` must allow them). Empty: every pulse is the
    nominal one, so the range and the noise grow with the bits (kept for arrays whose step
    is not linear in the pulse width)."""
    lr: float = 0.05
    temperature: float = 1e-4
    """SGLD temperature of the digital parameters, and of the device weights when
    ``weight_scale`` is 'temperature'."""
    prior_sigma: float = 1.0
    dataset_size: int | None = None
    """N in the SGLD potential; empty means the training set size."""
    weight_scale: Literal["range", "temperature"] = "range"
    """How the weight per siemens (alpha) of each mapped tensor is chosen. 'range' (default):
    from the initial weights and ``weight_range`` so the weights fit the conductance window;
    the device noise then implies the temperature, which is reported. 'temperature': alpha
    is set so that the device noise realises ``temperature`` exactly at the initial step
    size (the window then follows)."""
    weight_range: float = 3.0
    """Weights are mapped so that ``weight_range`` standard deviations of the initial layer
    weights span half the conductance range (of one device, or of a pair's difference)."""
    recentre_margin: float = 0.1
    """A differential pair with a device closer than this fraction of the conductance range
    to a track end is re-centred (both devices moved by the same common-mode count)."""
    program_iterations: int = 6
    """Apply/read rounds of the program-and-verify loop that writes the initial weights."""
    read_averages: int = 1
    """Reads averaged for every read-back of the device weights."""
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)

    def validate(self) -> None:
        if not 1 <= self.update_bits <= 12:
            raise ValueError("update_bits must lie in [1, 12]")
        if self.update_range is not None and not 0 < self.update_range <= 1:
            raise ValueError("update_range must lie in (0, 1] (a fraction of the window)")
        if self.lr <= 0 or self.temperature < 0 or self.prior_sigma <= 0:
            raise ValueError("lr and prior_sigma must be positive, temperature non-negative")
        if self.weight_range <= 0:
            raise ValueError("weight_range must be positive")
        if not 0 <= self.recentre_margin < 0.5:
            raise ValueError("recentre_margin must lie in [0, 0.5)")
        if self.program_iterations < 1 or self.read_averages < 1:
            raise ValueError("program_iterations and read_averages must be at least 1")
        if self.dataset_size is not None and self.dataset_size < 1:
            raise ValueError("dataset_size must be at least 1")


@dataclass(frozen=True)
class MappingRule:
    """Parameters whose name matches ``match`` (fnmatch pattern) go to ``array``."""

    match: str
    array: str


@dataclass(frozen=True)
class TrainingConfig:
    """The training host (``dwlab train``, ``dwlab sweep``). Paths are relative to the
    config file."""

    dataset: Literal["digits", "fashion_mnist", "cifar10"] = "digits"
    data_dir: str | None = None
    """Folder with the dataset files; empty means the default (Fashion-MNIST: the Debian
    package's folder)."""
    model: Literal["resnet18", "fc5", "mlp", "stochastic_binary"] = "mlp"
    width: int = 64
    """ResNet18 base width, or hidden units of the flat networks."""
    epochs: int = 5
    batch_size: int = 64
    eval_batch_size: int = 512
    augment: bool | None = None
    """Random crop and flip; empty means the dataset's default (on for CIFAR-10 only)."""
    compare_float: bool = True
    """Also train with float SGD (same seed and epochs) and report both."""
    burn_in_epochs: float = 1.0
    thinning_steps: int = 50
    max_samples: int = 10
    """Posterior samples kept (the most recent); prediction averages over them."""
    store_device_states: bool = True
    """Keep each sample's device snapshots (the states on the arrays), not only weights."""
    bma_every_epoch: bool = True
    """Also evaluate the sample average after every epoch (one test pass per sample)."""
    checkpoint_every_steps: int = 200
    log_every_steps: int = 1
    ece_bins: int = 15
    limit_train: int | None = None
    limit_test: int | None = None
    runs_dir: str = "runs"
    torch_device: str = "cpu"
    """Where the model runs: cpu, cuda, cuda:1, ..."""
    bf16: bool = False
    """bf16 autocast for the forward pass (CPU with AMX/AVX512-BF16, or CUDA): about 1.8x
    as fast; gradients, weights and the device updates stay float32."""
    channels_last: bool = False
    """channels_last memory format for conv nets (helps on CUDA, not on CPU)."""

    def validate(self) -> None:
        for name in ("width", "epochs", "batch_size", "eval_batch_size", "thinning_steps",
                     "max_samples", "checkpoint_every_steps", "log_every_steps", "ece_bins"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("limit_train", "limit_test"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1 or empty, got {value}")
        if self.burn_in_epochs < 0:
            raise ValueError("burn_in_epochs must be non-negative")
        if not (self.torch_device == "cpu" or self.torch_device.startswith("cuda")):
            raise ValueError(f"torch_device must be 'cpu' or 'cuda[:N]', got "
                             f"{self.torch_device!r}")


@dataclass(frozen=True)
class LabConfig:
    name: str = "unnamed"
    seed: int = 0
    arrays: dict[str, ArrayConfig] = field(default_factory=lambda: {"main": ArrayConfig()})
    controller: ControllerConfig = field(default_factory=ControllerConfig)
    mapping: list[MappingRule] = field(default_factory=list)
    """First matching rule wins; unmatched mapped parameters go to the array 'main'."""
    training: TrainingConfig = field(default_factory=TrainingConfig)
    virtual_lab: VirtualLabConfig | None = None
    """The virtual lab: SCPI servers on 127.0.0.1 backed by one twin."""

    def validate(self) -> None:
        for i, rule in enumerate(self.mapping):
            if rule.array not in self.arrays:
                raise ValueError(
                    f"mapping[{i}].array names '{rule.array}', not one of "
                    f"{', '.join(sorted(self.arrays))}"
                )
        if "main" not in self.arrays:
            raise ValueError("arrays must contain 'main' (the default array)")
        if self.virtual_lab is not None:
            served = self.arrays.get(self.virtual_lab.array)
            if served is None or served.backend != "hardware" or served.hardware is None:
                raise ValueError(
                    f"virtual_lab.array '{self.virtual_lab.array}' must name a hardware array"
                )
            for role in ("pulser", "meter", "router"):
                resource = getattr(served.hardware.instruments, role).resource
                if socket_port(resource) is None:
                    raise ValueError(
                        f"virtual_lab serves arrays.{self.virtual_lab.array}: its {role} "
                        f"resource '{resource}' must be TCPIP::127.0.0.1::PORT::SOCKET"
                    )


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
