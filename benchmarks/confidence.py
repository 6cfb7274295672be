"""Over- or under-confident? Accuracy beside mean confidence, for a finished run's final
weights and its model average.

ECE says how far confidence is from accuracy, not which way. For each run of the given run
folders (``dwlab train`` or ``dwlab sweep``), the model is rebuilt from the folder's
config, the final weights and the posterior samples are taken from the checkpoint, and the
test set is predicted again: accuracy, mean top-class probability (confidence), their gap
(confidence - accuracy: negative means under-confident), ECE and NLL. ``--last N`` also
averages only the last ``N`` samples (runs that kept different numbers of samples compared
at the same number).

    python benchmarks/confidence.py RUN_FOLDER [RUN_FOLDER ...] [--last N ...]
"""

from __future__ import annotations

import argparse
import functools
from pathlib import Path

import torch

from dwlab.app.models import build_model
from dwlab.app.training.checkpoint import load_checkpoint
from dwlab.app.training.metrics import classification_metrics, predict_probs
from dwlab.app.training.posterior import PosteriorStore
from dwlab.app.training.runs import load_training_data, open_run_folder


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folders", type=Path, nargs="+")
    ap.add_argument("--last", type=int, nargs="+", default=[],
                    help="also average only the last N samples")
    args = ap.parse_args(argv)
    print("| run | prediction | accuracy (%) | confidence (%) | gap (pp) | ECE | NLL |")
    print("|---|---|---|---|---|---|---|")
    for folder in args.folders:
        run = open_run_folder(folder)
        t = run.loaded.config.training
        data = load_training_data(run.loaded)
        for spec in run.specs:
            checkpoint = folder / spec.label / "checkpoint.pt"
            if not checkpoint.is_file():
                continue
            state = load_checkpoint(checkpoint)
            model = build_model(t.model, data.in_channels, data.num_classes, t.width,
                                data.image_size)
            model.load_state_dict(state["model"])

            predict = functools.partial(predict_probs, model, data, t.eval_batch_size,
                                        torch.device("cpu"))
            store = PosteriorStore(1)
            store.load_state_dict(state["samples"])
            rows = [("final weights", predict())]
            averaged = store.average_probs(model, predict)
            if averaged is not None:
                rows.append((f"model average ({len(store)})", averaged))
            samples = store.samples
            for n in (n for n in args.last if 0 < n < len(samples)):
                store.samples = samples[-n:]
                rows.append((f"model average (last {n})", store.average_probs(model, predict)))
            for what, probs in rows:
                m = classification_metrics(probs, data.test_y, t.ece_bins)
                confidence = float(probs.max(dim=1).values.double().mean())
                print(f"| {folder.name}/{spec.label} | {what} | {100 * m['accuracy']:.2f} | "
                      f"{100 * confidence:.2f} | {100 * (confidence - m['accuracy']):+.2f} | "
                      f"{m['ece']:.4f} | {m['nll']:.4f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
