"""Instrument drivers and the hardware array (``dwlab.drivers``).

- ``agilent81110a``, ``keithley707b``: new pymeasure drivers (declarative style);
  Keysight 81160A and Keithley 2450 / 2400 are pymeasure's stock classes.
- ``adapters``: the base role adapter (error translation, safe retries, reconnects);
  ``pulsers``, ``meters``, ``routers``: one adapter per driver, giving it its role
  (the role protocols live in ``dwlab.core.roles``).
- ``registry``: driver names -> (role, driver, adapter); opening a role on a resource.
- ``hardware_array``: ``HardwareArray``, the ``DeviceArray`` built from the three roles.
- ``sim_yaml/``: pyvisa-sim definitions of every driver's commands.

Drivers import nothing from dwlab beyond ``dwlab.core`` (and ``dwlab.records`` for
timestamps); they never read a lab config: ``dwlab.app.backends`` opens the roles and
builds the array from it.
"""
