"""One read per step: the controller takes the conductances an array measured right after
its pulses (the receipt's read-back) and reads only what the receipt misses."""

from __future__ import annotations

import pytest
import torch
from dwlab.sim.twin import PRESETS, TwinArray
from test_virtual_lab_support import lab_config, open_lab_array

from dwlab.config import ControllerConfig
from dwlab.core.types import PulsePlan, PulseReceipt, PulseShape
from dwlab.sgld.controller import build_optimizer
from dwlab.sgld.readback import READ_BACK_KEY, conductance_after

PULSE = PulseShape(1.0, 1e-8)


class ReadBackTwin(TwinArray):
    """A twin that measures each pulsed device after the apply, as a hardware array with
    ``read_back`` does, and records every read."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.reads: list[int] = []  # devices read per call
        self.last_receipt: PulseReceipt | None = None

    def apply(self, plan: PulsePlan, **kwargs) -> PulseReceipt:
        receipt = super().apply(plan, **kwargs)
        g = super().read().conductance_siemens.clone()
        g[(plan.push + plan.pull) == 0] = float("nan")
        receipt.details[READ_BACK_KEY] = g
        self.last_receipt = receipt
        return receipt

    def read(self, n_averages=1, devices=None):
        self.reads.append(self.size if devices is None else int(devices.numel()))
        return super().read(n_averages, devices)


def pulsed(twin: ReadBackTwin, mask: torch.Tensor) -> PulseReceipt:
    push = mask.to(torch.int32) * 3
    return twin.apply(PulsePlan(push, torch.zeros_like(push), PULSE, PULSE))


def test_the_receipt_stands_in_for_the_devices_it_covers():
    twin = ReadBackTwin((4, 5), PRESETS["continuous_dw"], seed=1)
    receipt = pulsed(twin, torch.ones(4, 5, dtype=torch.bool))
    held = receipt.details[READ_BACK_KEY].clone()
    g = conductance_after(twin, receipt, n_averages=1)
    assert twin.reads == [] and torch.equal(g, held)
    g[0, 0] = 0.0
    assert torch.equal(receipt.details[READ_BACK_KEY], held)  # the receipt is left alone

    mask = torch.zeros(4, 5, dtype=torch.bool)
    mask[1, 2] = mask[3, 0] = True
    receipt = pulsed(twin, mask)
    g = conductance_after(twin, receipt, n_averages=1)
    assert twin.reads == [18]  # only the devices without a read-back
    assert torch.equal(g[mask], receipt.details[READ_BACK_KEY][mask])
    assert torch.allclose(g, twin.conductance(), atol=6 * twin.params.read_noise_siemens)


def test_averaged_reads_and_arrays_without_read_back_are_read():
    twin = ReadBackTwin((3, 3), PRESETS["continuous_dw"], seed=2)
    receipt = pulsed(twin, torch.ones(3, 3, dtype=torch.bool))
    conductance_after(twin, receipt, n_averages=4)  # one measurement is no average of 4
    assert twin.reads == [9]
    plain = TwinArray((3, 3), PRESETS["continuous_dw"], seed=2)
    receipt = plain.apply(PulsePlan.uniform(torch.ones(3, 3, dtype=torch.int32),
                                            torch.zeros(3, 3, dtype=torch.int32), PULSE))
    assert conductance_after(plain, receipt, 1).shape == (3, 3)


def test_controller_steps_read_nothing_beyond_the_receipt():
    twins: list[ReadBackTwin] = []

    def factory(name, shape, seed_offset):
        twins.append(ReadBackTwin(shape, PRESETS["continuous_dw"], seed=seed_offset))
        return twins[-1]

    model = torch.nn.Linear(6, 4, bias=False)
    opt = build_optimizer(model, ControllerConfig(scheme="push_pull_pair", update_bits=4),
                          dataset_size=100, array_factory=factory)
    twin = twins[0]
    twin.reads.clear()
    for _ in range(3):
        model.weight.grad = torch.randn_like(model.weight)
        opt.step()
        g = opt.weights[0].last_read
        assert torch.equal(g, twin.last_receipt.details[READ_BACK_KEY])
        assert torch.equal(model.weight.detach(), opt.weights[0].alpha * (g[0] - g[1]))
    assert twin.reads == []  # every device is pulsed each step: the receipt covers all


def meter_reads(lab) -> int:
    return sum(m.strip().lstrip(":").upper().startswith(("READ?", "MEAS"))
               for m in lab.instruments["meter"].log)


@pytest.mark.parametrize("read_back", [False, True])
def test_on_the_virtual_lab_each_device_is_read_once_per_step(tmp_path, read_back):
    """A hardware array (3 x 4) on the virtual lab, with and without its read-back."""
    lab, array = open_lab_array(lab_config(tmp_path), read_back=read_back)
    try:
        torch.manual_seed(0)
        model = torch.nn.Linear(4, 3, bias=False)
        opt = build_optimizer(model, ControllerConfig(scheme="push_pull", update_bits=4),
                              dataset_size=100, array_factory=lambda *_: array)
        model.weight.grad = torch.randn_like(model.weight)
        before = meter_reads(lab)
        opt.step()
        assert meter_reads(lab) - before == array.size
        dw = opt.weights[0]
        if read_back:
            g = array.last_receipt.details[READ_BACK_KEY]
            assert torch.equal(dw.last_read, g)
            assert torch.allclose(model.weight.detach(), dw.alpha * (g - dw.g_mid))
    finally:
        array.close()
        lab.stop()
