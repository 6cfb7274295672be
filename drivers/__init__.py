"""Instrument drivers and the hardware array (``dwlab.drivers``).

- ``agilent81110a``, ``keithley707b``: new pymeasure drivers (declarative style);
  Keysight 81160A and Keithley 2450 / 2400 are pymeasure's stock classes.
- ``roles``: the PulseSource / ConductanceMeter / Router roles and one adapter per driver.
- ``registry``: config driver names -> (role, driver, adapter); opening instruments.
- ``hardware_array``: ``HardwareArray``, the ``DeviceArray`` built from the three roles.
- ``sim_yaml/``: pyvisa-sim definitions of every driver's commands.

Drivers import nothing from dwlab beyond ``types``, ``errors`` and ``device``.
"""
