"""Backend factory: builds the device arrays a lab config names, by registry name only."""

from __future__ import annotations

from collections.abc import Callable

from dwlab.config import ArrayConfig, LoadedConfig
from dwlab.device import DeviceArray
from dwlab.errors import ConfigError
from dwlab.types import PulseLimits, PulseShape


def limits_from_config(cfg: ArrayConfig) -> PulseLimits:
    lim = cfg.limits
    return PulseLimits(
        max_amplitude_volts=lim.max_amplitude_volts,
        min_width_seconds=lim.min_width_seconds,
        max_width_seconds=lim.max_width_seconds,
        max_pulses_per_device=lim.max_pulses_per_device,
        max_duty_cycle=lim.max_duty_cycle,
    )


def _build_twin(
    loaded: LoadedConfig, name: str, shape: tuple[int, ...] | None, seed_offset: int
) -> DeviceArray:
    from dwlab.sim.twin import PRESETS, TwinArray

    cfg = loaded.config.arrays[name]
    where = f"arrays.{name}"
    shape = tuple(cfg.shape) if cfg.shape else shape
    if shape is None:
        raise ConfigError("a twin needs a shape (set 'shape' or let the controller size it)",
                          file=str(loaded.path), key=f"{where}.shape")
    twin = cfg.twin
    if twin.preset not in PRESETS:
        raise ConfigError(
            f"unknown preset '{twin.preset}'; known presets: {', '.join(sorted(PRESETS))}",
            file=str(loaded.path), key=f"{where}.twin.preset",
        )
    params = PRESETS[twin.preset]
    if twin.calibration is not None:
        from dwlab.sim.calibration_file import load_calibration_params

        params = load_calibration_params(loaded.resolve(twin.calibration), base=params)
    try:
        params = params.replace(**twin.params)
    except ValueError as exc:
        raise ConfigError(str(exc), file=str(loaded.path), key=f"{where}.twin.params") from None
    pulse = PulseShape(cfg.pulse.amplitude_volts, cfg.pulse.width_seconds) if cfg.pulse else None
    return TwinArray(
        shape, params, preset=twin.preset, seed=loaded.config.seed + seed_offset,
        limits=limits_from_config(cfg), nominal_pulse=pulse, torch_device=twin.torch_device,
        name=name,
    )


def _build_hardware(
    loaded: LoadedConfig, name: str, shape: tuple[int, ...] | None, seed_offset: int
) -> DeviceArray:
    from dwlab.drivers.hardware_array import HardwareArray

    lab = loaded.config.virtual_lab
    if lab is not None and lab.autostart and lab.array == name:
        ensure_virtual_lab(loaded)
    return HardwareArray.from_config(loaded, name, shape)


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
    seed_offset: int = 0,
) -> DeviceArray:
    """Build array ``name`` of a loaded config. ``shape`` sizes twins that do not fix one."""
    if name not in loaded.config.arrays:
        raise ConfigError(f"no array named '{name}'", file=str(loaded.path), key="arrays")
    backend = loaded.config.arrays[name].backend
    return BACKENDS[backend](loaded, name, shape, seed_offset)
