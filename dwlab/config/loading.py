"""Reading lab config files: YAML in, a validated :class:`LabConfig` out."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from dwlab.config.arrays import TwinConfig
from dwlab.config.convert import from_data
from dwlab.config.lab import LabConfig
from dwlab.config.yaml_files import read_yaml
from dwlab.core.errors import ConfigError


@dataclass(frozen=True)
class LoadedConfig:
    """A validated config together with where it came from."""

    config: LabConfig
    path: Path

    def resolve(self, relative: str) -> Path:
        """A path named in the config, relative to the config file's folder."""
        p = Path(relative)
        return p if p.is_absolute() else (self.path.parent / p)


def _twin_sections(config: LabConfig) -> Iterator[tuple[str, TwinConfig]]:
    for name, array in config.arrays.items():
        yield f"arrays.{name}.twin", array.twin
    if config.virtual_lab is not None:
        yield "virtual_lab.twin", config.virtual_lab.twin


def check_calibration_paths(loaded: LoadedConfig) -> None:
    """Every calibration file (or jump table) a config names lies inside the config's
    folder (or below):
    a config cannot make dwlab read, and quote, files elsewhere."""
    folder = loaded.path.parent.resolve()
    for key, twin in _twin_sections(loaded.config):
        for field, named in (("calibration", twin.calibration),
                             ("jump_table", twin.jump_table)):
            if named is None:
                continue
            target = loaded.resolve(named).resolve()
            where = {"file": str(loaded.path), "key": f"{key}.{field}"}
            if not target.is_relative_to(folder):
                raise ConfigError(f"{field} path '{named}' leads outside the config's folder "
                                  f"{folder}; keep calibration files there or below", **where)
            if not target.is_file():
                raise ConfigError(f"{field} file not found: {target}", **where)


def load_config(path: str | Path) -> LoadedConfig:
    """Read and validate a lab config file."""
    path = Path(path)
    data = read_yaml(path)
    loaded = LoadedConfig(from_data(LabConfig, data, file=str(path)), path)
    check_calibration_paths(loaded)
    return loaded
