"""Crash tests: SIGKILL at seeded points of a training run (mid-epoch, inside a checkpoint
write) and of a protocol run leaves every record readable, and ``--resume`` ends bit-exact
with an uninterrupted run. A bounded sample of ``benchmarks/campaign_runs.py``'s sweep."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import campaign_runs as campaign  # noqa: E402
import kill_points  # noqa: E402


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A config, an uninterrupted reference run and the write points of each run kind."""
    return campaign.Lab(tmp_path_factory.mktemp("crash"))


def test_the_kill_points_cover_checkpoint_writes_and_every_record(lab):
    kinds = {kill_points.write_kind(n) for n in lab.train_writes}
    assert {"checkpoint write", "steps.csv", "epochs.csv", "events.jsonl"} <= kinds
    assert len(lab.protocol_writes) > 10


def test_a_training_run_killed_inside_a_checkpoint_write_resumes_bit_exact(lab):
    writes = [i + 1 for i, n in enumerate(lab.train_writes)
              if kill_points.write_kind(n) == "checkpoint write"]
    # the second checkpoint's temporary file is written, not yet renamed over the first
    assert campaign.kill_training(lab, writes[1]) == ("handled", "bit-exact, readable")


def test_killed_runs_at_seeded_points_leave_readable_records_and_resume_bit_exact(lab):
    cases = campaign.sigkill_cases(lab, random.Random(campaign.SEED), quick=True)
    outcomes = {name: case() for name, case in cases}
    assert {o for o, _ in outcomes.values()} == {"handled"}, outcomes
    assert any("protocol" in name for name in outcomes)
