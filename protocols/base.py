"""The protocol framework in one import, for the protocols and their callers.

Each idea has its own module:

- :mod:`~dwlab.protocols.params`: declared parameters and their validation;
- :mod:`~dwlab.protocols.estimate`: the array's static description, estimates and the limit
  checks made before any pulse;
- :mod:`~dwlab.protocols.clock`: real or simulated time;
- :mod:`~dwlab.protocols.context`: the run context a protocol measures through;
- :mod:`~dwlab.protocols.recenter`: bringing walls to mid-track, and its bound;
- :mod:`~dwlab.protocols.protocol`: the base class (what a protocol declares);
- :mod:`~dwlab.protocols.engine`: :func:`run_protocol` (Ctrl-C between steps, records
  flushed as measured, always ``array.safe_state()`` at the end);
- :mod:`~dwlab.protocols.plotting`: figures from a record's tables.
"""

from __future__ import annotations

from dwlab.protocols.clock import ArrayClock, Clock, RealClock, clock_for
from dwlab.protocols.context import Cell, Row, RunContext
from dwlab.protocols.engine import RunResult, RunStatus, jsonable, run_protocol
from dwlab.protocols.estimate import Estimate, Target, Timing, check_estimate, preflight
from dwlab.protocols.params import (
    ParamInfo,
    ProtocolParams,
    amplitude_param,
    describe_params,
    param,
    pulse_or_nominal,
    width_param,
)
from dwlab.protocols.plotting import Table, Tables, float_column, make_plots, save_figure
from dwlab.protocols.protocol import Protocol
from dwlab.protocols.recenter import RECENTER_HELP, add_recenter, periodic_cap, recenter_param

__all__ = [
    "RECENTER_HELP", "ArrayClock", "Cell", "Clock", "Estimate", "ParamInfo", "Protocol",
    "ProtocolParams", "RealClock", "Row", "RunContext", "RunResult", "RunStatus", "Table",
    "Tables", "Target", "Timing", "add_recenter", "amplitude_param", "check_estimate", "clock_for",
    "describe_params", "float_column", "jsonable", "make_plots", "param", "periodic_cap",
    "preflight", "pulse_or_nominal", "recenter_param", "run_protocol", "save_figure", "width_param",
]
