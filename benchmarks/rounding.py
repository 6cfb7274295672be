"""Stochastic against round-to-nearest pulse counts in training, at several update
precisions.

Logistic regression on scikit-learn's digits (1400 training and 397 test images, 4
epochs, batch 64, lr 0.5, weight_range 5), trained by push-pull SGLD on differential pairs
of twin devices (the continuous_dw preset with a pulse a tenth of its nominal one, as on a
bench: every update pulse is that pulse, so the bits set the budget ``K = 2^b - 1``). The
table gives the test accuracy and NLL of the final weights (mean over seeds), the
effective temperature with rounding (last step) and the share of the weight noise that
the rounding of counts contributes.

    python benchmarks/rounding.py
    python benchmarks/rounding.py --bits 1 2 4 7 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import math
import statistics

import torch
from dwlab.sim.twin import PRESETS, TwinArray
from sklearn.datasets import load_digits

from dwlab.config import ControllerConfig
from dwlab.sgld.controller import build_optimizer

PARAMS = PRESETS["continuous_dw"].replace(
    mu_push=0.001, mu_pull=0.0009, sigma_push=0.004 * math.sqrt(0.1),
    sigma_pull=0.004 * math.sqrt(0.1),
)


def train(bits: int, rounding: str, seed: int,
          data: tuple[torch.Tensor, ...]) -> tuple[float, float, float, float]:
    """Accuracy, NLL, T_eff and rounding share of one run."""
    x_train, y_train, x_test, y_test = data
    torch.manual_seed(seed)
    model = torch.nn.Linear(64, 10)
    cfg = ControllerConfig(scheme="push_pull_pair", lr=0.5, update_bits=bits,
                           rounding=rounding, weight_range=5.0)
    opt = build_optimizer(
        model, cfg, dataset_size=len(x_train), seed=seed,
        array_factory=lambda name, shape, off: TwinArray(shape, PARAMS, seed=20 + off + seed),
    )
    order = torch.Generator().manual_seed(seed)
    for _ in range(4):
        perm = torch.randperm(len(x_train), generator=order)
        for i in range(0, len(x_train), 64):
            idx = perm[i:i + 64]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x_train[idx]), y_train[idx]).backward()
            opt.step()
    opt.close()
    with torch.no_grad():
        out = model(x_test)
    stats = opt.last_stats
    return (float((out.argmax(1) == y_test).float().mean()),
            float(torch.nn.functional.cross_entropy(out, y_test)),
            stats.effective_temperature, stats.rounding_share)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bits", type=int, nargs="+", default=[1, 2, 4, 7])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    args = p.parse_args()
    x, y = load_digits(return_X_y=True)
    xt = torch.tensor(x, dtype=torch.float32) / 16.0
    yt = torch.tensor(y)
    data = (xt[:1400], yt[:1400], xt[1400:], yt[1400:])
    print(f"push-pull pair, logistic regression on digits, seeds {args.seeds}\n")
    print("| bits | rounding | accuracy (%) | NLL | T_eff | rounding share |")
    print("|---|---|---|---|---|---|")
    for bits in args.bits:
        for rounding in ("stochastic", "nearest"):
            runs = [train(bits, rounding, seed, data) for seed in args.seeds]
            acc, nll, temp, share = (statistics.mean(col) for col in zip(*runs, strict=True))
            print(f"| {bits} | {rounding} | {100 * acc:.1f} | {nll:.3f} | {temp:.3g} "
                  f"| {share:.2f} |", flush=True)


if __name__ == "__main__":
    main()
