"""Training on two gloo ranks (spawned processes on 127.0.0.1) matches training on one:
same seed and shards, bit-identical weights and records; a run started on one rank
resumes on two."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from dwlab.sim.twin import TwinArray
from test_resume import CHILD  # the CLI with a hook that SIGKILLs it after a chosen step

from dwlab.app.training.distributed import Parallel, ShardedArray, block_bounds, sharded_factory
from dwlab.core.errors import ConfigError, PulseLimitError
from dwlab.core.types import PulsePlan
from dwlab.records import read_events, read_table

# 8 batches in one epoch (the device pictures are drawn at the last epoch: slow); checkpoints
# every 3 steps.
TRAINING = {"width": 8, "epochs": 1, "limit_train": 256, "limit_test": 32,
            "burn_in_epochs": 0.5, "stationarity_z": None, "thinning_steps": 2,
            "max_samples": 3, "checkpoint_every_steps": 3, "compare_float": False}
LABEL = "push_pull_pair-5bit"
KILL_AT_STEP = 5  # the last checkpoint was at step 3


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(args: list[str], world_size: int, kill_at: int = 0) -> list[subprocess.Popen]:
    """``dwlab ARGS`` on ``world_size`` ranks, as torchrun would start them."""
    port = free_port()
    procs = []
    for rank in range(world_size):
        env = {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank),
               "WORLD_SIZE": str(world_size), "MASTER_ADDR": "127.0.0.1",
               "MASTER_PORT": str(port), "GLOO_SOCKET_IFNAME": "lo",
               "OMP_NUM_THREADS": "1"}
        procs.append(subprocess.Popen(
            [sys.executable, "-c", CHILD, str(kill_at), *args, "--no-progress"],  # 0: no kill
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    return procs


def finish(procs: list[subprocess.Popen]) -> list[int]:
    codes = []
    for p in procs:
        _, err = p.communicate(timeout=300)
        codes.append(p.returncode)
        if p.returncode:
            print(err)
    return codes


def assert_same_training(a: Path, b: Path) -> None:
    wa, wb = (torch.load(f / LABEL / "model_final.pt", weights_only=True) for f in (a, b))
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), f"{key} differs"
    losses = [{int(r["step"]): r["loss"] for r in read_table(f / LABEL / "steps.csv")}
              for f in (a, b)]
    assert losses[0] == losses[1]
    ra, rb = (json.loads((f / LABEL / "result.json").read_text()) for f in (a, b))
    for key in ("accuracy", "nll", "pulses_total", "samples", "steps"):
        assert ra[key] == rb[key], key


@pytest.fixture
def config(tmp_path, digits_twin_config) -> Path:
    path = tmp_path / "dist.yaml"
    data = digits_twin_config("dist", 5, update_bits=5, **TRAINING)
    data["controller"]["calibration_pulses"] = 256  # quicker programming
    path.write_text(yaml.safe_dump(data))
    return path


def test_two_ranks_train_as_one_and_resume_a_run_of_one(tmp_path, config):
    one, two, killed = tmp_path / "one", tmp_path / "two", tmp_path / "killed"
    train = ["train", "--config", str(config), "--shards", "2"]
    assert finish(launch([*train, "--run-dir", str(one)], 1)) == [0]
    assert finish(launch([*train, "--run-dir", str(two)], 2)) == [0, 0]

    assert_same_training(one, two)
    # only rank 0 wrote the folder; it records the world size
    meta = json.loads((two / "metadata.json").read_text())
    assert meta["distributed"] == {"shards": 2, "world_sizes": [2]}
    assert read_events(two / "events.jsonl")[0]["world_size"] == 2
    assert [r["step"] for r in read_table(two / LABEL / "steps.csv")] == [
        str(s) for s in range(1, 9)]

    # A run killed on one rank resumes on two and ends where the straight run ended.
    assert finish(launch([*train, "--run-dir", str(killed)], 1, KILL_AT_STEP)) == [
        -signal.SIGKILL]
    assert torch.load(killed / LABEL / "checkpoint.pt",
                      weights_only=True)["state"]["step"] == 3
    assert finish(launch(["train", "--resume", str(killed)], 2)) == [0, 0]
    assert_same_training(one, killed)
    meta = json.loads((killed / "metadata.json").read_text())
    assert meta["distributed"]["world_sizes"] == [1, 2]


def test_a_sharded_array_is_its_blocks_side_by_side():
    """On one rank a sharded array holds every block: reads are the blocks' reads in
    order, a plan reaches each block as its slice, and a snapshot restores the whole."""
    shape, shards = (2, 5, 7), 3
    bounds = block_bounds(70, shards)
    assert bounds == [(0, 24), (24, 47), (47, 70)]

    def blocks() -> dict[int, TwinArray]:
        return {b: TwinArray(stop - start, seed=10 + b) for b, (start, stop) in
                enumerate(bounds)}

    array = ShardedArray(shape, Parallel(0, 1, shards), blocks())
    alone = blocks()  # the same twins, driven one by one
    assert array.describe().shape == shape
    push = torch.randint(0, 20, shape)
    pull = torch.randint(0, 20, shape)
    pulse = array.describe().nominal_pulse
    saved = array.snapshot()
    array.apply(PulsePlan(push, pull, pulse, pulse))
    for b, (start, stop) in enumerate(bounds):
        alone[b].apply(PulsePlan(push.reshape(-1)[start:stop], pull.reshape(-1)[start:stop],
                                 pulse, pulse))
    g = array.read().conductance_siemens
    expected = torch.cat([alone[b].read().conductance_siemens for b in range(shards)])
    assert torch.equal(g, expected.reshape(shape))

    again = ShardedArray(shape, Parallel(0, 1, shards), blocks())
    again.restore(saved)
    again.apply(PulsePlan(push, pull, pulse, pulse))
    assert torch.equal(again.read().conductance_siemens, g)

    too_many = torch.full(shape, array.describe().limits.max_pulses_per_device + 1)
    before = array.snapshot()
    with pytest.raises(PulseLimitError):
        array.apply(PulsePlan(too_many, torch.zeros(shape, dtype=torch.long), pulse, pulse))
    for a, b in zip(before["blocks"], array.snapshot()["blocks"], strict=True):
        assert torch.equal(a["position"], b["position"])


def test_what_cannot_be_sharded_is_refused_by_name():
    with pytest.raises(ConfigError, match="3 shard"):
        Parallel(0, 2, 3)
    build = sharded_factory(lambda *a: None, Parallel(0, 1, 2), twin_names=set())
    with pytest.raises(ConfigError, match="arrays.bench"):
        build("bench", (4, 4), 0)
