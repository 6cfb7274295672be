"""The fault matrix on the virtual lab (no tests here): cases generated from a clean run's
conversation, one run per case, and the claims every run must keep.

A case is an operation (``apply``, with read-back, or ``read``) on a 2x2 hardware array,
then the array's close, as a run ends, with one of: a fault of one kind on one instrument
at one of its messages (``after`` messages pass first), transient or persistent; a Ctrl-C
at one call of an adapter method; or a flood of bad lines sent to an instrument first.
The claims (:func:`judge`):

- the run ends in success or in dwlab errors naming an instrument (else a traceback);
- every output is off and every crosspoint open, on the virtual instruments' own state,
  except what the close's error names as unconfirmed;
- the event log lists every pulse the lab delivered (at most the one burst it names as
  unconfirmed may be missing), and the receipt agrees per device;
- what an instrument sends stays bounded, in the lab and in messages and events.

``tests/test_fault_matrix.py`` runs a sample; ``benchmarks/campaign_faults.py`` all of it.
"""

from __future__ import annotations

import contextlib
import functools
import socket
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from dwlab.sim.virtual_lab import VirtualLab
from dwlab.sim.virtual_lab.faults import FAULT_KINDS, is_query
from dwlab.sim.virtual_lab.instrument import (
    ERROR_CHARS,
    LOG_CHARS,
    LOG_MESSAGES,
    QUEUE_ENTRIES,
)
from test_virtual_lab_support import LOOPBACK, lab_config, open_lab_array

from dwlab.core.errors import DwlabError, InstrumentError
from dwlab.core.types import PUSH, PulsePlan, PulseShape
from dwlab.records import EventLog, read_events

ROLES = ("pulser", "meter", "router")
OPS = ("apply", "read")
PERSISTENT = 1000
"""``times`` of a fault that never goes away (each reconnect meets it again)."""
TEXT_LIMIT = 4000
"""The longest error message or event a run may end with (instrument text is clipped)."""
SAFE_STATE_CALLS = {"pulser": "output_off", "meter": "output_off", "router": "open_all"}
RECORD_CALLS = {"pulser": "fire", "meter": "measure_current", "router": "route"}
"""Where a Ctrl-C may fall between pulses delivered and pulses recorded."""
PULSE_MESSAGES = {"pulser": "*TRG", "meter": ":READ?", "router": "exclusiveclose"}
"""What each instrument receives for the pulses of an apply (fire, read-back, routing)."""


class InjectedInterrupt(KeyboardInterrupt):
    """The Ctrl-C a case injects (a real one still stops the campaign)."""


@dataclass(frozen=True)
class Case:
    op: str  # "apply" or "read"
    role: str
    kind: str  # a fault kind; "interrupt" (Ctrl-C at call ``after`` of method ``match``,
    # before it runs when ``times`` is 0, after when 1); "flood" (``after`` lines of
    # ``times`` bytes sent to the instrument first)
    after: int = 0
    times: int = 1
    match: str | None = None

    def __str__(self) -> str:
        match = f" on {self.match!r}" if self.match else ""
        return f"{self.op}: {self.kind} on {self.role} after {self.after}{match} x{self.times}"


@dataclass(frozen=True)
class Outcome:
    """How a case ended (plain values: outcomes cross process boundaries)."""

    case: Case
    status: str  # 'failed' (a claim broken), 'traceback' (a non-dwlab error), 'handled'
    violations: tuple[str, ...]
    errors: tuple[str, ...]  # "Type: message" of the operation's and the close's errors


def _outcome(case: Case, errors: list[BaseException], violations: list[str]) -> Outcome:
    if violations:
        status = "failed"
    elif any(not isinstance(e, (DwlabError, InjectedInterrupt)) for e in errors):
        status = "traceback"
    else:
        status = "handled"
    return Outcome(case, status, tuple(violations),
                   tuple(f"{type(e).__name__}: {str(e)[:300]}" for e in errors))


def matrix_config(folder: Path) -> Path:
    instruments = {role: {"driver": driver, "resource": LOOPBACK, "timeout_seconds": 0.25}
                   for role, driver in (("pulser", "agilent81110a"),
                                        ("meter", "keithley2450"), ("router", "keithley707b"))}
    return lab_config(folder, shape=(2, 2), hardware={"instruments": instruments,
                                                      "read_back": True})


def plan() -> PulsePlan:
    """Push 3 and pull 2 on every device: one pulse shape, alternating bursts."""
    return PulsePlan.uniform(torch.full((2, 2), 3), torch.full((2, 2), 2),
                             PulseShape(1.0, 1e-8))


def outcome_of(case: Case) -> Outcome:
    """Run ``case`` (see :func:`run_case`)."""
    return run_case(case)[0]


def run_case(case: Case | None, op: str = "apply") -> tuple[Outcome, dict[str, list[str]]]:
    """Open the lab and array, arm ``case`` (none: a clean run of ``op``), run its
    operation and close the array as a run does; the outcome and what each instrument
    received meanwhile."""
    op = case.op if case is not None else op
    with tempfile.TemporaryDirectory() as tmp:
        events_path = Path(tmp) / "events.jsonl"
        log = EventLog(events_path)
        lab, array = _open(matrix_config(Path(tmp)), log)
        counts = lab.message_counts()
        try:
            if case is not None:
                _arm(case, lab, array)
            op_error = _error_of(lambda: array.apply(plan()) if op == "apply" else array.read())
            close_error = _error_of(array.close)
            errors = [e for e in (op_error, close_error) if e is not None]
            violations = judge(lab, array, errors, close_error, read_events(events_path))
            received = {role: lab.instruments[role].since(counts[role]) for role in ROLES}
        finally:
            lab.stop()
            log.close()
    return _outcome(case or Case(op, "", "none"), errors, violations), received


def _open(config: Path, log: EventLog) -> tuple[VirtualLab, Any]:
    """The lab and its array, before any fault (a slow machine may time out once)."""
    for _ in range(2):
        with contextlib.suppress(InstrumentError):
            return open_lab_array(config, event_log=log)
    return open_lab_array(config, event_log=log)


def _error_of(step: Any) -> BaseException | None:
    try:
        step()
    except (Exception, InjectedInterrupt) as exc:
        return exc
    return None


def _arm(case: Case, lab: VirtualLab, array: Any) -> None:
    if case.kind == "interrupt":
        adapter = getattr(array, case.role)
        method = getattr(adapter, case.match or "")
        calls = [0]

        def interrupted(*args: Any) -> Any:
            calls[0] += 1
            if calls[0] - 1 == case.after and case.times == 0:
                raise InjectedInterrupt
            result = method(*args)
            if calls[0] - 1 == case.after:
                raise InjectedInterrupt
            return result

        setattr(adapter, case.match or "", interrupted)
    elif case.kind == "flood":
        flood(lab, case.role, lines=case.after, size=case.times)
    else:
        lab.inject(case.role, case.kind, after=case.after, times=case.times, match=case.match)


def flood(lab: VirtualLab, role: str, *, lines: int, size: int) -> None:
    """Send ``lines`` unknown commands of ``size`` bytes to ``role``, then wait for the
    instrument to have read them (its reply to ``*IDN?`` comes after)."""
    with socket.create_connection(("127.0.0.1", lab.ports[role]), timeout=30) as sock:
        line = b"X" * max(size - 1, 1) + b"\n"
        for _ in range(lines):
            sock.sendall(line)
        sock.sendall(b"*IDN?\n")
        with sock.makefile("rb") as reply:
            reply.readline()


def judge(lab: VirtualLab, array: Any, errors: list[BaseException],
          close_error: BaseException | None, events: list[dict[str, Any]]) -> list[str]:
    """Every claim the run broke (none: it kept them all)."""
    violations = []
    failed_safe = close_error if hasattr(close_error, "unconfirmed") else getattr(
        close_error, "safe_state_error", None)
    unconfirmed: dict[str, list[str]] = getattr(failed_safe, "unconfirmed", {})
    for role, on in lab.outputs_on().items():
        if on and role not in unconfirmed:
            violations.append(f"{role} output left on, not reported")
    hidden = lab.closed_crosspoints() - set(unconfirmed.get("router", []))
    if hidden:
        violations.append(f"crosspoints {sorted(hidden)} left closed, not reported")
    violations += _record_violations(lab, array, events)
    for exc in errors:
        text = str(exc)
        if len(text) > TEXT_LIMIT:
            violations.append(f"a message of {len(text)} characters")
        if isinstance(exc, DwlabError) and not any(r in text for r in (*ROLES, array.name)):
            violations.append(f"an error naming no instrument: {text[:200]}")
    violations += [f"an event of {len(str(e))} characters" for e in events
                   if len(str(e)) > TEXT_LIMIT]
    return violations + _lab_bound_violations(lab)


def _record_violations(lab: VirtualLab, array: Any, events: list[dict[str, Any]]) -> list[str]:
    """The event log and the receipt against the lab's delivery counters."""
    applied = [e for e in events if e["event"] == "apply"]
    aborted = [e for e in events if e["event"] == "apply_aborted"]
    recorded = sum(e["pulses"] for e in applied) + sum(e["pulses_applied"] for e in aborted)
    slack = sum(n for e in aborted if e.get("unconfirmed")
                for _, n in e["unconfirmed"]["bursts"])
    delivered = int(lab.delivered_push.sum() + lab.delivered_pull.sum())
    if not recorded <= delivered <= recorded + slack:
        return [f"{delivered} pulses delivered, {recorded} recorded (+{slack} unconfirmed)"]
    receipt = array.last_receipt
    if receipt is None:
        return [] if delivered == 0 else [f"{delivered} pulses delivered, no receipt"]
    for polarity, delivered_n, applied_n in (
            (PUSH, lab.delivered_push, receipt.push_applied),
            (-PUSH, lab.delivered_pull, receipt.pull_applied)):
        extra = delivered_n - applied_n.reshape(-1)
        allowed = torch.zeros_like(extra)
        unconfirmed = receipt.details.get("unconfirmed")
        if unconfirmed is not None:
            allowed[unconfirmed["device"]] = sum(
                n for p, n in unconfirmed["bursts"] if (p == PUSH) == (polarity == PUSH))
        if bool((extra < 0).any()) or bool((extra > allowed).any()):
            return [f"receipt {applied_n.reshape(-1).tolist()} against delivered "
                    f"{delivered_n.tolist()}"]
    return []


def _lab_bound_violations(lab: VirtualLab) -> list[str]:
    """The lab keeps bounded logs and queues, whatever it was sent."""
    violations = []
    for role, instrument in lab.instruments.items():
        if len(instrument.log) > LOG_MESSAGES or any(len(m) > LOG_CHARS
                                                     for m in instrument.log):
            violations.append(f"the {role}'s command log is unbounded")
        queue = instrument.error_queue
        if len(queue) > QUEUE_ENTRIES or any(len(t) > ERROR_CHARS for _, t in queue):
            violations.append(f"the {role}'s error queue is unbounded")
    return violations


# -- the cases ---------------------------------------------------------------------------


@functools.cache
def conversation(op: str) -> dict[str, tuple[str, ...]]:
    """What each instrument receives during ``op`` and the close, in a clean run."""
    outcome, received = run_case(None, op)
    assert outcome.status == "handled" and not outcome.errors, outcome
    return {role: tuple(messages) for role, messages in received.items()}


def fault_cases(op: str) -> Iterator[Case]:
    """Each fault kind on each instrument at each of its messages (each query for a
    timeout or garble); timeouts, drops and garbles also persistent."""
    for role, messages in conversation(op).items():
        for kind in FAULT_KINDS:
            counted = [m for m in messages if kind not in ("timeout", "garble") or is_query(m)]
            for after in range(len(counted)):
                for times in (1, PERSISTENT) if kind in ("timeout", "drop", "garble") else (1,):
                    yield Case(op, role, kind, after, times)


def safe_state_cases(op: str) -> Iterator[Case]:
    """Faults on the safe-state commands themselves (at each of their occurrences: once,
    twice, for good), and a Ctrl-C at each safe-state call."""
    for role, messages in conversation(op).items():
        closing = sorted(set(messages[-2:]))  # the close's command and confirmation
        for message in closing:
            for kind in ("timeout", "drop", "garble", "kill"):
                if kind in ("timeout", "garble") and not is_query(message):
                    continue
                for after in range(messages.count(message)):
                    for times in (1, 2, PERSISTENT):
                        yield Case(op, role, kind, after, times, match=message)
        calls = sum(m == messages[-2] for m in messages)
        for after in range(calls):
            yield Case(op, role, "interrupt", after, 0, match=SAFE_STATE_CALLS[role])


def record_cases() -> Iterator[Case]:
    """Each fault on each message after an apply's last pulse (the apply is complete: its
    record must survive the closing safe state); a Ctrl-C before and after each call that
    delivers or confirms pulses; floods of long and of many bad lines before an apply."""
    messages = conversation("apply")
    for case in fault_cases("apply"):
        sent = messages[case.role]
        counted = [i for i, m in enumerate(sent)
                   if case.kind not in ("timeout", "garble") or is_query(m)]
        if counted[case.after] > max(i for i, m in enumerate(sent)
                                     if PULSE_MESSAGES[case.role] in m):
            yield case
    counts = {role: sum(mark in m for m in messages[role])
              for role, mark in PULSE_MESSAGES.items()}
    for role, method in RECORD_CALLS.items():
        for after in range(counts[role]):
            for times in (0, 1):
                yield Case("apply", role, "interrupt", after, times, match=method)
    for role in ROLES:
        for lines, size in ((1, 20_000_000), (3, 20_000), (2 * QUEUE_ENTRIES, 300),
                            (LOG_MESSAGES + 10, 8)):
            yield Case("apply", role, "flood", lines, size)
