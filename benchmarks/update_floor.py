"""How far the twin's device update is from the cheapest update the physics allows.

In one process, on the Fashion-MNIST ResNet18 (``lab_configs/fashion_resnet18_1ns.yaml``) at
``--width``, batch 128, 28x28 random images, interleaved and repeated (medians):

- ``forward+backward``: the network's own pass (what float SGD costs, bar its update);
- ``dwlab opt.step()``: the push-pull SGLD step through the twin's differential pairs, as
  training runs it (plan and apply for all arrays at once, then per array read back,
  re-centre and statistics);
- ``floor``: the fewest whole-array operations any push-pull pair update needs, over all
  devices of the network in one flat tensor: stochastic rounding of the pulse counts
  (one uniform draw per weight), the push/pull split of the budget, one Gaussian per device
  for the sum of its pulses, the clamp at the track ends, one Gaussian per device for the
  read, and the weight from the pair. No near-end walk, no per-array call, no statistics.

The floor is a yardstick, not a twin: it drops the exact near-end walk and everything the
controller records. It says how much of the update's cost is physics every twin must pay
and how much is the way dwlab pays it.

``--fashion STEPS`` times the whole run's own conditions instead: STEPS steps on the first
STEPS x batch Fashion-MNIST training images in the training's order (real gradients, so
the walls drift towards the track ends as in training), medians over all but the first ten.

    python benchmarks/update_floor.py --width 8
    python benchmarks/update_floor.py --width 8 --fashion 50 [--no-refine]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

CONFIG = Path(__file__).resolve().parents[1] / "lab_configs" / "fashion_resnet18_1ns.yaml"


def floor_update(grad: torch.Tensor, position: torch.Tensor, budget: int,
                 step: float, step_sd: float, read_sd: float, lr: float) -> torch.Tensor:
    """One push-pull pair update of every weight, in whole-array operations only."""
    wanted = grad * (-lr / step)
    frac = wanted - wanted.floor()
    net = wanted.floor_().add_(torch.rand_like(frac).lt_(frac)).clamp_(-budget, budget)
    push = (budget + net) * 0.5  # of the budget's pulses, this many push the + device
    mean = (2 * push - budget) * step
    dx = torch.stack([mean, -mean])
    dx.addcmul_(torch.randn_like(dx), torch.full_like(dx, (2 * budget) ** 0.5 * step_sd))
    position.add_(dx).clamp_(0.0, 1.0)
    read = torch.randn_like(position).mul_(read_sd).add_(position)
    return read[0] - read[1]


def main(argv: list[str] | None = None) -> int:
    from dwlab.app.backends import build_array
    from dwlab.app.models import ResNet18
    from dwlab.app.training.memory import keep_freed_memory
    from dwlab.config import load_config
    from dwlab.sgld.controller import build_optimizer

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--width", type=int, default=8)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--fashion", type=int, metavar="STEPS",
                    help="time STEPS steps on real Fashion-MNIST batches (see above)")
    ap.add_argument("--no-refine", action="store_true",
                    help="keep the calibrated steps (controller.refine_steps false)")
    args = ap.parse_args(argv)
    if args.fashion is not None and args.fashion <= 10:
        ap.error("--fashion needs more than 10 steps (the first ten are not timed)")
    torch.set_num_threads(args.threads)
    keep_freed_memory()  # as dwlab train does
    loaded = load_config(CONFIG)
    ctrl = loaded.config.controller
    if args.no_refine:
        ctrl = ctrl.model_copy(update={"refine_steps": False})
    model = ResNet18(in_channels=1, num_classes=10, width=args.width)
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(args.batch, 1, 28, 28, generator=gen)
    labels = torch.randint(0, 10, (args.batch,), generator=gen)
    loss_fn = torch.nn.CrossEntropyLoss()
    opt = build_optimizer(model, ctrl, dataset_size=60_000,
                          array_factory=lambda name, shape, offset: build_array(
                              loaded, name, shape, offset),
                          mapping=loaded.config.mapping, seed=0)
    n_weights = sum(dw.n_weights for dw in opt.weights)
    grad = torch.randn(n_weights) * 1e-3
    position = torch.rand(2, n_weights) * 0.5 + 0.25
    budget = 2 ** ctrl.update_bits - 1

    if args.fashion:
        from dwlab.app.data import load_fashion_mnist, train_batches
        data = load_fashion_mnist(limit_train=args.fashion * args.batch, limit_test=1)
        batches = [(x, y) for _, x, y in train_batches(data, args.batch, 0, 0)]
    else:
        batches = [(images, labels)] * (2 + args.repeats)
    batch = iter(batches)

    def forward_backward() -> None:
        x, y = next(batch)
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()

    def timed(fn) -> float:
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start

    def floor() -> None:
        floor_update(grad, position, budget, 1e-3, 1e-3, 2e-3, ctrl.lr)

    untimed = 10 if args.fashion else 2  # warm-up: allocator, caches, the first plans
    passes, steps, floors = [], [], []
    for _ in range(len(batches)):
        passes.append(timed(forward_backward))
        steps.append(timed(opt.step))  # on this pass's gradients
        floors.append(timed(floor))
    fb, step, fl = (statistics.median(t[untimed:]) for t in (passes, steps, floors))
    opt.close()
    source = (f"{args.fashion} steps on Fashion-MNIST, median of the last "
              f"{args.fashion - untimed}" if args.fashion else
              f"one random batch, median of {args.repeats}")
    print(f"Fashion ResNet18 width {args.width}, batch {args.batch}, {n_weights:,} weights "
          f"({2 * n_weights:,} devices), K = {budget}, {args.threads} thread(s), "
          f"steps {'calibrated' if args.no_refine else 'refined'}, {source}\n")
    print("| part | seconds | step / forward+backward |")
    print("|---|---|---|")
    print(f"| forward+backward | {fb:.4f} | - |")
    print(f"| dwlab opt.step() | {step:.4f} | {(fb + step) / fb:.3f} |")
    print(f"| floor update | {fl:.4f} | {(fb + fl) / fb:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
