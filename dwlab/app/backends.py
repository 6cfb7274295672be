"""Backend factory: builds the device arrays a lab config names, by registry name only."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from dwlab.config import ArrayConfig, LoadedConfig
from dwlab.core.device import DeviceArray
from dwlab.core.errors import ConfigError
from dwlab.core.types import PulseLimits, PulseShape


class EventSink(Protocol):
    def write(self, event: dict[str, Any]) -> None: ...


def limits_from_config(cfg: ArrayConfig) -> PulseLimits:
    return cfg.limits.pulse_limits()


def twin_params(loaded: LoadedConfig, name: str):
    """The ``TwinParams`` of twin array ``name``: preset, then calibration file, then the
    config's overrides. Every problem is a ConfigError naming file and key."""
    from dwlab.sim.twin import PRESETS

    twin = loaded.config.arrays[name].twin
    where = f"arrays.{name}.twin"
    if twin.preset not in PRESETS:
        raise ConfigError(
            f"unknown preset '{twin.preset}'; known presets: {', '.join(sorted(PRESETS))}",
            file=str(loaded.path), key=f"{where}.preset",
        )
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
        if cfg.backend == "twin":
            twin_params(loaded, name)


def _build_twin(
    loaded: LoadedConfig, name: str, shape: tuple[int, ...] | None, seed_offset: int,
    event_log: EventSink | None = None,
) -> DeviceArray:
    """A simulated array (it records no events: every pulse it takes is in its state)."""
    from dwlab.sim.twin import TwinArray

    cfg = loaded.config.arrays[name]
    shape = tuple(cfg.shape) if cfg.shape else shape
    if shape is None:
        raise ConfigError("a twin needs a shape (set 'shape' or let the controller size it)",
                          file=str(loaded.path), key=f"arrays.{name}.shape")
    params = twin_params(loaded, name)
    pulse = PulseShape(cfg.pulse.amplitude_volts, cfg.pulse.width_seconds) if cfg.pulse else None
    return TwinArray(
        shape, params, preset=cfg.twin.preset, seed=loaded.config.seed + seed_offset,
        limits=limits_from_config(cfg), nominal_pulse=pulse, torch_device=cfg.twin.torch_device,
        name=name,
    )


def _build_hardware(
    loaded: LoadedConfig, name: str, shape: tuple[int, ...] | None, seed_offset: int,
    event_log: EventSink | None = None,
) -> DeviceArray:
    from dwlab.drivers.hardware_array import HardwareArray

    lab = loaded.config.virtual_lab
    if lab is not None and lab.autostart and lab.array == name:
        ensure_virtual_lab(loaded)
    return HardwareArray.from_config(loaded, name, shape, event_log=event_log)


_RUNNING_LABS: dict[str, object] = {}


def ensure_virtual_lab(loaded: LoadedConfig) -> None:
    """Serve the config's virtual lab in this process (once), unless its ports are already
    served (then the drivers connect to that lab)."""
    import errno

    from dwlab.sim.virtual_lab import VirtualLab

    key = str(loaded.path.resolve())
    if key in _RUNNING_LABS:
        return
    lab = VirtualLab.from_config(loaded)
    try:
        lab.start()
    except OSError as exc:
        lab.stop()
        if exc.errno != errno.EADDRINUSE:
            raise ConfigError(f"cannot start the virtual lab: {exc}", file=str(loaded.path),
                              key="virtual_lab") from None
        return  # another process serves these ports: connect to it
    _RUNNING_LABS[key] = lab


BACKENDS: dict[str, Callable[..., DeviceArray]] = {
    "twin": _build_twin,
    "hardware": _build_hardware,
}


def build_array(
    loaded: LoadedConfig, name: str = "main", shape: tuple[int, ...] | None = None,
    seed_offset: int = 0, event_log: EventSink | None = None,
) -> DeviceArray:
    """Build array ``name`` of a loaded config. ``shape`` sizes twins that do not fix one.

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
    getattr(array, "close", array.safe_state)()
