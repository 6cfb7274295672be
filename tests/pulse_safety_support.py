"""The pulse-safety claim and the two backends it is checked on (no tests here).

Used by ``tests/test_pulse_safety.py`` (hypothesis) and ``benchmarks/campaign_pulses.py``
(the campaign). :func:`attempt` applies one plan and checks: a plan the array must apply
reaches it exactly; any other plan ends in a dwlab error with nothing moved (twin state and
random stream unchanged; on the virtual lab no message to any instrument and delivery
counters unchanged, outputs off and crosspoints open). A broken claim raises
:class:`Violation`; an error other than a dwlab error propagates.

Each backend has a fence where pulses enter: a plan over the limit that gets past the
array is kept aside there and recorded (walking 2**62 pulses would only exhaust memory or
hang), so a regression fails the check instead of the machine.
"""

from __future__ import annotations

from pathlib import Path

import torch
from dwlab.sim import physics
from dwlab.sim.twin import TwinArray
from test_virtual_lab_support import lab_config, open_lab_array

from dwlab.core.errors import DwlabError
from dwlab.core.types import PulseLimits, PulsePlan, PulseShape

LIMIT = 255
"""Pulses per device per apply: the top of uint8, so uint8 sums wrap past it."""
SHAPE = (3, 4)
NOMINAL = PulseShape(1.0, 1e-8)
INTEGER_DTYPES = [torch.uint8, torch.int8, torch.int16, torch.uint16, torch.int32,
                  torch.uint32, torch.int64, torch.uint64]
Counts = tuple[torch.Tensor, torch.Tensor]


class Violation(AssertionError):
    """A safety claim was broken."""


def claim(holds: bool, message: str) -> None:
    if not holds:
        raise Violation(message)


class Twin:
    """A twin with the limit; what moved is its state, stream and pulse count, and any
    plan over the limit that reached its physics."""

    def __init__(self) -> None:
        self.array = TwinArray(SHAPE, limits=PulseLimits(5.0, 1e-9, 1e-6, LIMIT))
        self.over_limit: list[int] = []
        self._walk = physics.apply_pulses_fast
        physics.apply_pulses_fast = self._fenced

    def _fenced(self, x, push, pull, *args, **kwargs):
        if x is self.array.x:
            pairs = zip(push.reshape(-1).tolist(), pull.reshape(-1).tolist(), strict=True)
            most = max(p + q for p, q in pairs)
            if most > LIMIT:
                self.over_limit.append(most)
                return x, torch.zeros((), dtype=torch.bool)
        return self._walk(x, push, pull, *args, **kwargs)

    def state(self) -> tuple:
        a = self.array
        return a.x.clone(), a.generator.get_state(), a.pulses_applied, len(self.over_limit)

    def unchanged(self, before: tuple) -> bool:
        x, stream, pulses, over = self.state()
        return (torch.equal(x, before[0]) and torch.equal(stream, before[1])
                and (pulses, over) == before[2:])

    def check_delivered(self, before: tuple, expected: Counts | None) -> None:
        """The twin counts the pulses that reached it (in total, not per device)."""
        claim(self.over_limit[before[3]:] == [],
              f"the twin received {self.over_limit[before[3]:]} pulses on one device "
              f"(limit {LIMIT})")
        if expected is not None:
            got = self.array.pulses_applied - before[2]
            want = int(expected[0].sum()) + int(expected[1].sum())
            claim(got == want, f"the twin received {got} pulses; the plan has {want}")

    def close(self) -> None:
        physics.apply_pulses_fast = self._walk


class Lab:
    """A hardware array on the virtual lab; what moved is the lab's delivery counters, its
    message count, and any burst over the limit."""

    def __init__(self, folder: Path) -> None:
        self.lab, self.array = open_lab_array(
            lab_config(folder, shape=SHAPE, limits={"max_pulses_per_device": LIMIT}))
        self.over_limit: list[int] = []
        self._deliver = self.lab.deliver
        self.lab.deliver = self._fenced

    def _fenced(self, bursts: list) -> None:
        big = [b.pulses for b in bursts if b.pulses > LIMIT]
        if big:
            self.over_limit.extend(big)
            return
        self._deliver(bursts)

    def state(self) -> tuple:
        lab = self.lab
        return (lab.delivered_push.clone(), lab.delivered_pull.clone(),
                sum(lab.message_counts().values()), len(self.over_limit))

    def unchanged(self, before: tuple) -> bool:
        push, pull, messages, over = self.state()
        return (torch.equal(push, before[0]) and torch.equal(pull, before[1])
                and (messages, over) == before[2:] and self.lab.is_safe())

    def check_delivered(self, before: tuple, expected: Counts | None) -> None:
        """The lab's counters grew by exactly the plan, device by device."""
        claim(self.over_limit[before[3]:] == [],
              f"the lab received bursts of {self.over_limit[before[3]:]} pulses (limit {LIMIT})")
        claim(self.lab.is_safe(), "an output is on or a crosspoint closed after an apply")
        now_push, now_pull, _, _ = self.state()
        got = ((now_push - before[0]).reshape(SHAPE), (now_pull - before[1]).reshape(SHAPE))
        most = int((got[0] + got[1]).max())
        claim(most <= LIMIT, f"the lab delivered {most} pulses to one device (limit {LIMIT})")
        if expected is not None:
            claim(all(torch.equal(g, e) for g, e in zip(got, expected, strict=True)),
                  "the lab's delivery counters differ from the plan")

    def close(self) -> None:
        self.array.close()
        self.lab.stop()


def attempt(backend: Twin | Lab, push: object, pull: object, expected: Counts | None) -> str:
    """Apply the plan of ``push`` and ``pull`` counts (any form) and check the claim.
    ``expected``: the int64 counts the array must deliver, or None if it must refuse the
    plan. Returns what happened: "applied" or "refused: <error class>"."""
    before = backend.state()
    try:
        receipt = backend.array.apply(PulsePlan(push, pull, NOMINAL, NOMINAL))
    except DwlabError as exc:
        claim(expected is None, f"a plan the array must apply was refused: {exc}")
        claim(backend.unchanged(before), f"refused ({exc}) but something moved")
        claim(any(word in str(exc) for word in ("push", "pull", "plan")),
              f"{type(exc).__name__} that does not say what it refused: {exc}")
        return f"refused: {type(exc).__name__}"
    backend.check_delivered(before, expected)
    if expected is None:
        raise Violation("a plan that must be refused was applied")
    claim(torch.equal(receipt.push_applied, expected[0])
          and torch.equal(receipt.pull_applied, expected[1]), "the receipt differs from the plan")
    return "applied"


def allowed(push: torch.Tensor, pull: torch.Tensor) -> Counts | None:
    """The int64 counts an array must deliver for these tensors (integer dtypes, the
    array's shape, no device over the limit: judged in Python integers), else None."""
    if any(t.dtype not in INTEGER_DTYPES or tuple(t.shape) != SHAPE for t in (push, pull)):
        return None
    pairs = list(zip(push.reshape(-1).tolist(), pull.reshape(-1).tolist(), strict=True))
    if not all(p >= 0 and q >= 0 and p + q <= LIMIT for p, q in pairs):
        return None
    return tuple(torch.tensor(column).reshape(SHAPE) for column in zip(*pairs, strict=True))
