"""Campaign: runs that end well. Kills and Ctrl-C at generated points of real runs.

``SIGKILL``: a child process runs ``dwlab train`` (twin, push-pull and float SGD) or
``dwlab protocols run lab_configs/protocols/quick.yaml`` and is killed before its N-th
durable write (``os.fsync``: every table row, event, metadata, checkpoint or plot), N drawn
with a fixed seed from every write point of a whole run, so kills land mid-epoch, between a
checkpoint's temporary file and its rename, in the metadata and between runs. Handled: every
record left is readable (CSV rows complete, JSONL lines parse, metadata and checkpoint load)
and a training run resumed with ``--resume`` ends bit-exact with an uninterrupted one.

``Ctrl-C``: SIGINT, once or twice, at the m-th call of a point of a training run (after a
step, inside a twin apply, inside a checkpoint write, inside an evaluation, while the data
load; and inside a hardware apply on the virtual lab, mid-route). Handled: exit code 130, an
``interrupted`` event and status, a checkpoint at the step reached (a second Ctrl-C: the
last one written), the arrays closed (on the virtual lab: every output off, every
crosspoint open, every delivered pulse in the records), and (twin) ``--resume`` bit-exact.

    .venv/bin/python benchmarks/campaign_runs.py [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import random
import signal
import socket
import sys
import tempfile
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))  # its sibling kill_points.py
from kill_points import (  # noqa: E402
    counted_writes,
    killed_child,
    record_problems,
    start_zygote,
    write_kind,
)

SEED = 13
LABELS = ("push_pull_pair-5bit", "float_sgd")
CONFIG = {  # digits MLP, 4 steps per epoch, 2 epochs, a checkpoint every 3 steps
    "name": "campaign-runs", "seed": 5,
    "arrays": {"main": {"backend": "twin",
                        "pulse": {"amplitude_volts": 1.0, "width_seconds": 1.0e-9}}},
    "controller": {"scheme": "push_pull_pair", "update_bits": 5, "lr": 0.5,
                   "temperature": 0.03},
    "training": {"dataset": "digits", "model": "mlp", "batch_size": 32, "width": 16,
                 "epochs": 2, "limit_train": 128, "limit_test": 64, "burn_in_epochs": 1,
                 "stationarity_z": None, "thinning_steps": 2, "max_samples": 3,
                 "checkpoint_every_steps": 3},
}
PROTOCOL_SCRIPT = ROOT / "lab_configs" / "protocols" / "quick.yaml"
FAILURES: list[str] = []

Outcome = tuple[str, str]  # ("handled" | "failed" | "traceback", what happened)


# -- running a command -----------------------------------------------------------------------

def dwlab(*argv: str) -> int:
    """``dwlab ARGV`` in this process, quietly; its exit code."""
    from dwlab.app.cli import main

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return main([*argv, "--no-progress"])


# -- what a run leaves ------------------------------------------------------------------------

def models_differ(run: Path, reference: Path) -> list[str]:
    """The labels whose final weights differ from the reference run's (bit for bit)."""
    differ = []
    for label in LABELS:
        a = torch.load(run / label / "model_final.pt", weights_only=True)
        b = torch.load(reference / label / "model_final.pt", weights_only=True)
        if a.keys() != b.keys() or not all(torch.equal(a[k], b[k]) for k in a):
            differ.append(label)
    return differ


def resumed_problems(run: Path, reference: Path) -> list[str]:
    """Resume ``run``; what is wrong with the outcome (empty: bit-exact, readable)."""
    code = dwlab("train", "--resume", str(run))
    if code != 0:
        return [f"--resume exited {code}"]
    meta = json.loads((run / "metadata.json").read_text())
    status = [] if meta["status"] == "completed" else [f"status {meta['status']} after resume"]
    return status + record_problems(run) + [f"{label} not bit-exact"
                                            for label in models_differ(run, reference)]


# -- the cases --------------------------------------------------------------------------------

class Lab:
    """The shared inputs: a config file and an uninterrupted reference run, with the write
    points of a training run and of a protocol run."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.config = folder / "train.yaml"
        self.config.write_text(yaml.safe_dump(CONFIG))
        self.reference = folder / "reference"
        start_zygote()
        with counted_writes() as self.train_writes:
            assert dwlab("train", "--config", str(self.config), "--run-dir",
                         str(self.reference)) == 0
        with counted_writes() as self.protocol_writes:
            assert dwlab("protocols", "run", str(PROTOCOL_SCRIPT), "--runs-dir",
                         str(folder / "protocol-reference")) == 0
        self.cases = 0

    def new_folder(self) -> Path:
        self.cases += 1
        return self.folder / f"case-{self.cases:03d}"


def kill_training(lab: Lab, kill_at: int) -> Outcome:
    run = lab.new_folder()
    code = killed_child(["train", "--config", str(lab.config), "--run-dir", str(run)], kill_at)
    if code != -signal.SIGKILL:
        return "failed", f"the child exited {code}, not killed"
    if not (run / "metadata.json").exists():  # killed before the folder was a run folder
        code = dwlab("train", "--resume", str(run))
        return ("handled", "nothing recorded yet; --resume says so") if code == 1 else (
            "failed", f"--resume of an unstarted folder exited {code}")
    problems = record_problems(run) + resumed_problems(run, lab.reference)
    return ("failed", "; ".join(problems)) if problems else ("handled", "bit-exact, readable")


def kill_protocol(lab: Lab, kill_at: int) -> Outcome:
    runs = lab.new_folder()
    code = killed_child(["protocols", "run", str(PROTOCOL_SCRIPT), "--runs-dir", str(runs)],
                        kill_at)
    if code != -signal.SIGKILL:
        return "failed", f"the child exited {code}, not killed"
    problems = record_problems(runs) if runs.exists() else []
    return ("failed", "; ".join(problems)) if problems else ("handled", "records readable")


@contextlib.contextmanager
def patched(owner: Any, name: str, before: Callable[[], None]) -> Iterator[None]:
    """``owner.name`` calls ``before()`` first, for the time of the block."""
    real = getattr(owner, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        before()
        return real(*args, **kwargs)

    setattr(owner, name, wrapper)
    try:
        yield
    finally:
        setattr(owner, name, real)


def interrupt_points() -> dict[str, tuple[Any, str, int]]:
    """Where a Ctrl-C may land: owner, attribute, how many calls a run makes (at most)."""
    from dwlab.drivers.hardware_array import HardwareArray
    from dwlab.sim.twin import TwinArray

    from dwlab.app.training import checkpoint, loop, runs

    return {"after step": (loop.TrainingRun, "after_step", 16),
            "twin apply": (TwinArray, "apply", 8),
            "checkpoint write": (checkpoint, "atomic_write_bytes", 8),
            "evaluation": (loop, "predict_probs", 6),
            "data load": (runs, "load_training_data", 1),
            "hardware apply": (HardwareArray, "_route", 40)}


def ctrl_c(lab: Lab, point: str, call: int, presses: int) -> Outcome:
    """SIGINT ``presses`` times at the ``call``-th call of ``point``; then judge."""
    from dwlab.app import backends

    owner, name, _ = interrupt_points()[point]
    calls, opened, closes, logged = [0], [], [], [0]
    run = lab.new_folder()

    def press() -> None:
        calls[0] += 1
        if calls[0] == call:
            logged[0] = logged_steps(run)
            for _ in range(presses):
                signal.raise_signal(signal.SIGINT)

    def close(self: Any) -> list[BaseException]:
        failures = real_close(self)
        closes.append(failures)
        return failures

    real_close = backends.Backends.close
    hardware = point == "hardware apply"
    with contextlib.ExitStack() as stack:
        config = virtual_lab_config(lab.folder) if hardware else lab.config
        virtual = stack.enter_context(served_lab(config)) if hardware else None
        stack.enter_context(patched(owner, name, press))
        stack.enter_context(patched(backends.Backends, "__init__", lambda: opened.append(1)))
        backends.Backends.close = close  # type: ignore[method-assign]
        stack.callback(setattr, backends.Backends, "close", real_close)
        argv = ["train", "--config", str(config), "--run-dir", str(run)]
        code = dwlab(*argv, *(["--no-float", "--epochs", "1", "--limit-train", "128",
                               "--limit-test", "64"] if hardware else []))
        problems = [] if code == 130 else [f"exit code {code}, not 130"]
        if calls[0] < call:
            return "handled", "the run ended before the point (nothing to interrupt)"
        problems += interrupted_record(run, presses)
        if logged_steps(run) > logged[0] + 1:  # at most the step under way may finish
            problems.append(f"{logged_steps(run) - logged[0]} steps ran after the Ctrl-C")
        if len(closes) != len(opened) or any(closes):
            problems.append(f"{len(opened)} backends opened, closed: {closes}")
        if virtual is not None:
            problems += lab_problems(virtual, run)
    if not hardware and not problems:
        problems += resumed_problems(run, lab.reference)
    return ("failed", "; ".join(problems)) if problems else ("handled", "checkpoint, safe, 130")


def interrupted_record(run: Path, presses: int) -> list[str]:
    """What an interrupted run folder must say: status, event, and where to resume."""
    from dwlab.records import read_events

    meta = json.loads((run / "metadata.json").read_text())
    problems = record_problems(run)
    if meta.get("status") != "interrupted":
        problems.append(f"metadata status {meta.get('status')}")
    if "running" in meta.get("run_status", {}).values():
        problems.append(f"a run still 'running': {meta['run_status']}")
    event = read_events(run / "events.jsonl")[-1]
    if event["event"] != "interrupted":
        return [*problems, f"last event {event['event']}, not interrupted"]
    if "label" not in event:
        return problems  # stopped between runs or before the first one
    saved = event["checkpoint_step"]
    if presses == 1 and saved != event["step"]:
        problems.append(f"one Ctrl-C after step {event['step']} left checkpoint {saved}")
    if saved is not None:
        state = torch.load(run / event["label"] / "checkpoint.pt", weights_only=True)["state"]
        if state["step"] != saved:
            problems.append(f"checkpoint at step {state['step']}, the event says {saved}")
    return problems


def logged_steps(run: Path) -> int:
    """Steps recorded in ``run`` so far, over its training runs (one row per step)."""
    from dwlab.records import read_table

    return sum(len(read_table(t)) for t in run.glob("*/steps.csv"))


def virtual_lab_config(folder: Path) -> Path:
    """``lab_configs/virtual_lab.yaml`` with its instruments on free ports."""
    text = (ROOT / "lab_configs" / "virtual_lab.yaml").read_text()
    for port in ("50301", "50302", "50303"):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            text = text.replace(f"::{port}::", f"::{s.getsockname()[1]}::")
    text = text.replace("autostart: true", "autostart: false")  # the runs use served_lab
    path = folder / f"virtual_lab-{random.random():.9f}.yaml"
    path.write_text(text)
    return path


@contextlib.contextmanager
def served_lab(config: Path) -> Iterator[Any]:
    from dwlab.sim.virtual_lab import VirtualLab

    from dwlab.config import load_config

    with VirtualLab.from_config(load_config(config)) as served:
        yield served


def lab_problems(served: Any, run: Path) -> list[str]:
    """Outputs on, crosspoints closed, or delivered pulses missing from the records."""
    from dwlab.records import read_events

    problems = [] if served.is_safe() else ["the virtual lab is not safe after the run"]
    events = read_events(run / "push_pull_pair-3bit" / "device_events.jsonl")
    recorded = sum(e.get("pulses", 0) if e["event"] == "apply" else e.get("pulses_applied", 0)
                   for e in events)
    delivered = int(served.delivered_push.sum() + served.delivered_pull.sum())
    if recorded != delivered:
        problems.append(f"{delivered} pulses delivered, {recorded} recorded")
    return problems


# -- the campaign -----------------------------------------------------------------------------

def sigkill_cases(lab: Lab, rng: random.Random, quick: bool) -> list[tuple[str, Callable]]:
    train_n, protocol_n = (1, 1) if quick else (20, 8)
    points = rng.sample(range(1, len(lab.train_writes) + 1), train_n)
    points += [i + 1 for i, n in enumerate(lab.train_writes)  # always one mid-checkpoint
               if write_kind(n) == "checkpoint write"][1:2]
    cases = [(f"train, kill before write {n} ({write_kind(lab.train_writes[n - 1])})",
              lambda n=n: kill_training(lab, n)) for n in sorted(set(points))]
    return cases + [(f"protocol quick.yaml, kill before write {n}",
                     lambda n=n: kill_protocol(lab, n))
                    for n in sorted(rng.sample(range(1, len(lab.protocol_writes) + 1),
                                               protocol_n))]


def ctrl_c_cases(lab: Lab, rng: random.Random, quick: bool) -> list[tuple[str, Callable]]:
    cases = []
    for point, (_, _, calls) in interrupt_points().items():
        picks = rng.sample(range(1, calls + 1), min(calls, 1 if quick else 2))
        for presses in (1, 2):
            for call in picks[:1] if quick and presses == 2 else picks:
                cases.append((f"{point}, call {call}, {presses} Ctrl-C",
                              lambda p=point, c=call, k=presses: ctrl_c(lab, p, c, k)))
    if quick:
        cases = rng.sample(cases, 3)
    return cases


def run(quick: bool = False) -> dict[str, dict[str, int]]:
    FAILURES.clear()
    rng = random.Random(SEED)
    table: dict[str, dict[str, int]] = {}
    with tempfile.TemporaryDirectory(prefix="campaign-runs-") as tmp:
        lab = Lab(Path(tmp))
        for category, make in (("SIGKILL", sigkill_cases), ("Ctrl-C", ctrl_c_cases)):
            counts = table[category] = {"tried": 0, "handled": 0, "failed": 0,
                                        "tracebacks": 0}
            for name, case in make(lab, rng, quick):
                counts["tried"] += 1
                try:
                    outcome, why = case()
                except Exception:
                    outcome, why = "traceback", traceback.format_exc(limit=3)
                if outcome == "traceback":
                    counts["tracebacks"] += 1
                    FAILURES.append(f"{category}: {name}: traceback: {why}")
                elif outcome == "failed":
                    counts["failed"] += 1
                    FAILURES.append(f"{category}: {name}: {why}")
                else:
                    counts["handled"] += 1
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small sample (about 20 s)")
    args = parser.parse_args()
    table = run(args.quick)
    from fault_campaign import print_tally

    print_tally(table)
    for line in FAILURES:
        print("FAILED", line)
    sys.exit(1 if FAILURES else 0)


if __name__ == "__main__":
    main()
