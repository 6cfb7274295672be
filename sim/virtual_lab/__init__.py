"""The virtual lab: a twin behind real SCPI/TSP servers on 127.0.0.1.

Each instrument of one hardware array (pulse generator, source-meter, switch matrix) is a
small threaded TCP server speaking the command subset the dwlab drivers send, newline
terminated. All of them share ONE :class:`~dwlab.sim.twin.TwinArray`: a burst from the
pulser moves the walls of the devices whose write crosspoints the matrix has closed, and
the source-meter measures the current through the devices whose read crosspoints are
closed. Drivers reach it through pyvisa-py (``TCPIP::127.0.0.1::PORT::SOCKET``) exactly as
they reach a bench.

Options: latency added before each message; injected faults (a query left unanswered, a
dropped connection, an error-queue entry, a garbled reply, a killed server). Every server
keeps a command log, and its output and switch state can be read directly by tests; lines,
log and error queue are bounded as on a real instrument.

Modules: ``faults`` (injected faults), ``instrument`` (command log, error queue, faults),
``scpi`` (the one SCPI parser and the IEEE 488.2 common commands), ``command_sets`` (each
model's commands in one table, shared with the driver tests), ``pulser``, ``source_meter``
and ``matrix`` (the instrument models), ``server`` (TCP serving on loopback) and ``lab``
(:class:`VirtualLab`: the instruments around one twin; bursts that take their time; a serial
of its own).
"""

from dwlab.sim.virtual_lab.lab import VirtualLab

__all__ = ["VirtualLab"]
