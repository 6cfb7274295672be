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
import statistics
import sys
from pathlib import Path

import torch

from dwlab.config import ControllerConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from digits_logistic_support import Digits, digits_split, train_logistic  # noqa: E402


def train(bits: int, rounding: str, seed: int, data: Digits
          ) -> tuple[float, float, float, float]:
    """Accuracy, NLL, T_eff and rounding share of one run."""
    cfg = ControllerConfig(scheme="push_pull_pair", lr=0.5, update_bits=bits,
                           rounding=rounding, weight_range=5.0)
    logits, opt = train_logistic(cfg, data, seed)
    y_test = data[3]
    stats = opt.last_stats
    return (float((logits.argmax(1) == y_test).float().mean()),
            float(torch.nn.functional.cross_entropy(logits, y_test)),
            stats.effective_temperature, stats.rounding_share)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bits", type=int, nargs="+", default=[1, 2, 4, 7])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    args = p.parse_args()
    data = digits_split()
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
