"""Characterisation protocols (``dwlab.protocols``): declared, limit-checked measurements
that talk to any ``DeviceArray`` and write crash-safe records.

From Python::

    from dwlab.protocols import PROTOCOLS, run_protocol, load_script, run_script
    run_protocol(PROTOCOLS["switching_statistics"](repeats=20), array, "runs/sw")
"""

from dwlab.protocols.base import Protocol, run_protocol
from dwlab.protocols.registry import PROTOCOLS, get_protocol
from dwlab.protocols.script import load_script, run_script, script_from_data

__all__ = ["PROTOCOLS", "Protocol", "get_protocol", "load_script", "run_protocol",
           "run_script", "script_from_data"]
