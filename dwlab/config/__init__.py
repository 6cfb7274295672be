"""Typed lab configs.

YAML is read with ``yaml.safe_load`` and validated into frozen pydantic models, which
refuse unknown keys, wrong types, non-finite numbers and out-of-range values. Quantities
may carry units ("5 ns"); they are plain SI floats once validated. Every problem of a file
is reported at once, in one :class:`ConfigError` naming the file and each dotted key.

Sections are owned by the parts that use them; all schemas live here so that the core can
validate a whole file without importing drivers, sim or protocols.
"""

from dwlab.config.arrays import ArrayConfig, LimitsConfig, PulseConfig, TwinConfig
from dwlab.config.convert import Schema, evolve, from_data, to_data
from dwlab.config.hardware import (
    CrossbarWiringConfig,
    DeviceNominalConfig,
    DeviceWiringConfig,
    HardwareConfig,
    InstrumentConfig,
    InstrumentsConfig,
    ReadConfig,
    WiringConfig,
)
from dwlab.config.lab import LabConfig, lab_json_schema
from dwlab.config.loading import LoadedConfig, load_config, read_yaml
from dwlab.config.quantities import Amps, Finite, Ohms, Seconds, Siemens, Volts
from dwlab.config.training import ControllerConfig, MappingRule, ScheduleConfig, TrainingConfig
from dwlab.config.virtual_lab import FaultConfig, VirtualLabConfig, socket_port

__all__ = [
    "Amps", "ArrayConfig", "ControllerConfig", "CrossbarWiringConfig", "DeviceNominalConfig",
    "DeviceWiringConfig", "FaultConfig", "Finite", "HardwareConfig", "InstrumentConfig",
    "InstrumentsConfig", "LabConfig", "LimitsConfig", "LoadedConfig", "MappingRule", "Ohms",
    "PulseConfig", "ReadConfig", "ScheduleConfig", "Schema", "Seconds", "Siemens",
    "TrainingConfig", "TwinConfig", "Volts", "VirtualLabConfig", "WiringConfig", "evolve",
    "from_data", "lab_json_schema", "load_config", "read_yaml", "socket_port", "to_data",
]
