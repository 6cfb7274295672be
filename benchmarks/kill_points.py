"""Kill points: a child ``dwlab`` command killed (SIGKILL) before its N-th durable write
(``os.fsync``: every table row, event, metadata, checkpoint and plot of a run), the list of
a run's write points, and the check that every record a run left can be read whole.

Children fork from one process that imported dwlab and ran nothing (a zygote), so a case
costs the run, not the imports. Used by ``campaign_runs.py`` and ``tests/test_crash.py``.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ZYGOTE = """
import json, os, signal, sys
import sklearn.datasets, torch._dynamo  # imported once (a training run's slow imports),
from dwlab.app.cli import main         # nothing run: every child forks from here
for line in sys.stdin:
    job = json.loads(line)
    pid = os.fork()
    if pid == 0:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1), os.dup2(null, 2)
        fsync, count = os.fsync, [0]
        def counted(fd):
            count[0] += 1
            if count[0] == job["kill_at"]:
                os.kill(os.getpid(), signal.SIGKILL)
            fsync(fd)
        os.fsync = counted
        os._exit(main(job["argv"]))
    print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), flush=True)
"""

_zygote: subprocess.Popen[str] | None = None


def killed_child(argv: list[str], kill_at: int) -> int:
    """Run ``dwlab ARGV`` in a child killed before its ``kill_at``-th fsync; its exit code
    (-9 when killed). Children fork from one process that imported dwlab and ran nothing."""
    zygote = start_zygote()
    assert zygote.stdin is not None and zygote.stdout is not None
    zygote.stdin.write(json.dumps({"argv": [*argv, "--no-progress"], "kill_at": kill_at})
                       + "\n")
    zygote.stdin.flush()
    return int(zygote.stdout.readline())


def start_zygote() -> subprocess.Popen[str]:
    """The process the children fork from (started once, early: its imports take seconds)."""
    global _zygote
    if _zygote is None or _zygote.poll() is not None:
        _zygote = subprocess.Popen([sys.executable, "-c", ZYGOTE], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, text=True)
    return _zygote


@contextlib.contextmanager
def counted_writes() -> Iterator[list[str]]:
    """The files fsynced in this process meanwhile, in order (the kill points of a run)."""
    names: list[str] = []
    real = os.fsync

    def fsync(fd: Any) -> None:
        try:
            names.append(os.readlink(f"/proc/self/fd/{fd if isinstance(fd, int) else fd.fileno()}"))
        except OSError:
            names.append("?")
        real(fd)

    os.fsync = fsync
    try:
        yield names
    finally:
        os.fsync = real


def write_kind(name: str) -> str:
    base = Path(name).name
    if re.match(r"\.checkpoint\.pt\.tmp-", base):
        return "checkpoint write"
    if base.startswith("."):
        return "atomic write"
    return "folder" if "." not in base else base


def record_problems(folder: Path) -> list[str]:
    """Every record in ``folder`` that cannot be read whole (temporary files are not records)."""
    from dwlab.app.training.checkpoint import load_checkpoint
    from dwlab.core.errors import CheckpointError

    problems = []
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or path.name.startswith("."):
            continue
        rel = path.relative_to(folder)
        text = path.read_bytes().decode(errors="replace") if path.suffix != ".pt" else ""
        if path.suffix == ".csv":
            rows = list(csv.reader(io.StringIO(text)))
            if text and not text.endswith("\n"):
                problems.append(f"{rel}: torn last row")
            if any(len(r) != len(rows[0]) for r in rows):
                problems.append(f"{rel}: a row without every column")
        elif path.suffix == ".jsonl":
            for i, line in enumerate(text.splitlines()):
                try:
                    json.loads(line)
                except json.JSONDecodeError:
                    problems.append(f"{rel}: line {i + 1} is not JSON")
        elif path.suffix == ".json":
            try:
                json.loads(text)
            except json.JSONDecodeError:
                problems.append(f"{rel}: not JSON")
        elif path.name == "checkpoint.pt":
            try:
                load_checkpoint(path)
            except CheckpointError as exc:
                problems.append(str(exc))
    return problems
