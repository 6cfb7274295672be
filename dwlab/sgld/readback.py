"""Conductances after an apply: the array's own read-back where it has one, else a read.

A hardware array with ``read_back`` measures each device right after its pulses and puts
the conductances in its receipt (``details['read_back_siemens']``, NaN where it sent no
pulse). Reading all devices again would double the meter's round trips per step, so only
the devices the receipt misses are read. The receipt holds single measurements: it stands
in for a read of ``n_averages == 1`` only.
"""

from __future__ import annotations

import torch

from dwlab.core.device import DeviceArray
from dwlab.core.types import PulseReceipt

READ_BACK_KEY = "read_back_siemens"
"""Where an array's receipt holds the conductances it measured after the pulses."""


def conductance_after(array: DeviceArray, receipt: PulseReceipt, n_averages: int
                      ) -> torch.Tensor:
    """Every device's conductance (array shape) after the apply that gave ``receipt``."""
    read_back = receipt.details.get(READ_BACK_KEY)
    if read_back is None or n_averages != 1:
        return array.read(n_averages=n_averages).conductance_siemens
    g = torch.as_tensor(read_back).clone()  # the receipt stays as the array wrote it
    flat = g.view(-1)
    missing = torch.isnan(flat).nonzero().squeeze(1)
    if missing.numel():
        flat[missing] = array.read(devices=missing).conductance_siemens.to(flat.dtype)
    return g
