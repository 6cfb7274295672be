"""Reading lab config files: YAML in, a validated :class:`LabConfig` out."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from dwlab.config.convert import from_data
from dwlab.config.lab import LabConfig
from dwlab.core.errors import ConfigError


def read_yaml(path: str | Path) -> Any:
    """``yaml.safe_load`` a file, with a ConfigError for missing or unparsable files."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError("file not found", file=str(path))
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML: {exc}", file=str(path)) from None


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
