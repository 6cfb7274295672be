"""Backend factory: the one place that builds device arrays and opens instruments from a
lab config (by registry name only), and :func:`open_backends`, through which a run owns
what it opens: its arrays and the virtual lab it starts.

The drivers never read a config: the instruments' addresses and settings, the wiring and
the read-out values are taken from it here and handed to ``HardwareArray`` as values.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from dwlab.config import ArrayConfig, HardwareConfig, LoadedConfig, TwinConfig, socket_port
from dwlab.core.device import DeviceArray
from dwlab.core.errors import ConfigError, DwlabError, InstrumentConnectionError
from dwlab.core.instruments import ROLES
from dwlab.core.roles import ConductanceMeter, PulseSource, Router
from dwlab.core.types import PulseLimits, PulseShape
from dwlab.records import now_iso

if TYPE_CHECKING:
    from dwlab.drivers.adapters import RoleAdapter
    from dwlab.drivers.hardware_array import HardwareArray
    from dwlab.sim.virtual_lab import VirtualLab


class EventSink(Protocol):
    def write(self, event: dict[str, Any]) -> None: ...


def _clip(text: str, limit: int = 1000) -> str:
    """An error text as kept in a message or event (instruments may send anything)."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def limits_from_config(cfg: ArrayConfig) -> PulseLimits:
    return cfg.limits.pulse_limits()


def twin_params(loaded: LoadedConfig, name: str):
    """The ``TwinParams`` of twin array ``name``: preset, then calibration file, then the
    config's overrides. Every problem is a ConfigError naming file and key."""
    return params_of_twin(loaded, loaded.config.arrays[name].twin, f"arrays.{name}.twin")


def params_of_twin(loaded: LoadedConfig, twin: TwinConfig, where: str):
    """The ``TwinParams`` of twin section ``twin`` (at dotted key ``where``)."""
    from dwlab.sim.twin import PRESETS

    if twin.preset not in PRESETS:
        raise ConfigError(
            f"unknown preset '{twin.preset}'; known presets: {', '.join(sorted(PRESETS))}",
            file=str(loaded.path), key=f"{where}.preset",
        )
    if twin.jump_table is not None:
        raise ConfigError("a jump table can back an array's twin, not this one",
                          file=str(loaded.path), key=f"{where}.jump_table")
    params = PRESETS[twin.preset]
    if twin.calibration is not None:
        from dwlab.sim.calibration_file import load_calibration_params

        params = load_calibration_params(loaded.resolve(twin.calibration), base=params)
    try:
        return params.replace(**twin.params)
    except ValueError as exc:
        raise ConfigError(str(exc), file=str(loaded.path), key=f"{where}.params") from None


def check_arrays(loaded: LoadedConfig) -> None:
    """Checks that need the backends' registries (twin presets, parameters, calibration
    files) without building anything: ``dwlab config check`` runs them."""
    for name, cfg in loaded.config.arrays.items():
        if cfg.backend == "twin" and cfg.twin.jump_table is not None:
            load_jump_table(loaded, cfg.twin, f"arrays.{name}.twin")
        elif cfg.backend == "twin":
            twin_params(loaded, name)
    if loaded.config.virtual_lab is not None:
        params_of_twin(loaded, loaded.config.virtual_lab.twin, "virtual_lab.twin")


def build_twin(
    loaded: LoadedConfig, name: str, shape: tuple[int, ...] | None = None,
    seed_offset: int = 0, event_log: EventSink | None = None,
) -> DeviceArray:
    """A simulated array (it records no events: every pulse it takes is in its state)."""
    from dwlab.sim.twin import TwinArray

    cfg = loaded.config.arrays[name]
    shape = tuple(cfg.shape) if cfg.shape else shape
    if shape is None:
        raise ConfigError("a twin needs a shape (set 'shape' or let the controller size it)",
                          file=str(loaded.path), key=f"arrays.{name}.shape")
    pulse = PulseShape(cfg.pulse.amplitude_volts, cfg.pulse.width_seconds) if cfg.pulse else None
    if cfg.twin.jump_table is not None:
        return build_jump_table_twin(loaded, name, shape, pulse, seed_offset)
    params = twin_params(loaded, name)
    return TwinArray(
        shape, params, preset=cfg.twin.preset, seed=loaded.config.seed + seed_offset,
        limits=limits_from_config(cfg), nominal_pulse=pulse, torch_device=cfg.twin.torch_device,
        name=name,
    )


def load_jump_table(loaded: LoadedConfig, twin: TwinConfig, where: str):
    """The jump table a twin section names; a ConfigError naming file and key if unusable."""
    from dwlab.sim.jump_table import JumpTable

    assert twin.jump_table is not None
    try:
        return JumpTable.load(loaded.resolve(twin.jump_table))
    except DwlabError as exc:
        raise ConfigError(str(exc), file=str(loaded.path), key=f"{where}.jump_table") from None


def build_jump_table_twin(loaded: LoadedConfig, name: str, shape: tuple[int, ...],
                          pulse: PulseShape | None, seed_offset: int) -> DeviceArray:
    """A twin replaying the steps of a jump table (``arrays.NAME.twin.jump_table``)."""
    from dwlab.sim.jump_table import JumpTableArray

    cfg = loaded.config.arrays[name]
    table = load_jump_table(loaded, cfg.twin, f"arrays.{name}.twin")
    try:
        return JumpTableArray(shape, table, seed=loaded.config.seed + seed_offset,
                              limits=limits_from_config(cfg), nominal_pulse=pulse,
                              torch_device=cfg.twin.torch_device, name=name)
    except DwlabError as exc:
        raise ConfigError(str(exc), file=str(loaded.path), key=f"arrays.{name}.pulse") from None


@dataclass(frozen=True)
class _HardwareArrayConfig:
    """A hardware array's config, with the parts the checks guarantee as plain values."""

    array: ArrayConfig
    hardware: HardwareConfig
    shape: tuple[int, ...]
    nominal_pulse: PulseShape


def _hardware_config(loaded: LoadedConfig, name: str, shape: tuple[int, ...] | None
                     ) -> _HardwareArrayConfig:
    """Array ``name``'s config, checked to be a hardware array of shape ``shape``."""
    cfg = loaded.config.arrays[name]
    where = f"arrays.{name}"
    # A loaded config gives every hardware array a section and a shape; checked for the types.
    if cfg.backend != "hardware" or cfg.hardware is None or cfg.shape is None:
        raise ConfigError("not a hardware array", file=str(loaded.path), key=where)
    fixed = tuple(cfg.shape)
    if shape is not None and tuple(shape) != fixed:
        raise ConfigError(
            f"the hardware array has shape {fixed} but {tuple(shape)} was asked for "
            "(a mapped layer must match the chip)", file=str(loaded.path),
            key=f"{where}.shape",
        )
    if cfg.pulse is None:
        raise ConfigError("a hardware array needs a nominal 'pulse'",
                          file=str(loaded.path), key=f"{where}.pulse")
    return _HardwareArrayConfig(cfg, cfg.hardware, fixed,
                                PulseShape(cfg.pulse.amplitude_volts, cfg.pulse.width_seconds))


def open_role(loaded: LoadedConfig, name: str, role: str, *, resource: str | None = None,
              retries: int | None = None) -> RoleAdapter:
    """Open the ``role`` instrument of hardware array ``name`` (``resource`` replaces the
    configured address; ``retries`` the configured count)."""
    from dwlab.drivers.registry import open_role as open_driver_role

    hw = _hardware_config(loaded, name, None).hardware
    inst = getattr(hw.instruments, role)
    resource = resource or inst.resource
    try:
        return open_driver_role(role, inst.driver, resource, channel=inst.channel,
                                timeout_seconds=inst.timeout_seconds,
                                visa_library=inst.visa_library,
                                retries=hw.retries if retries is None else retries)
    except InstrumentConnectionError as exc:
        if socket_port(resource) is None:
            raise
        raise InstrumentConnectionError(
            f"{role} ({inst.driver}): nothing answers at {resource}; start the virtual lab "
            f"first (dwlab virtual-lab --config {loaded.path}), or let the run start its "
            "own (virtual_lab.autostart: true)") from exc


def open_hardware(
    loaded: LoadedConfig, name: str, shape: tuple[int, ...] | None = None,
    seed_offset: int = 0, event_log: EventSink | None = None, *,
    resources: dict[str, str] | None = None, **overrides: Any,
) -> HardwareArray:
    """Open the instruments of hardware array ``name`` and build the array on them.

    ``resources`` (role -> VISA resource) replaces the configured addresses, e.g. the
    ephemeral ports of a virtual lab in tests; ``overrides`` replace ``HardwareArray``
    keyword arguments (``strategy``, ``read_back``). A chip has no seed: ``seed_offset`` is
    there for the factory's common signature.
    """
    from dwlab.drivers.hardware_array import HardwareArray

    cfg = _hardware_config(loaded, name, shape)
    hw, fixed = cfg.hardware, cfg.shape
    settings: dict[str, Any] = dict(
        name=name, shape=fixed, wiring=hw.wiring.paths(fixed),
        limits=limits_from_config(cfg.array), nominal_pulse=cfg.nominal_pulse,
        conductance_range_siemens=(hw.devices.conductance_min_siemens,
                                   hw.devices.conductance_max_siemens),
        step_siemens=hw.devices.step_siemens, step_sigma_siemens=hw.devices.step_sigma_siemens,
        read_bias_volts=hw.read.bias_volts, compliance_amps=hw.read.compliance_amps,
        max_read_bias_volts=hw.read.max_bias_volts,
        max_compliance_amps=hw.read.max_compliance_amps, wires=hw.read.wires,
        nplc=hw.read.nplc, series_resistance_ohms=hw.read.series_resistance_ohms,
        pulse_period_seconds=hw.pulse_period_seconds, strategy=hw.strategy,
        read_back=hw.read_back, shared_path=hw.wiring.shared_path, event_log=event_log,
    )
    settings.update(overrides)
    HardwareArray.check_settings(**settings)  # before any instrument is opened
    resources = resources or {}
    opened: list[RoleAdapter] = []

    def open_one(role: str) -> RoleAdapter:
        adapter = open_role(loaded, name, role, resource=resources.get(role))
        opened.append(adapter)
        return adapter

    try:
        pulser, meter, router = open_one("pulser"), open_one("meter"), open_one("router")
        # The registry gives each role its adapter; the checks make that a type.
        if not isinstance(pulser, PulseSource):
            raise TypeError(f"{pulser.name} is not a pulse source")
        if not isinstance(meter, ConductanceMeter):
            raise TypeError(f"{meter.name} is not a conductance meter")
        if not isinstance(router, Router):
            raise TypeError(f"{router.name} is not a router")
        return HardwareArray(pulser=pulser, meter=meter, router=router, **settings)
    except BaseException:  # the array never took them over: hang up here
        for adapter in opened:
            adapter.close()
        raise


BACKENDS: dict[str, Callable[..., DeviceArray]] = {
    "twin": build_twin,
    "hardware": open_hardware,
}


def build_array(
    loaded: LoadedConfig, name: str = "main", shape: tuple[int, ...] | None = None,
    seed_offset: int = 0, event_log: EventSink | None = None,
) -> DeviceArray:
    """Build array ``name`` of a loaded config; the caller closes it (a run uses
    :func:`open_backends`, which closes what it built). ``shape`` sizes twins that do not
    fix one.

    ``event_log`` (anything with ``write(dict)``, e.g. a run folder's
    :class:`~dwlab.records.EventLog`) receives what a hardware array reports: each
    ``apply``, an ``apply_aborted`` with the pulses that went out before a stop, and a
    ``safe_state_failed``.
    """
    if name not in loaded.config.arrays:
        raise ConfigError(f"no array named '{name}'", file=str(loaded.path), key="arrays")
    backend = loaded.config.arrays[name].backend
    return BACKENDS[backend](loaded, name, shape, seed_offset, event_log)


def close_array(array: DeviceArray) -> None:
    """Safe state, then release the array's connections (arrays without ``close`` hold
    none: safe state only)."""
    close = getattr(array, "close", None)
    (close or array.safe_state)()


def start_virtual_lab(loaded: LoadedConfig, ports: dict[str, int] | None = None
                      ) -> VirtualLab:
    """Serve the config's virtual lab on 127.0.0.1; the caller stops it.

    ``ports`` by role (0 or none: a free one); the lab's ``resources`` say which were
    taken. A port already in use is an ``InstrumentConnectionError`` naming it (nothing is
    left listening then).
    """
    from dwlab.sim.virtual_lab import VirtualLab
    from dwlab.sim.virtual_lab.lab import LabPortError

    if loaded.config.virtual_lab is None:
        raise ConfigError("no 'virtual_lab' section", file=str(loaded.path), key="virtual_lab")
    lab = VirtualLab.from_config(loaded, {role: (ports or {}).get(role, 0) for role in ROLES})
    try:
        return lab.start()
    except LabPortError as exc:
        raise InstrumentConnectionError(f"cannot serve the virtual lab: {exc.strerror}"
                                        ) from None


class Backends:
    """What one run opens: the arrays it builds and the virtual lab its config asks for.

    Made by :func:`open_backends`, which closes everything on the way out.
    """

    def __init__(self, loaded: LoadedConfig, event_log: EventSink | None = None):
        self.loaded = loaded
        self.event_log = event_log
        self.arrays: list[DeviceArray] = []
        self.lab: VirtualLab | None = None  # the lab this run started, if any

    def array(self, name: str = "main", shape: tuple[int, ...] | None = None,
              seed_offset: int = 0) -> DeviceArray:
        """Build array ``name`` (``shape`` sizes twins that do not fix one); it is closed
        with the run. The controller's array factory has this signature."""
        resources = self._serve_lab_for(name)
        if resources is None:
            array = build_array(self.loaded, name, shape, seed_offset, self.event_log)
        else:
            array = open_hardware(self.loaded, name, shape, seed_offset, self.event_log,
                                  resources=resources)
        self.arrays.append(array)
        if resources is not None:
            for role, identity in array.describe().identity.items():
                self.check_lab_identity(role, identity)
        return array

    def open_role(self, name: str, role: str, *, retries: int | None = None) -> RoleAdapter:
        """One instrument of hardware array ``name`` on its own; the caller closes it."""
        resources = self._serve_lab_for(name) or {}
        return open_role(self.loaded, name, role, resource=resources.get(role),
                         retries=retries)

    def _serve_lab_for(self, name: str) -> dict[str, str] | None:
        """Start the virtual lab when array ``name`` is the one it serves and the config
        asks for it (``virtual_lab.autostart``); the lab's resources by role then (None:
        the configured ones). The lab lives as long as the run; its ports are the config's
        (0: free ones), and a port already taken is an error naming it."""
        lab = self.loaded.config.virtual_lab
        if lab is None or not lab.autostart or lab.array != name:
            return None
        if self.lab is None:
            self.lab = start_virtual_lab(self.loaded)
        return self.lab.resources

    def check_lab_identity(self, role: str, identity: str) -> None:
        """The instrument that answered is the one of the lab this run started (its
        serial), not another lab's on a port taken over since."""
        if self.lab is not None and self.lab.serial not in identity:
            raise InstrumentConnectionError(
                f"{role}: the instrument at {self.lab.resources.get(role)} answered "
                f"{identity!r}, not the virtual lab this run started (serial "
                f"{self.lab.serial}); is another lab serving on the same port?")

    def close(self) -> list[BaseException]:
        """Close every array once (safe state, then disconnect), even when one fails, then
        stop the lab. Each failure is recorded in the event log and returned."""
        failures: list[BaseException] = []
        arrays, self.arrays = self.arrays, []
        try:
            for array in arrays:
                try:
                    close_array(array)
                except BaseException as exc:  # keep going: every array must be made safe
                    failures.append(exc)
                    if self.event_log is not None:
                        self.event_log.write({"time": now_iso(), "event": "array_close_failed",
                                              "error": _clip(f"{type(exc).__name__}: {exc}")})
        finally:
            if self.lab is not None:
                self.lab.stop()
                self.lab = None
        return failures


@contextlib.contextmanager
def open_backends(loaded: LoadedConfig, event_log: EventSink | None = None
                  ) -> Iterator[Backends]:
    """The backends of one run: on every way out (return, error, Ctrl-C) each array built
    is closed exactly once and the virtual lab is stopped.

    A failure to close is raised when the run itself succeeded; otherwise the run's own
    error is the one raised, and says that closing failed too (a safe state not confirmed
    names what may remain on or closed; the failure is also in the event log).
    """
    backends = Backends(loaded, event_log)
    try:
        yield backends
    except BaseException as exc:
        failures = backends.close()
        if failures and isinstance(exc, DwlabError) and len(exc.args) == 1:
            exc.args = (f"{exc.args[0]}; and closing failed: {_clip(str(failures[0]))}",)
        raise
    failures = backends.close()
    if failures:
        raise failures[0]
