"""The fault matrix on the virtual lab, a bounded sample of it (the whole matrix:
``benchmarks/campaign_faults.py``), and the holes it found, one test each: a dropped or
dead switch-matrix link (issue 13 item 2), pulses lost from the records when the last
safe state fails and retries on a dead session (item 3), unbounded lines, logs, queues
and error texts (item 9).
"""

from __future__ import annotations

import random
import socket

import pytest
import torch
from dwlab.drivers.safe_state import SafeStateError
from dwlab.sim.virtual_lab.faults import FAULT_KINDS
from dwlab.sim.virtual_lab.instrument import (
    ERROR_CHARS,
    LOG_MESSAGES,
    QUEUE_ENTRIES,
    QUEUE_OVERFLOW,
)
from dwlab.sim.virtual_lab.server import LINE_BYTES
from fault_matrix_support import (
    ROLES,
    Case,
    fault_cases,
    flood,
    outcome_of,
    plan,
    record_cases,
    safe_state_cases,
)
from test_virtual_lab_support import lab_config, open_lab_array

from dwlab.app.backends import open_backends
from dwlab.config import load_config
from dwlab.core.errors import InstrumentError, InstrumentReplyError
from dwlab.records import EventLog, read_events


def _one_of(cases, seed: str) -> Case:
    return random.Random(seed).choice(list(cases))


@pytest.mark.parametrize("kind", FAULT_KINDS)
@pytest.mark.parametrize("role", ROLES)
def test_each_fault_on_each_instrument_during_an_apply_keeps_every_claim(role, kind):
    """One fault point per (instrument, kind), drawn with a fixed seed."""
    case = _one_of((c for c in fault_cases("apply") if c.role == role and c.kind == kind),
                   f"apply {role} {kind}")
    outcome = outcome_of(case)
    assert outcome.status == "handled", (str(case), outcome)


@pytest.mark.parametrize("kind", FAULT_KINDS)
def test_each_fault_during_a_read_keeps_every_claim(kind):
    case = _one_of((c for c in fault_cases("read") if c.kind == kind), f"read {kind}")
    outcome = outcome_of(case)
    assert outcome.status == "handled", (str(case), outcome)


@pytest.mark.parametrize("seed", range(3))
def test_faults_on_the_safe_state_itself_keep_every_claim(seed):
    case = _one_of([*safe_state_cases("apply"), *safe_state_cases("read")], f"safe {seed}")
    outcome = outcome_of(case)
    assert outcome.status == "handled", (str(case), outcome)


@pytest.mark.parametrize("seed", range(3))
def test_no_record_is_lost_to_a_late_fault_a_ctrl_c_or_a_flood(seed):
    case = _one_of(record_cases(), f"records {seed}")
    outcome = outcome_of(case)
    assert outcome.status == "handled", (str(case), outcome)


# -- the holes, one by one ---------------------------------------------------------------


@pytest.fixture
def rig(tmp_path):
    log = EventLog(tmp_path / "events.jsonl")
    lab, array = open_lab_array(lab_config(tmp_path, shape=(2, 2)), event_log=log)
    yield lab, array, tmp_path / "events.jsonl"
    lab.clear_faults()
    try:
        array.close()
    except InstrumentError:
        pass  # a killed server: the test has looked at what it left
    lab.stop()
    log.close()


def test_after_a_dropped_matrix_link_a_fresh_session_opens_every_crosspoint(rig):
    lab, array, _ = rig
    # routing fails on the link and on its retry; the safe state reconnects and opens
    lab.inject("router", "drop", match="exclusiveclose", after=1, times=2)
    with pytest.raises(InstrumentError) as info:
        array.apply(plan())
    assert "safe state FAILED" not in str(info.value)
    assert lab.closed_crosspoints() == set() and lab.is_safe()


def test_a_dead_matrix_is_reported_with_exactly_the_crosspoints_left_closed(rig):
    lab, array, events = rig
    lab.inject("router", "kill", match="exclusiveclose", after=2)
    with pytest.raises(InstrumentError) as info:
        array.apply(plan())
    left = lab.closed_crosspoints()
    assert left  # the previous device's crosspoints: nothing can open them now
    unconfirmed = info.value.safe_state_error.unconfirmed
    assert set(unconfirmed) == {"router"}
    assert left <= set(unconfirmed["router"])
    assert all(c in str(info.value) for c in left)
    failed = [e for e in read_events(events) if e["event"] == "safe_state_failed"]
    assert failed and failed[-1]["unconfirmed"] == unconfirmed


@pytest.mark.parametrize("kind", ["timeout", "garble"])
def test_a_completed_apply_is_recorded_though_the_last_safe_state_fails(rig, kind):
    lab, array, events = rig
    # the meter's output-off confirmation fails on the link and on a fresh session
    lab.inject("meter", kind, match="OUTPUT?", times=2)
    with pytest.raises(InstrumentError, match="safe state FAILED") as info:
        array.apply(plan())
    delivered = int(lab.delivered_push.sum() + lab.delivered_pull.sum())
    assert delivered == 20
    assert [e["event"] for e in read_events(events)] == ["apply", "safe_state_failed"]
    assert read_events(events)[0]["pulses"] == delivered
    assert array.last_receipt is not None and array.last_receipt.pulses_total == delivered
    assert info.value.receipt.pulses_total == delivered


@pytest.mark.parametrize("role", ROLES)
def test_after_a_timeout_the_retry_runs_on_a_fresh_session(rig, role):
    lab, array, _ = rig
    confirm = {"pulser": ":OUTP1?", "meter": "OUTPUT?", "router": "getclose"}[role]
    lab.inject(role, "timeout", match=confirm)  # the confirmation of the first switch-off
    array.safe_state()  # on a dead session: pyvisa's InvalidSession
    assert lab.is_safe()


def test_the_servers_bound_each_line_their_log_and_their_error_queue(rig):
    lab, _, _ = rig
    flood(lab, "pulser", lines=1, size=20_000_000)
    assert lab.pulser.error_queue[-1] == (-363, "Input buffer overrun")
    flood(lab, "pulser", lines=QUEUE_ENTRIES + 5, size=LINE_BYTES)
    assert len(lab.pulser.error_queue) == QUEUE_ENTRIES
    assert lab.pulser.error_queue[-1] == QUEUE_OVERFLOW
    assert all(len(text) <= ERROR_CHARS for _, text in lab.pulser.error_queue)
    flood(lab, "router", lines=LOG_MESSAGES + 10, size=4)
    assert len(lab.matrix.log) == LOG_MESSAGES
    assert lab.message_counts()["router"] > LOG_MESSAGES


def test_a_long_instrument_error_is_cut_in_the_message_and_the_event(rig):
    lab, array, events = rig
    with socket.create_connection(("127.0.0.1", lab.ports["pulser"])) as sock:
        sock.sendall(b":" + b"X" * (LINE_BYTES - 10) + b"\n*IDN?\n")
        sock.recv(100)
    with pytest.raises(InstrumentReplyError, match="pulser reported") as info:
        array.apply(plan())
    assert len(str(info.value)) < 2000
    assert all(len(str(e)) < 2000 for e in read_events(events))
    assert lab.is_safe()
    assert torch.equal(info.value.receipt.push_applied.reshape(-1), lab.delivered_push)


def test_a_failed_run_also_says_what_its_close_could_not_make_safe(tmp_path):
    loaded = load_config(lab_config(tmp_path))

    class StuckArray:
        def close(self):
            raise SafeStateError({"router": ["1A01"]}, {"router": InstrumentError("gone")})

    with pytest.raises(InstrumentError, match="no reply") as info:
        with open_backends(loaded) as backends:
            backends.arrays.append(StuckArray())
            raise InstrumentError("pulser: no reply")
    assert "closing failed: safe state FAILED: crosspoints 1A01 not confirmed open" in str(
        info.value)
