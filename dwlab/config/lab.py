"""The whole lab config: named arrays, controller, mapping, training and virtual lab."""

from __future__ import annotations

from typing import Annotated, Any

from annotated_types import Interval
from pydantic import Field, model_validator

from dwlab.config.arrays import ArrayConfig
from dwlab.config.convert import Schema
from dwlab.config.problems import KeyProblem
from dwlab.config.quantities import MAX_INT
from dwlab.config.training import ControllerConfig, MappingRule, TrainingConfig
from dwlab.config.virtual_lab import VirtualLabConfig, socket_port
from dwlab.core.instruments import ROLES


class LabConfig(Schema):
    name: str = "unnamed"
    seed: Annotated[int, Interval(ge=0, le=MAX_INT)] = 0
    arrays: dict[str, ArrayConfig] = Field(default_factory=lambda: {"main": ArrayConfig()})
    controller: ControllerConfig = Field(default_factory=ControllerConfig)
    mapping: list[MappingRule] = Field(default_factory=list)
    """First matching rule wins; unmatched mapped parameters go to the array 'main'."""
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    virtual_lab: VirtualLabConfig | None = None
    """The virtual lab: SCPI servers on 127.0.0.1 backed by one twin."""

    @model_validator(mode="after")
    def _arrays_named_exist(self) -> LabConfig:
        for i, rule in enumerate(self.mapping):
            if rule.array not in self.arrays:
                raise KeyProblem(f"mapping[{i}].array", f"names '{rule.array}', not one of "
                                 f"{', '.join(sorted(self.arrays))}")
        if "main" not in self.arrays:
            raise KeyProblem("arrays", "arrays must contain 'main' (the default array)")
        return self

    @model_validator(mode="after")
    def _virtual_lab_serves_hardware(self) -> LabConfig:
        if self.virtual_lab is None:
            return self
        served = self.arrays.get(self.virtual_lab.array)
        if served is None or served.backend != "hardware" or served.hardware is None:
            raise KeyProblem("virtual_lab.array", f"virtual_lab.array '{self.virtual_lab.array}' "
                             "must name a hardware array")
        for role in ROLES:
            instrument = getattr(served.hardware.instruments, role)
            key = f"arrays.{self.virtual_lab.array}.hardware.instruments.{role}"
            if socket_port(instrument.resource) is None:
                raise KeyProblem(f"{key}.resource", f"the virtual lab serves this array: "
                                 f"'{instrument.resource}' must be TCPIP::127.0.0.1::PORT::SOCKET")
            if instrument.visa_library != "@py":
                raise KeyProblem(f"{key}.visa_library", "the virtual lab serves this array: "
                                 f"'{instrument.visa_library}' must be '@py' (pyvisa-py "
                                 "reaches the lab's sockets)")
        return self


def lab_json_schema() -> dict[str, Any]:
    """JSON schema of a lab config file, for editors (quantities: number or string)."""
    schema = LabConfig.model_json_schema()
    schema["title"] = "dwlab lab config"
    return schema
