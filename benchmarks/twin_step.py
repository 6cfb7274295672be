"""Cost of training through the twin: float SGD step vs push-pull SGLD step on ResNet18.

One run, one table: a CIFAR-style ResNet18 (dwlab.app.models) at batch 128 on random 32x32
images, trained by float SGD and, on a second copy, by push-pull SGLD through differential
pairs of twin devices (22.4 M devices at width 64) at 7-bit update precision. Arrays and
controller come from the CIFAR-10 lab config (its nominal pulse, limits, lr and fixed
update range: the controller scales the pulse width so 2^bits - 1 pulses span
``controller.update_range``). Steps of the two alternate, so slow drifts of a shared
machine hit both alike.

    python benchmarks/twin_step.py --device cpu --steps 3
    python benchmarks/twin_step.py --device cuda --steps 20
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import statistics
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

from dwlab.app.backends import build_array
from dwlab.app.models import ResNet18
from dwlab.app.training import with_training_overrides
from dwlab.config import evolve, load_config
from dwlab.core.device import DeviceArray
from dwlab.sgld.controller import build_optimizer

CONFIG = Path(__file__).resolve().parents[1] / "lab_configs" / "cifar10_resnet18.yaml"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class TimedTwin:
    """A twin that, while ``timing`` is on, adds the seconds of its apply and read to
    ``seconds`` (synchronising around each, so only the breakdown steps pay for that)."""

    timing = False
    seconds = {"apply": 0.0, "read": 0.0}

    def __init__(self, twin: DeviceArray, device: torch.device):
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
        return self._timed("apply", self.twin.apply, plan)

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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--steps", type=int, default=3, help="timed steps per optimiser")
    ap.add_argument("--warmup", type=int, default=1, help="untimed steps per optimiser")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--width", type=int, default=64, help="ResNet18 base width")
    ap.add_argument("--bits", type=int, default=7, help="update precision (pulse budget)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--config", type=Path, default=CONFIG,
                    help="lab config of the arrays and the controller (default: CIFAR-10's)")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    loaded = with_training_overrides(load_config(args.config), torch_device=args.device)
    loaded = dataclasses.replace(loaded, config=evolve(loaded.config, seed=args.seed))
    ctrl = evolve(loaded.config.controller, scheme="push_pull_pair", update_bits=args.bits)

    float_model = ResNet18(in_channels=3, num_classes=10, width=args.width).to(device)
    device_model = copy.deepcopy(float_model)
    n_data = 50_000
    float_opt = build_optimizer(
        float_model, evolve(ctrl, scheme="float_sgd"), dataset_size=n_data
    )

    def factory(name: str, shape: tuple[int, ...], seed_offset: int) -> TimedTwin:
        return TimedTwin(build_array(loaded, name, shape, seed_offset), device)

    t0 = time.perf_counter()
    device_opt = build_optimizer(
        device_model, ctrl, dataset_size=n_data, array_factory=factory,
        mapping=loaded.config.mapping, seed=args.seed,
    )
    sync(device)
    setup_s = time.perf_counter() - t0
    n_weights = sum(dw.n_weights for dw in device_opt.weights)
    n_devices = sum(dw.last_read.numel() for dw in device_opt.weights)
    first = device_opt.weights[0]
    nominal = first.array.describe().nominal_pulse

    gen = torch.Generator(device="cpu").manual_seed(args.seed)
    images = torch.randn(args.batch, 3, 32, 32, generator=gen).to(device)
    labels = torch.randint(0, 10, (args.batch,), generator=gen).to(device)
    loss_fn = torch.nn.CrossEntropyLoss()

    def train_step(model: torch.nn.Module, opt: torch.optim.Optimizer) -> tuple[float, float]:
        """Seconds for the whole step and for ``opt.step()`` alone."""
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
        return end - start, end - mid

    float_times, device_times, update_times, pulses = [], [], [], []
    total = args.warmup + args.steps
    for i in tqdm(range(total), desc="steps (float + push-pull)", file=sys.stderr):
        f_step, _ = train_step(float_model, float_opt)
        d_step, d_update = train_step(device_model, device_opt)
        if i >= args.warmup:
            float_times.append(f_step)
            device_times.append(d_step)
            update_times.append(d_update)
            pulses.append(device_opt.last_stats.pulses_sent)
    # Breakdown, from extra steps with the twin synchronised around apply and read.
    TimedTwin.timing = True
    breakdown_steps = max(1, min(3, args.steps))
    update_total = 0.0
    for _ in range(breakdown_steps):
        update_total += train_step(device_model, device_opt)[1]
    TimedTwin.timing = False
    device_opt.close()
    apply_s = TimedTwin.seconds["apply"] / breakdown_steps
    read_s = TimedTwin.seconds["read"] / breakdown_steps
    controller_s = update_total / breakdown_steps - apply_s - read_s

    f_s = statistics.median(float_times)
    d_s = statistics.median(device_times)
    u_s = statistics.median(update_times)
    p_step = statistics.mean(pulses)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else (
        f"cpu, {torch.get_num_threads()} threads"
    )
    rows = [
        ("device", where),
        ("model", f"ResNet18 width {args.width}, {n_weights / 1e6:.2f} M device weights"),
        ("devices (differential pairs)", f"{n_devices / 1e6:.2f} M"),
        ("batch / timed steps", f"{args.batch} / {args.steps} (median)"),
        ("config", f"{args.config.name}, lr {ctrl.lr:g}"),
        ("update precision", f"{args.bits} bits (K = {2**args.bits - 1} pulses per device)"),
        ("update range (fraction of the window)", f"{ctrl.update_range}"),
        ("update pulse width", f"{first.pulse.width_seconds:.3g} s (nominal "
                               f"{nominal.width_seconds:.3g} s)"),
        ("float SGD step", f"{f_s:.4f} s"),
        ("push-pull SGLD step (twin)", f"{d_s:.4f} s"),
        ("ratio push-pull / float", f"{d_s / f_s:.3f}"),
        ("device update + read-back (opt.step)", f"{u_s:.4f} s"),
        ("  of which twin apply (breakdown steps)", f"{apply_s:.4f} s"),
        ("  of which twin read", f"{read_s:.4f} s"),
        ("  of which controller arithmetic", f"{controller_s:.4f} s"),
        ("device-pulse events per step", f"{p_step:.4g}"),
        ("device-pulse events per second (step)", f"{p_step / d_s:.4g}"),
        ("device-pulse events per second (update)", f"{p_step / u_s:.4g}"),
        ("arrays built and programmed", f"{setup_s:.1f} s"),
    ]
    width = max(len(k) for k, _ in rows)
    print(f"| {'quantity'.ljust(width)} | value |")
    print(f"| {'-' * width} | ----- |")
    for key, value in rows:
        print(f"| {key.ljust(width)} | {value} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
