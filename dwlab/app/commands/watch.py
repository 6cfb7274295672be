"""``dwlab watch RUN_DIR``: the live view of a run folder in TensorBoard.

Training runs, sweeps and protocol scripts write TensorBoard event files into their run
folders as they go (scalars, conductance maps in crossbar layout, histograms); this serves
them on 127.0.0.1 until Ctrl-C. The same as ``tensorboard --logdir RUN_DIR --host 127.0.0.1``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from dwlab.app.commands import ExitCode
from dwlab.core.errors import DwlabError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("watch", help="serve a run folder's live view (TensorBoard) on 127.0.0.1",
                       description=__doc__)
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR",
                   help="a run folder (or a folder of run folders)")
    p.add_argument("--port", type=int, default=6006, help="port on 127.0.0.1 (0: any free one)")
    p.set_defaults(func=run_watch)


def tensorboard_command(run_dir: Path, port: int) -> list[str]:
    return [sys.executable, "-m", "tensorboard.main", "--logdir", str(run_dir),
            "--host", "127.0.0.1", "--port", str(port)]


def run_watch(args: argparse.Namespace) -> int:
    if not args.run_dir.is_dir():
        raise DwlabError(f"{args.run_dir}: no such run folder")
    if not any(args.run_dir.rglob("events.out.tfevents.*")):
        print(f"{args.run_dir}: no event files yet; TensorBoard shows them once the run "
              "writes its first step", file=sys.stderr)
    # TensorBoard prints the address to open; it runs until Ctrl-C.
    return subprocess.call(tensorboard_command(args.run_dir, args.port)) and ExitCode.FAILED
