"""The live view, watched: a training run's TensorBoard event files grow while it runs, and
TensorBoard's page, loaded in headless Chromium, lists the run's tags.

    python benchmarks/live_view_check.py --seconds 480 --out runs/live_view_check

1. starts ``dwlab train --config lab_configs/default.yaml`` with many epochs, output to a
   log file (not a terminal);
2. every ``--every`` seconds records the size of each event file (table printed at the end);
3. midway serves the run folder with TensorBoard on 127.0.0.1 (a free port) and loads the
   scalars page in headless Chromium (Debian ``chromium``), which must list the tags the
   event files hold; the rendered page is saved as ``screenshot.png``;
4. after ``--seconds`` sends Ctrl-C (SIGINT): the run checkpoints and stops, exit code 130.

Exits 1 if an event file did not grow, or the page misses a tag. Skips (exit 0, says so)
when chromium is not installed.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]
EXPECTED_TAGS = ["train/loss", "train/pulses_sent", "epoch/test_accuracy"]
TAGS_PER_PAGE = 4


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def event_sizes(run_dir: Path) -> dict[str, int]:
    return {str(p.relative_to(run_dir)): p.stat().st_size
            for p in sorted(run_dir.rglob("events.out.tfevents.*"))}


def wait_for(url: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def check_page(run_dir: Path, out: Path) -> tuple[list[str], list[str]]:
    """Serve ``run_dir`` with TensorBoard, load its scalars page in headless Chromium; the
    tags the server knows and those the rendered page misses."""
    port = free_port()
    board = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", str(run_dir), "--host",
         "127.0.0.1", "--port", str(port), "--reload_interval", "5"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(base + "/data/runs", 120)
        time.sleep(6)  # one reload of the event files
        with urllib.request.urlopen(base + "/data/plugin/scalars/tags", timeout=30) as r:
            by_run = json.load(r)
        tags = sorted({tag for run in by_run.values() for tag in run})
        # The Time Series page draws a few cards per group and page, so it is asked for a
        # few tags at a time (its tagFilter), in a tall window that shows them all; a page
        # that rendered none of its cards yet (a busy machine) is loaded again.
        text = ""
        for i in range(0, len(tags), TAGS_PER_PAGE):
            chunk = tags[i:i + TAGS_PER_PAGE]
            pattern = "^(" + "|".join(re.escape(t) for t in chunk) + ")$"
            url = f"{base}/?tagFilter={urllib.parse.quote(pattern)}#timeseries"
            for _ in range(3):
                dom = html.unescape(chromium(["--window-size=1400,4000", "--dump-dom", url]))
                if any(t in dom for t in chunk):
                    break
            (out / f"page_{i // TAGS_PER_PAGE}.html").write_text(dom)
            text += dom
        chromium(["--window-size=1400,1000", f"--screenshot={out / 'screenshot.png'}",
                  f"{base}/?tagFilter={urllib.parse.quote('^(train|epoch)/')}#timeseries"])
        missing = [t for t in EXPECTED_TAGS + tags if t not in text]
        return tags, missing
    finally:
        board.terminate()
        board.wait(timeout=30)


def chromium(args: list[str]) -> str:
    """Headless Chromium with a fresh profile, nothing reached but the page; its stdout."""
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    try:
        return subprocess.run(["chromium", *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                               "--virtual-time-budget=30000", *args], capture_output=True,
                              text=True, timeout=180).stdout
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=480, help="how long the run goes on")
    ap.add_argument("--every", type=float, default=30, help="seconds between size samples")
    ap.add_argument("--epochs", type=int, default=400, help="epochs asked for (more than fit)")
    ap.add_argument("--out", type=Path, default=Path("runs/live_view_check"))
    args = ap.parse_args()
    if shutil.which("chromium") is None:
        print("SKIPPED: chromium is not installed (apt-get install -y chromium)")
        return 0
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    run_dir = out / "run"
    log = open(out / "train.log", "w")
    train = subprocess.Popen(
        [sys.executable, "-m", "dwlab.app.cli", "train", "--config",
         str(ROOT / "lab_configs" / "default.yaml"), "--epochs", str(args.epochs),
         "--run-dir", str(run_dir)], stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    started = time.monotonic()
    samples: list[tuple[float, dict[str, int]]] = []
    page: tuple[list[str], list[str]] | None = None
    try:
        while time.monotonic() - started < args.seconds and train.poll() is None:
            time.sleep(args.every)
            samples.append((time.monotonic() - started, event_sizes(run_dir)))
            if page is None and time.monotonic() - started > args.seconds / 2:
                page = check_page(run_dir, out)
    finally:
        if train.poll() is None:
            train.send_signal(signal.SIGINT)
        code = train.wait(timeout=300)
        log.close()
    files = sorted({name for _, sizes in samples for name in sizes})
    print(f"event file sizes (bytes) while `dwlab train` ran; run folder {run_dir}")
    print(f"{'t (s)':>7} " + " ".join(f"{Path(f).parent.name[:22]:>22}" for f in files))
    for t, sizes in samples:
        print(f"{t:7.0f} " + " ".join(f"{sizes.get(f, 0):22d}" for f in files))
    grew = [f for f in files if len({s.get(f, 0) for _, s in samples if f in s}) > 2]
    print(f"training exit code {code} (130: stopped by Ctrl-C, as asked)")
    if page is None:
        print("FAIL: the run ended before the page was checked")
        return 1
    tags, missing = page
    print(f"TensorBoard knows {len(tags)} scalar tags; the page in headless Chromium "
          f"misses {len(missing)}: {missing[:8]}; screenshot {out / 'screenshot.png'}")
    ok = bool(grew) and not missing and (out / "screenshot.png").exists()
    print("PASS" if ok else "FAIL", f"(event files that grew at 3+ samples: {grew})")
    return 0 if ok else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
