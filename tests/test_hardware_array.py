"""HardwareArray on the virtual lab: reads, pulses, grouping, limits before I/O."""

from __future__ import annotations

import pytest
import torch
from test_virtual_lab_support import lab_config, open_lab_array

from dwlab.app.backends import open_hardware
from dwlab.config import load_config
from dwlab.core.errors import ConfigError, PlanError, PulseLimitError
from dwlab.core.types import PulsePlan, PulseShape

NOMINAL = PulseShape(1.0, 1e-8)


@pytest.fixture
def lab_array(tmp_path):
    lab, array = open_lab_array(lab_config(tmp_path))
    yield lab, array
    array.close()
    lab.stop()


def _plan(push, pull, shape=NOMINAL, pull_shape=None):
    return PulsePlan(torch.as_tensor(push), torch.as_tensor(pull), shape, pull_shape or shape)


def test_describe_reports_shape_range_and_instrument_identities(lab_array):
    lab, array = lab_array
    info = array.describe()
    assert info.shape == (3, 4) and info.backend == "hardware"
    assert info.conductance_min_siemens < info.conductance_max_siemens
    assert info.identity["pulser"] == lab.pulser.idn
    assert info.identity["meter"] == lab.meter.idn
    assert info.identity["router"] == lab.matrix.idn


def test_read_gives_the_twin_conductance_with_series_resistance_removed(lab_array):
    lab, array = lab_array
    readout = array.read(n_averages=4)
    truth = lab.twin.conductance()
    assert readout.conductance_siemens.shape == (3, 4)
    # read noise of the twin is 5e-7 S per read; four reads average it down
    assert torch.allclose(readout.conductance_siemens, truth, atol=2e-6, rtol=0)
    assert readout.spread_siemens is not None and readout.spread_siemens.shape == (3, 4)
    subset = array.read(devices=torch.tensor([0, 5, 11]))
    assert subset.conductance_siemens.shape == (3,)
    assert torch.allclose(subset.conductance_siemens, truth.reshape(-1)[[0, 5, 11]],
                          atol=3e-6, rtol=0)
    assert lab.is_safe()


def test_apply_moves_walls_and_the_receipt_matches_what_the_lab_received(lab_array):
    lab, array = lab_array
    before = lab.twin.conductance().clone()
    push = torch.tensor([[30, 0, 5, 0], [0, 12, 0, 1], [7, 7, 0, 0]])
    pull = torch.tensor([[0, 30, 2, 0], [3, 0, 0, 0], [0, 7, 0, 9]])
    receipt = array.apply(_plan(push, pull))
    assert torch.equal(receipt.push_applied, push)
    assert torch.equal(receipt.pull_applied, pull)
    assert torch.equal(lab.delivered_push.reshape(3, 4), push)
    assert torch.equal(lab.delivered_pull.reshape(3, 4), pull)
    after = lab.twin.conductance()
    assert after[0, 0] > before[0, 0] + 1e-6  # 30 pushes
    assert after[0, 1] < before[0, 1] - 1e-6  # 30 pulls
    assert torch.equal(after[0, 3], before[0, 3])  # untouched device
    assert lab.is_safe()


def test_grouped_costs_two_round_trips_per_device_plus_a_constant(lab_array):
    lab, array = lab_array
    costs = []
    for active in (4, 12):
        push = torch.zeros(12, dtype=torch.long)
        push[:active] = 3
        pull = torch.zeros(12, dtype=torch.long)
        pull[:active] = 2
        start = sum(lab.message_counts().values())
        array.apply(_plan(push.reshape(3, 4), pull.reshape(3, 4)))
        costs.append(sum(lab.message_counts().values()) - start)
    per_device = (costs[1] - costs[0]) / 8
    assert per_device == 2  # one routing, one compound fire (both polarities)
    assert costs[0] - 4 * per_device <= 16  # the per-apply constant


def test_read_back_adds_one_round_trip_per_device(tmp_path):
    lab, array = open_lab_array(lab_config(tmp_path), read_back=True)
    try:
        costs = []
        for active in (4, 12):
            push = torch.zeros(12, dtype=torch.long)
            push[:active] = 4
            start = sum(lab.message_counts().values())
            receipt = array.apply(_plan(push.reshape(3, 4), torch.zeros(3, 4,
                                                                       dtype=torch.long)))
            costs.append(sum(lab.message_counts().values()) - start)
        assert (costs[1] - costs[0]) / 8 == 3  # route, fire, read
        g = receipt.details["read_back_siemens"]
        assert torch.allclose(g, lab.twin.conductance(), atol=3e-6, rtol=0)
    finally:
        array.close()
        lab.stop()


def test_two_pulse_shapes_make_two_groups_and_two_configurations(lab_array):
    lab, array = lab_array
    push = torch.full((3, 4), 2)
    pull = torch.full((3, 4), 2)
    receipt = array.apply(_plan(push, pull, PulseShape(1.2, 1e-8), PulseShape(0.9, 2e-8)))
    assert receipt.details["groups"] == 2
    highs = [m for m in lab.pulser.log if m.startswith(":VOLT1:HIGH")]
    assert highs == [":VOLT1:HIGH 1.2", ":VOLT1:HIGH 0.9"]
    assert torch.equal(lab.delivered_push.reshape(3, 4), push)
    assert torch.equal(lab.delivered_pull.reshape(3, 4), pull)


def test_naive_strategy_reconfigures_per_device(tmp_path):
    lab, array = open_lab_array(lab_config(tmp_path), strategy="naive")
    try:
        push = torch.full((3, 4), 2)
        receipt = array.apply(_plan(push, torch.zeros(3, 4, dtype=torch.long)))
        assert receipt.details["groups"] == 12
        assert sum(m.startswith(":VOLT1:HIGH") for m in lab.pulser.log) == 12
        assert torch.equal(lab.delivered_push.reshape(3, 4), push)
    finally:
        array.close()
        lab.stop()


@pytest.mark.parametrize("plan, error", [
    (lambda: _plan(torch.ones(3, 4, dtype=torch.long), torch.zeros(3, 4, dtype=torch.long),
                   PulseShape(2.5, 1e-8)), PulseLimitError),           # amplitude
    (lambda: _plan(torch.ones(3, 4, dtype=torch.long), torch.zeros(3, 4, dtype=torch.long),
                   PulseShape(1.0, 5e-6)), PulseLimitError),           # width
    (lambda: _plan(torch.full((3, 4), 200), torch.full((3, 4), 100)), PulseLimitError),  # count
    (lambda: _plan(torch.ones(3, 4, dtype=torch.long), torch.zeros(3, 4, dtype=torch.long),
                   PulseShape(1.0, 8e-7)), PulseLimitError),           # duty cycle 0.8
    (lambda: _plan(torch.ones(2, 4, dtype=torch.long), torch.zeros(2, 4, dtype=torch.long)),
     PlanError),                                                       # wrong shape
])
def test_a_plan_beyond_a_limit_sends_nothing_to_any_instrument(lab_array, plan, error):
    lab, array = lab_array
    before = lab.message_counts()
    with pytest.raises(error):
        array.apply(plan())
    assert lab.message_counts() == before
    assert lab.delivered_push.sum() == 0 and lab.delivered_pull.sum() == 0


def test_one_bad_device_count_stops_the_whole_plan_before_io(lab_array):
    lab, array = lab_array
    push = torch.zeros(3, 4, dtype=torch.long)
    push[2, 3] = 257  # one device over max_pulses_per_device
    before = lab.message_counts()
    with pytest.raises(PulseLimitError, match="257"):
        array.apply(_plan(push, torch.zeros(3, 4, dtype=torch.long)))
    assert lab.message_counts() == before


def test_compliance_is_set_before_the_meter_output_first_goes_on(lab_array):
    lab, array = lab_array
    array.read()
    log = lab.meter.log
    assert log.index(":SOUR:VOLT:ILIM 0.0001") < log.index("OUTPUT ON")
    assert lab.meter.compliance_set_while_off


def test_read_bias_and_compliance_limits_are_checked_before_any_command(tmp_path):
    loaded = load_config(lab_config(tmp_path))
    from dwlab.sim.virtual_lab import VirtualLab

    with VirtualLab.from_config(loaded) as lab:
        for bad in ({"read_bias_volts": 0.5}, {"compliance_amps": 0.01}):
            with pytest.raises(PulseLimitError):
                open_hardware(loaded, "chip", resources=lab.resources, **bad)
        assert lab.message_counts() == {"pulser": 0, "meter": 0, "router": 0}


def test_config_rejects_unsafe_read_settings_and_missing_wiring(tmp_path):
    with pytest.raises(ConfigError, match="bias_volts"):
        load_config(lab_config(tmp_path, hardware={"read": {"bias_volts": 0.5}}))
    with pytest.raises(ConfigError, match="no wiring"):
        load_config(lab_config(tmp_path, hardware={"wiring": {"devices": {
            0: {"write": ["1A01", "1B01"], "read": ["1C01", "1D01"]}}}}))
    with pytest.raises(ConfigError, match="crosspoint"):
        load_config(lab_config(tmp_path, hardware={"wiring": {"devices": {
            0: {"write": ["1A13"], "read": ["1C01"]}}, "crossbar": {}}}))
    with pytest.raises(ConfigError, match="pulser.driver"):
        load_config(lab_config(tmp_path, pulser="keithley2450"))


def test_a_layer_of_another_shape_is_refused(tmp_path):
    loaded = load_config(lab_config(tmp_path))
    with pytest.raises(ConfigError, match="shape"):
        open_hardware(loaded, "chip", shape=(4, 3))


@pytest.mark.parametrize("pulser, meter", [("keysight81160a", "keithley2400"),
                                           ("agilent81110a", "keithley2400"),
                                           ("keysight81160a", "keithley2450")])
def test_other_instrument_models_work_the_same(tmp_path, pulser, meter):
    lab, array = open_lab_array(lab_config(tmp_path, pulser=pulser, meter=meter))
    try:
        push = torch.tensor([[20, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 3]])
        pull = torch.tensor([[0, 20, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]])
        before = array.read(n_averages=3).conductance_siemens
        array.apply(_plan(push, pull))
        after = array.read(n_averages=3).conductance_siemens
        assert after[0, 0] > before[0, 0] and after[0, 1] < before[0, 1]
        assert torch.equal(lab.delivered_push.reshape(3, 4), push)
        assert torch.allclose(after, lab.twin.conductance(), atol=2e-6, rtol=0)
        assert all(not q for q in (lab.pulser.error_queue, lab.meter.error_queue,
                                   lab.matrix.error_queue))
        assert lab.is_safe()
    finally:
        array.close()
        lab.stop()


def test_snapshot_and_restore_program_the_devices_back(lab_array):
    lab, array = lab_array
    snap = array.snapshot()
    array.apply(_plan(torch.full((3, 4), 25), torch.zeros(3, 4, dtype=torch.long)))
    assert (lab.twin.conductance() - snap["conductance_siemens"]).mean() > 3e-5
    array.restore(snap)
    step = array.describe().step_siemens
    error = (lab.twin.conductance() - snap["conductance_siemens"]).abs()
    assert float(error.max()) < 4 * step
    assert lab.is_safe()


def test_push_and_pull_alternate_like_the_twin_in_one_message(lab_array):
    lab, array = lab_array
    push = torch.zeros(3, 4, dtype=torch.long)
    pull = torch.zeros(3, 4, dtype=torch.long)
    push[0, 0], pull[0, 0] = 3, 2
    array.apply(_plan(push, pull))
    fires = [m for m in lab.pulser.log if "*TRG" in m]
    assert fires == [":OUTP1:POL NORM;:TRIG:COUN 1;*TRG;:OUTP1:POL INV;*TRG;:OUTP1:POL NORM;"
                     "*TRG;:OUTP1:POL INV;*TRG;:OUTP1:POL NORM;*TRG;*OPC?"]


def test_alternating_order_keeps_a_wall_near_the_track_end_from_clipping(lab_array):
    lab, array = lab_array
    lab.twin.x[0, 0] = 0.9
    push = torch.zeros(3, 4, dtype=torch.long)
    pull = torch.zeros(3, 4, dtype=torch.long)
    push[0, 0], pull[0, 0] = 40, 40
    array.apply(_plan(push, pull))
    # alternating: net +40 * (mu_push - mu_pull) ~ +0.04 of the track, noise ~0.04;
    # 40 pushes first would pin the wall at the end and the pulls would leave it near 0.6
    mu = float(lab.twin.mu_push[0, 0] - lab.twin.mu_pull[0, 0])
    assert abs(float(lab.twin.x[0, 0]) - min(1.0, 0.9 + 40 * mu)) < 0.15
