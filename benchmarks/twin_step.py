"""Cost of training through the twin: float SGD vs push-pull SGLD on ResNet18.

Each case runs in its own process (one case's memory and caches never slow another's):

- ``float``: float SGD steps of a CIFAR-style ResNet18 (dwlab.app.models) at batch 128 on
  random 32x32 images;
- ``first``: push-pull SGLD steps of the same network through differential pairs of twin
  devices, right after programming (every wall mid-track);
- ``late``: the same, with the walls where a real run left them: positions drawn (with
  replacement, per array) from the walls at the end of the whole push-pull run below (or
  of ``--late-from RUN_DIR``, a longer run), so the walls near the track ends take the
  exact pulse-by-pulse path as they do late in training.

Arrays and controller come from the CIFAR-10 lab config (bench precision: the array's own
pulse; ``update_range`` applies only to the fixed-range ablation). Per case: the median
step, its forward+backward and its ``opt.step()`` (device update and read-back), and from
extra steps synchronised around the twin, the twin's apply and read.

The whole run: ``dwlab train`` of ``lab_configs/fashion_resnet18_1ns.yaml`` at the same width
on the first ``--run-images`` Fashion-MNIST images, push-pull and float SGD, each alone in
its own process, ``--run-repeats`` times in alternating order (run-to-run spread on a
shared machine is several per cent); the ratio of their median ``train_seconds``
(result.json: the training loop's wall time, evaluations excluded), and the range of the
ratios of runs made one after the other. ``--run-bf16``/``--no-run-bf16`` overrides the
config's bf16 autocast for the whole runs.

    python benchmarks/twin_step.py --width 16 --steps 3
    python benchmarks/twin_step.py --device cuda --width 64 --steps 20
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "lab_configs" / "cifar10_resnet18.yaml"
RUN_CONFIG = ROOT / "lab_configs" / "fashion_resnet18_1ns.yaml"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class TimedTwin:
    """A twin that, while ``timing`` is on, adds the seconds of its apply and read to
    ``seconds`` (synchronising around each, so only the breakdown steps pay for that), and
    counts the devices that took the near-end path."""

    timing = False
    seconds = {"apply": 0.0, "read": 0.0}
    near_end = 0

    def __init__(self, twin, device: torch.device):
        self.twin, self.device = twin, device

    def _timed(self, key, call, *args, **kwargs):
        if not TimedTwin.timing:
            return call(*args, **kwargs)
        sync(self.device)
        start = time.perf_counter()
        out = call(*args, **kwargs)
        sync(self.device)
        TimedTwin.seconds[key] += time.perf_counter() - start
        return out

    def apply(self, plan):
        return self.apply_batch([self], [plan])[0]

    @classmethod
    def apply_batch(cls, arrays, plans):
        """The twins' own batch, as the controller applies a step, timed."""
        from dwlab.core.device import apply_all
        twins = [a.twin for a in arrays]
        receipts = arrays[0]._timed("apply", apply_all, twins, plans)
        if cls.timing:  # a batch's counts are shared by its receipts: count them once
            counted = {id(r.details.get("batch", r.details)): r.details.get("batch", r.details)
                       for r in receipts}
            cls.near_end += sum(d.get(k, 0) for d in counted.values()
                                for k in ("near_one_end", "near_both_ends"))
        return receipts

    def read(self, n_averages=1, devices=None):
        return self._timed("read", self.twin.read, n_averages, devices)

    def describe(self):
        return self.twin.describe()

    def snapshot(self):
        return self.twin.snapshot()

    def restore(self, snapshot):
        self.twin.restore(snapshot)

    def safe_state(self):
        self.twin.safe_state()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.safe_state()


def end_positions(run_dir: Path) -> dict[str, torch.Tensor]:
    """Wall positions per parameter at the last checkpoint of a run folder's push-pull run."""
    (ckpt,) = [p for p in run_dir.glob("*/checkpoint.pt") if p.parent.name != "float_sgd"]
    state = torch.load(ckpt, weights_only=True)
    return {name: w["snapshot"]["position"].reshape(-1)
            for name, w in state["optimizer"]["dwlab"]["weights"].items()}


def worker(args: argparse.Namespace) -> dict:
    """One case in this process; returns its timings."""
    from dwlab.app.backends import build_array
    from dwlab.app.models import ResNet18
    from dwlab.app.training import with_training_overrides
    from dwlab.app.training.memory import keep_freed_memory
    from dwlab.config import evolve, load_config
    from dwlab.sgld.controller import build_optimizer

    kept = keep_freed_memory()  # as dwlab train does, in every case alike
    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    loaded = with_training_overrides(load_config(args.config), torch_device=args.device)
    loaded = dataclasses.replace(loaded, config=evolve(loaded.config, seed=args.seed))
    scheme = "float_sgd" if args.case == "float" else "push_pull_pair"
    ctrl = evolve(loaded.config.controller, scheme=scheme, update_bits=args.bits)
    model = ResNet18(in_channels=3, num_classes=10, width=args.width).to(device)
    gen = torch.Generator(device="cpu").manual_seed(args.seed)
    images = torch.randn(args.batch, 3, 32, 32, generator=gen).to(device)
    labels = torch.randint(0, 10, (args.batch,), generator=gen).to(device)
    loss_fn = torch.nn.CrossEntropyLoss()

    def forward_backward() -> float:
        sync(device)
        start = time.perf_counter()
        model.zero_grad(set_to_none=True)
        loss_fn(model(images), labels).backward()
        sync(device)
        return time.perf_counter() - start

    # The same passes before any array exists: a control for what the arrays' presence
    # (memory, caches) does to the network's own work in this process.
    before = [forward_backward() for _ in range(args.warmup + args.steps)][args.warmup:]
    out: dict = {"case": args.case, "forward_backward_before_s": statistics.median(before),
                 "freed_memory_kept": kept}

    def factory(name: str, shape: tuple[int, ...], seed_offset: int) -> TimedTwin:
        return TimedTwin(build_array(loaded, name, shape, seed_offset), device)

    t0 = time.perf_counter()
    opt = build_optimizer(model, ctrl, dataset_size=50_000, array_factory=factory,
                          mapping=loaded.config.mapping, seed=args.seed)
    sync(device)
    out["setup_s"] = time.perf_counter() - t0
    if opt.weights:
        out["devices"] = sum(dw.last_read.numel() for dw in opt.weights)
        out["weights"] = sum(dw.n_weights for dw in opt.weights)
        out["largest_update_fraction"] = opt.precision_report()["largest_update_fraction"]
        out["pulse_width_s"] = opt.weights[0].pulse.width_seconds
    if args.case == "late":
        measured = end_positions(args.late_from)
        gen = torch.Generator().manual_seed(args.seed)
        for dw in opt.weights:
            pool = measured[dw.name]
            twin = dw.array.twin
            pick = torch.randint(0, pool.numel(), (twin.x.numel(),), generator=gen)
            twin.x = pool[pick].reshape(twin.x.shape).to(twin.x.device, twin.x.dtype)
            dw.accept_read(dw.read(ctrl.read_averages))
        out["walls_near_end"] = float(sum(
            ((dw.array.twin.x < 0.05) | (dw.array.twin.x > 0.95)).sum()
            for dw in opt.weights) / out["devices"])

    def train_step() -> tuple[float, float, float]:
        """Seconds of the whole step, of forward+backward and of ``opt.step()``."""
        sync(device)
        start = time.perf_counter()
        loss = loss_fn(model(images), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        sync(device)
        mid = time.perf_counter()
        opt.step()
        sync(device)
        end = time.perf_counter()
        return end - start, mid - start, end - mid

    for _ in range(args.warmup):
        train_step()
    times = [train_step() for _ in range(args.steps)]
    out["step_s"] = statistics.median(t[0] for t in times)
    out["forward_backward_s"] = statistics.median(t[1] for t in times)
    out["update_s"] = statistics.median(t[2] for t in times)
    if opt.weights:  # breakdown, from extra steps with the twin synchronised
        TimedTwin.timing = True
        n = max(1, min(3, args.steps))
        for _ in range(n):
            train_step()
        out["apply_s"] = TimedTwin.seconds["apply"] / n
        out["read_s"] = TimedTwin.seconds["read"] / n
        out["near_end_devices"] = TimedTwin.near_end / n
        out["pulses"] = opt.last_stats.pulses_sent
    opt.close()
    return out


def whole_run_rows(args: argparse.Namespace, pairs: list[tuple[dict, dict]]
                   ) -> list[tuple[str, str]]:
    device_s = statistics.median(d["train_seconds"] for d, _ in pairs)
    float_s = statistics.median(f["train_seconds"] for _, f in pairs)
    ratios = [d["train_seconds"] / f["train_seconds"] for d, f in pairs]
    run_precision = "bf16 autocast" if (
        args.run_bf16 if args.run_bf16 is not None else load_bf16()) else "fp32"
    return [
        ("whole run: Fashion-MNIST images x epochs", f"{args.run_images} x {args.run_epochs}"
                                                     f" ({pairs[0][0]['steps']} steps), "
                                                     f"{run_precision}"),
        (f"whole run: push-pull / float train time (median of {len(pairs)})",
         f"{device_s:.1f} s / {float_s:.1f} s, **ratio {device_s / float_s:.3f}** "
         f"(pairs run back to back: {min(ratios):.3f}-{max(ratios):.3f})"),
    ]


def load_bf16() -> bool:
    from dwlab.config import load_config
    return load_config(RUN_CONFIG).config.training.bf16


def run_case(args: argparse.Namespace, case: str, extra: list[str]) -> dict:
    cmd = [sys.executable, __file__, "--case", case, "--device", args.device,
           "--steps", str(args.steps), "--warmup", str(args.warmup), "--batch",
           str(args.batch), "--width", str(args.width), "--bits", str(args.bits),
           "--seed", str(args.seed), "--config", str(args.config), *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode:
        raise SystemExit(f"case {case} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def whole_run(args: argparse.Namespace, folder: Path, scheme: str) -> dict:
    """One ``dwlab train`` run alone in its process; its result.json."""
    cmd = [sys.executable, "-m", "dwlab.app.cli", "train", "--config", str(RUN_CONFIG),
           "--scheme", scheme, "--no-float", "--width", str(args.width),
           "--limit-train", str(args.run_images), "--limit-test", "1000",
           "--epochs", str(args.run_epochs), "--device", args.device,
           "--run-dir", str(folder), "--no-progress"]
    if args.run_bf16 is not None:
        cmd.append("--bf16" if args.run_bf16 else "--no-bf16")
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode:
        raise SystemExit(f"whole run ({scheme}) failed:\n{proc.stderr}")
    (result,) = folder.glob("*/result.json")
    return json.loads(result.read_text())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--steps", type=int, default=3, help="timed steps per case")
    ap.add_argument("--warmup", type=int, default=1, help="untimed steps per case")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--width", type=int, default=64, help="ResNet18 base width")
    ap.add_argument("--bits", type=int, default=7, help="update precision (pulse budget)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--config", type=Path, default=CONFIG,
                    help="lab config of the arrays and the controller (default: CIFAR-10's)")
    ap.add_argument("--run-images", type=int, default=6400,
                    help="Fashion-MNIST training images of the whole runs")
    ap.add_argument("--run-epochs", type=int, default=2)
    ap.add_argument("--run-repeats", type=int, default=3,
                    help="whole runs of each scheme, in alternating order (0: none; then "
                         "--late-from is needed)")
    ap.add_argument("--run-bf16", action=argparse.BooleanOptionalAction,
                    help="bf16 autocast in the whole runs (default: the config's)")
    ap.add_argument("--case", choices=("float", "first", "late"), help=argparse.SUPPRESS)
    ap.add_argument("--late-from", type=Path, metavar="RUN_DIR",
                    help="take the late walls from this run folder's push-pull checkpoint "
                         "(a ResNet18 run of any width, e.g. a full fashion_resnet18.yaml "
                         "run) instead of the whole run's")
    args = ap.parse_args(argv)
    if args.run_repeats < 0 or (args.run_repeats == 0 and args.late_from is None):
        ap.error("--run-repeats 0 (no whole runs) needs --late-from RUN_DIR for the late walls")
    if args.case:  # a worker process
        print(json.dumps(worker(args)))
        return 0

    with tempfile.TemporaryDirectory(prefix="twin-step-") as tmp:
        runs = Path(tmp)
        pairs = []  # (push-pull, float) result.json of runs made one after the other
        for i in range(args.run_repeats):
            order = ("push_pull_pair", "float_sgd")[::1 if i % 2 == 0 else -1]
            done = {s: whole_run(args, runs / f"{s}-{i}", s) for s in order}
            pairs.append((done["push_pull_pair"], done["float_sgd"]))
        f = run_case(args, "float", [])
        first = run_case(args, "first", [])
        late_from = args.late_from or runs / "push_pull_pair-0"
        late = run_case(args, "late", ["--late-from", str(late_from)])
    where = torch.cuda.get_device_name(0) if args.device == "cuda" else (
        f"cpu, {torch.get_num_threads()} threads")
    rows = [
        ("device", where),
        ("model", f"ResNet18 width {args.width}, {first['weights'] / 1e6:.2f} M device "
                  f"weights, {first['devices'] / 1e6:.2f} M devices (pairs)"),
        ("batch / timed steps per case", f"{args.batch} / {args.steps} (median)"),
        ("freed memory kept in the process (dwlab.app.training.memory)",
         "yes" if first["freed_memory_kept"] else "no (not glibc)"),
        ("config", f"{args.config.name}, {args.bits} bits (K = {2**args.bits - 1})"),
        ("largest update (fraction of the window)", f"{first['largest_update_fraction']:.3g}"),
        ("update pulse width", f"{first['pulse_width_s']:.3g} s"),
        ("float SGD step", f"{f['step_s']:.4f} s (forward+backward "
                           f"{f['forward_backward_s']:.4f} s; before the optimiser "
                           f"{f['forward_backward_before_s']:.4f} s)"),
    ]
    for name, case in (("first step", first), ("late training", late)):
        rows += [
            (f"push-pull step, {name}", f"{case['step_s']:.4f} s, **ratio "
                                        f"{case['step_s'] / f['step_s']:.3f}**"),
            ("  forward+backward (before the arrays were built)",
             f"{case['forward_backward_s']:.4f} s ({case['forward_backward_before_s']:.4f} s)"),
            ("  device update + read-back", f"{case['update_s']:.4f} s (twin apply "
                                            f"{case['apply_s']:.4f} s, read "
                                            f"{case['read_s']:.4f} s)"),
            ("  devices on the near-end path per step", f"{case['near_end_devices']:.4g}"),
        ]
    rows.append(("late: walls within 5 % of a track end",
                 f"{100 * late['walls_near_end']:.1f} %"))
    if pairs:
        rows += whole_run_rows(args, pairs)
    width = max(len(k) for k, _ in rows)
    print(f"| {'quantity'.ljust(width)} | value |")
    print(f"| {'-' * width} | ----- |")
    for key, value in rows:
        print(f"| {key.ljust(width)} | {value} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
