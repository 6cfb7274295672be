"""Domain-wall physics, vectorised over devices (pure functions on torch tensors).

Position ``x`` is the wall position as a fraction of the track, in ``[0, 1]``.
One pulse of polarity ``s`` moves the wall by ``s * mu + sigma * xi`` (then clipped).
Mean step and spread depend on drive: no motion below the depinning threshold ``v_th``;
above it the mean step grows linearly with overdrive and with width, and the spread grows
like the square root of the mean (diffusive, thermally activated motion).

Pulse order is the hardware's: while both polarities remain, pulses alternate push, pull,
push, pull, ...; the surplus of the majority polarity follows.

Every function takes per-device tensors of one shape (or scalars that broadcast) and draws
its noise from the ``generator`` it is given, on the tensors' device.

Modules: ``drive`` (the drive law), ``noise`` (seeded Gaussian draws), ``fast`` (the
closed form used by default), ``near_end`` (exact pulse-by-pulse walks near a track end),
``reference`` (the slow pulse-by-pulse path tests compare against), ``readout``
(conductance and retention), ``notches`` (multi-state pinned walls), ``binary`` (binary
DW synapses and MTJs).
"""

from dwlab.sim.physics.binary import (
    binomial_fraction,
    mtj_switch_probability,
    pass_probability,
    two_state_pulses,
)
from dwlab.sim.physics.drive import drive_factor, step_moments
from dwlab.sim.physics.fast import apply_pulses_fast
from dwlab.sim.physics.near_end import _similar_count_chunks, apply_pulses_one_end
from dwlab.sim.physics.noise import normal_
from dwlab.sim.physics.notches import nearest_notch, notch_positions
from dwlab.sim.physics.readout import conductance, relax
from dwlab.sim.physics.reference import apply_pulses_reference

__all__ = [
    "apply_pulses_fast", "apply_pulses_one_end", "apply_pulses_reference", "binomial_fraction",
    "conductance", "drive_factor", "mtj_switch_probability", "nearest_notch",
    "normal_", "notch_positions", "pass_probability", "relax", "step_moments", "two_state_pulses",
    # internals the unit tests check directly
    "_similar_count_chunks",
]
