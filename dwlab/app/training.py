"""The training host: one loop for every optimiser and mapping, posterior samples,
Bayesian model averaging, metrics, run records, checkpoint and resume.

A *run folder* holds one or more *training runs* (the push-pull run and its float SGD
reference for ``dwlab train``; every precision and seed for ``dwlab sweep``)::

    RUN/
      config.yaml      the resolved lab config
      metadata.json    versions, git revision, seeds, config path, runs, start/end times
      events.jsonl     run-level events (start, resume, a run finished)
      <label>/         one training run
        steps.csv      per logged step: loss, step size, device statistics (as it goes)
        epochs.csv     per epoch: test metrics of the current weights and of the samples
        device_events.jsonl  what the arrays report: every apply, an aborted apply
                       with the pulses sent before the stop, a failed safe state
        checkpoint.pt  model, optimiser/controller (incl. device) state, sample store,
                       position and RNG states; replaced atomically
        model_final.pt final weights;  result.json  final metrics (marks the run done)
        conductance.png device conductances at the end (device-backed schemes)

A run killed at any point continues with ``dwlab train --resume RUN``: finished runs are
skipped, an unfinished one restarts from its last checkpoint. Rows written after that
checkpoint are kept; the replayed steps are written again with a higher ``attempt``
number, so readers take the last row of each step.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn
from torch.nn import functional as F
from tqdm import tqdm

from dwlab.app.checkpoint import (
    capture_rng_states,
    load_checkpoint,
    restore_rng_states,
    save_checkpoint,
)
from dwlab.app.data import ImageData, batches_per_epoch, eval_batches, load_dataset, train_batches
from dwlab.app.models import build_model, count_parameters
from dwlab.config import ControllerConfig, LabConfig, LoadedConfig, from_data, to_data
from dwlab.core.device import DeviceArray
from dwlab.core.errors import CheckpointError, DwlabError, PlanError
from dwlab.core.schemes import Scheme
from dwlab.records import (
    EventLog,
    TableWriter,
    atomic_write_json,
    atomic_write_text,
    base_metadata,
    now_iso,
    plots,
    read_table,
)
from dwlab.sgld.controller import SGLDController, StepStats, build_optimizer

CHECKPOINT_FORMAT = 1
FLOAT_SCHEMES = tuple(s.value for s in Scheme if not s.uses_devices)
STEP_COLUMNS = ["attempt", "step", "epoch", "batch", "loss", "batch_accuracy", "seconds",
                *StepStats.LOGGED]
EPOCH_COLUMNS = ["attempt", "epoch", "step", "test_accuracy", "test_nll", "test_ece",
                 "test_entropy", "bma_accuracy", "bma_nll", "bma_ece", "bma_entropy",
                 "samples", "pulses_total", "seconds"]


class TrainingDiverged(DwlabError, ArithmeticError):
    """The training loss became NaN or infinite."""


@dataclass(frozen=True)
class RunSpec:
    """One training run inside a run folder."""

    label: str
    scheme: str
    update_bits: int
    seed: int

    def controller(self, base: ControllerConfig) -> ControllerConfig:
        return dataclasses.replace(base, scheme=Scheme(self.scheme), update_bits=self.update_bits)


# ---------------------------------------------------------------------------
# metrics


def classification_metrics(probs: torch.Tensor, labels: torch.Tensor, bins: int = 15
                           ) -> dict[str, float]:
    """Accuracy, negative log-likelihood, expected calibration error (``bins`` equal-width
    confidence bins) and mean predictive entropy (nats) of predicted class probabilities."""
    probs = probs.double()
    labels = labels.to(probs.device)
    confidence, predicted = probs.max(dim=1)
    correct = predicted.eq(labels).double()
    nll = -probs.gather(1, labels[:, None]).squeeze(1).clamp_min(1e-12).log()
    entropy = -(probs * probs.clamp_min(1e-12).log()).sum(dim=1)
    edges = torch.linspace(0, 1, bins + 1, dtype=probs.dtype, device=probs.device)
    which = torch.bucketize(confidence, edges[1:-1], right=False)
    ece = torch.zeros((), dtype=probs.dtype, device=probs.device)
    for b in range(bins):
        in_bin = which == b
        if in_bin.any():
            gap = (correct[in_bin].mean() - confidence[in_bin].mean()).abs()
            ece += in_bin.double().mean() * gap
    return {"accuracy": correct.mean().item(), "nll": nll.mean().item(),
            "ece": ece.item(), "entropy": entropy.mean().item()}


@torch.no_grad()
def predict_probs(model: nn.Module, data: ImageData, batch_size: int, device: torch.device,
                  bf16: bool = False, channels_last: bool = False) -> torch.Tensor:
    """Softmax outputs for the test set (CPU tensor, float32)."""
    was_training = model.training
    model.eval()
    out = []
    for x, _ in eval_batches(data, batch_size, device):
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with _autocast(device, bf16):
            logits = model(x)
        out.append(F.softmax(logits.float(), dim=1).cpu())
    model.train(was_training)
    return torch.cat(out)


def _autocast(device: torch.device, bf16: bool):
    if bf16:
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


# ---------------------------------------------------------------------------
# posterior samples


class PosteriorStore:
    """The most recent ``max_samples`` posterior samples of one chain.

    A sample holds the model's weights and buffers as the devices held them, and, when
    available, the device snapshots themselves (the sample as it lives on the arrays).
    """

    def __init__(self, max_samples: int):
        self.max_samples = max_samples
        self.samples: list[dict[str, Any]] = []

    def __len__(self) -> int:
        return len(self.samples)

    def add(self, step: int, model: nn.Module, device_states: dict[str, Any] | None) -> None:
        weights = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        self.samples.append({"step": step, "weights": weights, "devices": device_states})
        del self.samples[:-self.max_samples]

    def state_dict(self) -> dict[str, Any]:
        return {"max_samples": self.max_samples, "samples": self.samples}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.max_samples = state["max_samples"]
        self.samples = list(state["samples"])

    def average_probs(self, model: nn.Module, predict: Callable[[], torch.Tensor]
                      ) -> torch.Tensor | None:
        """Bayesian model average: the mean of ``predict()`` over the stored samples.

        The model's current weights are put back afterwards.
        """
        if not self.samples:
            return None
        current = {k: v.detach().clone() for k, v in model.state_dict().items()}
        total = None
        try:
            for sample in self.samples:
                model.load_state_dict(sample["weights"])
                probs = predict()
                total = probs if total is None else total + probs
        finally:
            model.load_state_dict(current)
        return total / len(self.samples)


# ---------------------------------------------------------------------------
# optimiser


def build_training_optimizer(model: nn.Module, loaded: LoadedConfig,
                             controller: ControllerConfig, dataset_size: int, seed: int,
                             arrays: list[DeviceArray] | None = None,
                             event_log: EventLog | None = None) -> SGLDController:
    """The controller for ``controller.scheme``, with arrays built from ``loaded``.

    Every array built is appended to ``arrays`` (also when the controller's checks then
    refuse it), so the caller can close each one; ``event_log`` receives the arrays'
    events (see :func:`dwlab.app.backends.build_array`).
    """
    from dwlab.app.backends import build_array

    def array_factory(name: str, shape: tuple[int, ...], seed_offset: int) -> DeviceArray:
        array = build_array(loaded, name, shape, seed_offset, event_log=event_log)
        if arrays is not None:
            arrays.append(array)
        return array

    return build_optimizer(model, controller, dataset_size=dataset_size,
                           array_factory=array_factory, mapping=loaded.config.mapping,
                           seed=seed)


def close_arrays(arrays: list[DeviceArray], event_log: EventLog) -> list[Exception]:
    """Close every array (safe state, then disconnect), even when one fails; each failure
    is recorded in ``event_log`` and returned."""
    from dwlab.app.backends import close_array

    failures = []
    for array in arrays:
        try:
            close_array(array)
        except Exception as exc:  # keep going: every array must be made safe and released
            failures.append(exc)
            event_log.write({"time": now_iso(), "event": "array_close_failed",
                             "error": f"{type(exc).__name__}: {exc}"})
    return failures


def device_conductances(opt: SGLDController) -> dict[str, torch.Tensor]:
    """All device conductances, pooled per configured array (for histograms)."""
    pooled: dict[str, list[torch.Tensor]] = {}
    for dw in opt.weights:
        g = dw.array.read().conductance_siemens.flatten().float().cpu()
        pooled.setdefault(dw.array_name, []).append(g)
    return {name: torch.cat(parts) for name, parts in pooled.items()}


# ---------------------------------------------------------------------------
# one training run


class TrainingRun:
    """Train one model with one scheme and seed, writing records into ``folder``."""

    def __init__(self, loaded: LoadedConfig, spec: RunSpec, folder: Path, data: ImageData,
                 progress: bool = True):
        config = dataclasses.replace(loaded.config, seed=spec.seed)
        self.loaded = dataclasses.replace(loaded, config=config)
        self.spec = spec
        self.folder = folder
        self.data = data
        self.progress = progress
        self.tcfg = loaded.config.training
        self.device = torch.device(self.tcfg.torch_device)
        self.controller_cfg = spec.controller(loaded.config.controller)
        self.uses_samples = spec.scheme != "float_sgd"

    # -- hooks (tests replace these in a subprocess to kill a run at a chosen step)
    def after_step(self, step: int) -> None:
        """Called after every training step has been recorded."""

    def run(self) -> dict[str, Any]:
        """Train to the end (or continue from the checkpoint); returns the final metrics."""
        self.folder.mkdir(parents=True, exist_ok=True)
        result_path = self.folder / "result.json"
        if result_path.exists():
            import json

            return json.loads(result_path.read_text())
        seed = self.spec.seed
        torch.manual_seed(seed)
        np.random.seed(seed % 2**32)
        random.seed(seed)
        model = build_model(self.tcfg.model, self.data.in_channels, self.data.num_classes,
                            self.tcfg.width, self.data.image_size).to(self.device)
        if self.tcfg.channels_last:
            model = model.to(memory_format=torch.channels_last)
        dataset_size = self.controller_cfg.dataset_size or self.data.train_size
        # The run owns the arrays it builds: whatever ends it, they are closed, and what
        # they report (pulses applied, also before an abort) lands in its folder.
        arrays: list[DeviceArray] = []
        device_events = EventLog(self.folder / "device_events.jsonl")
        try:
            opt = build_training_optimizer(model, self.loaded, self.controller_cfg,
                                           dataset_size, seed, arrays, device_events)
            try:
                result = self._train(model, opt)
            finally:
                opt.close()
        finally:
            failures = close_arrays(arrays, device_events)
            device_events.close()
        if failures:
            raise failures[0]
        return result

    def _train(self, model: nn.Module, opt) -> dict[str, Any]:
        tcfg = self.tcfg
        per_epoch = batches_per_epoch(self.data, tcfg.batch_size)
        total_steps = per_epoch * tcfg.epochs
        burn_in_steps = math.ceil(tcfg.burn_in_epochs * per_epoch)
        store = PosteriorStore(tcfg.max_samples)
        state = {"step": 0, "attempt": 0, "pulses_total": 0, "seconds": 0.0,
                 "temperature_sum": 0.0}
        checkpoint_path = self.folder / "checkpoint.pt"
        if checkpoint_path.exists():
            ckpt = load_checkpoint(checkpoint_path)
            if ckpt["spec"] != dataclasses.asdict(self.spec):
                raise CheckpointError(
                    f"{checkpoint_path}: written for {ckpt['spec']}, not {self.spec}")
            try:
                model.load_state_dict(ckpt["model"])
            except RuntimeError as exc:
                raise CheckpointError(f"{checkpoint_path}: model does not match ({exc})"
                                      ) from None
            opt.load_state_dict(ckpt["optimizer"])
            store.load_state_dict(ckpt["samples"])
            state = dict(ckpt["state"])
            state["attempt"] += 1
            restore_rng_states(ckpt["rng"])

        def checkpoint() -> None:
            save_checkpoint(checkpoint_path, {
                "format": CHECKPOINT_FORMAT, "spec": dataclasses.asdict(self.spec),
                "model": model.state_dict(), "optimizer": opt.state_dict(),
                "samples": store.state_dict(), "state": dict(state),
                "rng": capture_rng_states(),
            })

        def predict() -> torch.Tensor:
            return predict_probs(model, self.data, tcfg.eval_batch_size, self.device,
                                 tcfg.bf16, tcfg.channels_last)

        steps_log = TableWriter(self.folder / "steps.csv", STEP_COLUMNS)
        epochs_log = TableWriter(self.folder / "epochs.csv", EPOCH_COLUMNS)
        bar = tqdm(total=total_steps, initial=state["step"], desc=self.spec.label,
                   disable=not self.progress, leave=False, dynamic_ncols=True)
        model.train()
        try:
            while state["step"] < total_steps:
                epoch, start_batch = divmod(state["step"], per_epoch)
                started = time.perf_counter()
                for b, x, y in train_batches(self.data, tcfg.batch_size, self.spec.seed,
                                             epoch, start_batch, self.device):
                    if tcfg.channels_last:
                        x = x.contiguous(memory_format=torch.channels_last)
                    with _autocast(self.device, tcfg.bf16):
                        logits = model(x)
                        loss = F.cross_entropy(logits.float(), y)
                    if not torch.isfinite(loss):
                        raise TrainingDiverged(
                            f"{self.spec.label}: the training loss became {loss.item()} at "
                            f"step {state['step'] + 1}; lower controller.lr")
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    stats = opt.last_stats
                    state["step"] += 1
                    state["pulses_total"] += stats.pulses_sent
                    state["temperature_sum"] += stats.effective_temperature
                    step = state["step"]
                    if step % tcfg.log_every_steps == 0 or step == total_steps:
                        steps_log.append({
                            "attempt": state["attempt"], "step": step, "epoch": epoch,
                            "batch": b, "loss": f"{loss.item():.6g}",
                            "batch_accuracy": f"{(logits.argmax(1) == y).float().mean():.4f}",
                            "seconds": f"{state['seconds'] + time.perf_counter() - started:.3f}",
                            **stats.logged(),
                        })
                    if (self.uses_samples and step > burn_in_steps
                            and (step - burn_in_steps) % tcfg.thinning_steps == 0):
                        store.add(step, model, opt.device_snapshots()
                                  if tcfg.store_device_states else None)
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss.item():.3f}", samples=len(store))
                    if b + 1 == per_epoch:
                        break  # end of epoch: evaluate, then checkpoint
                    if step % tcfg.checkpoint_every_steps == 0:
                        state["seconds"] += time.perf_counter() - started
                        started = time.perf_counter()
                        checkpoint()
                    self.after_step(step)
                state["seconds"] += time.perf_counter() - started
                row = self._evaluate_epoch(model, store, predict, state["step"])
                epochs_log.append({"attempt": state["attempt"], "epoch": epoch + 1,
                                   "step": state["step"], "pulses_total": state["pulses_total"],
                                   "seconds": f"{state['seconds']:.3f}", **row})
                bar.set_postfix(acc=f"{row['test_accuracy']:.4f}", samples=len(store))
                checkpoint()
                self.after_step(state["step"])
        finally:
            bar.close()
            steps_log.close()
            epochs_log.close()
        return self._finish(model, opt, store, predict, state)

    def _evaluate_epoch(self, model, store, predict, step: int) -> dict[str, Any]:
        bins = self.tcfg.ece_bins
        probs = predict()
        self._last_eval = (step, probs)  # reused by _finish when nothing changed since
        row = {f"test_{k}": v for k, v in
               classification_metrics(probs, self.data.test_y, bins).items()}
        bma = store.average_probs(model, predict) if self.tcfg.bma_every_epoch else None
        if bma is not None:
            row.update({f"bma_{k}": v for k, v in
                        classification_metrics(bma, self.data.test_y, bins).items()})
        row["samples"] = len(store)
        return row

    def _finish(self, model, opt, store, predict, state) -> dict[str, Any]:
        bins = self.tcfg.ece_bins
        cached_step, probs = getattr(self, "_last_eval", (None, None))
        if cached_step != state["step"]:
            probs = predict()
        last = classification_metrics(probs, self.data.test_y, bins)
        bma_probs = store.average_probs(model, predict)
        bma = (classification_metrics(bma_probs, self.data.test_y, bins)
               if bma_probs is not None else None)
        headline = bma if bma is not None else last
        weights = sum(dw.n_weights for dw in opt.weights)
        result = {
            "label": self.spec.label, "scheme": self.spec.scheme,
            "update_bits": self.spec.update_bits, "seed": self.spec.seed,
            "accuracy": headline["accuracy"], "nll": headline["nll"], "ece": headline["ece"],
            "entropy": headline["entropy"], "prediction": "bma" if bma else "final_weights",
            "final_weights": last, "bma": bma, "samples": len(store),
            "steps": state["step"], "train_seconds": state["seconds"],
            "pulses_total": state["pulses_total"], "mapped_weights": weights,
            "effective_temperature_mean": state["temperature_sum"] / max(1, state["step"]),
            "pulses_per_weight": state["pulses_total"] / weights if weights else 0.0,
            "device_backed": bool(opt.weights), "resumed_attempts": state["attempt"],
            "model_parameters": count_parameters(model),
        }
        torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()},
                   self.folder / "model_final.pt")
        if opt.weights:
            readings = {name: g.tolist() for name, g in device_conductances(opt).items()}
            plots.conductance_histograms(readings, self.folder / "conductance.png",
                                         title=self.spec.label)
        atomic_write_json(self.folder / "result.json", result)
        return result


# ---------------------------------------------------------------------------
# run folders


def read_curves(folder: Path) -> dict[str, list[float]]:
    """Learning-curve data of one training run; the last row of each step wins."""
    steps = {int(r["step"]): float(r["loss"]) for r in read_table(folder / "steps.csv")}
    epochs = {int(r["epoch"]): float(r["test_accuracy"])
              for r in read_table(folder / "epochs.csv")}
    return {"step": sorted(steps), "loss": [steps[s] for s in sorted(steps)],
            "epoch": sorted(epochs), "test_accuracy": [epochs[e] for e in sorted(epochs)]}


def start_run_folder(loaded: LoadedConfig, folder: Path, kind: str, specs: list[RunSpec]
                     ) -> None:
    """Write the resolved config and metadata of a new run folder."""
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / "config.yaml",
                      yaml.safe_dump(to_data(loaded.config), sort_keys=False))
    meta = base_metadata(kind, seed=loaded.config.seed,
                         config_path=str(loaded.path.resolve()),
                         runs=[dataclasses.asdict(s) for s in specs],
                         torch_device=loaded.config.training.torch_device,
                         torch_threads=torch.get_num_threads())
    atomic_write_json(folder / "metadata.json", meta)


def open_run_folder(folder: Path) -> tuple[LoadedConfig, list[RunSpec], dict[str, Any]]:
    """The config, runs and metadata of an existing run folder (for ``--resume``)."""
    import json

    from dwlab.config import read_yaml

    meta_path = folder / "metadata.json"
    if not meta_path.is_file():
        raise CheckpointError(f"{folder} is not a dwlab run folder (no metadata.json)")
    meta = json.loads(meta_path.read_text())
    config = from_data(LabConfig, read_yaml(folder / "config.yaml"),
                       file=str(folder / "config.yaml"))
    # Paths in the config stay relative to the original config file.
    loaded = LoadedConfig(config, Path(meta["config_path"]))
    specs = [RunSpec(**s) for s in meta["runs"]]
    return loaded, specs, meta


def load_training_data(loaded: LoadedConfig) -> ImageData:
    t = loaded.config.training
    data_dir = loaded.resolve(t.data_dir) if t.data_dir else None
    return load_dataset(t.dataset, data_dir, t.limit_train, t.limit_test, t.augment)


def run_folder(folder: Path, progress: bool = True, keep_going: bool = False,
               run_factory: Callable[..., TrainingRun] = TrainingRun) -> list[dict[str, Any]]:
    """Train (or continue) every run of a run folder, then write plots and the end time.

    With ``keep_going`` (sweeps) a run that diverges or whose pulse plan is refused is
    recorded as failed (``result.json`` with ``failed``) and the next run starts.
    """
    loaded, specs, meta = open_run_folder(folder)
    events = EventLog(folder / "events.jsonl")
    resumed = any((folder / s.label / "checkpoint.pt").exists() for s in specs)
    events.write({"time": now_iso(), "event": "resume" if resumed else "start"})
    data = load_training_data(loaded)
    results = []
    try:
        for spec in specs:
            try:
                result = run_factory(loaded, spec, folder / spec.label, data, progress).run()
            except (TrainingDiverged, PlanError) as exc:
                if not keep_going:
                    raise
                result = {**dataclasses.asdict(spec), "failed": f"{type(exc).__name__}: {exc}"}
                atomic_write_json(folder / spec.label / "result.json", result)
                events.write({"time": now_iso(), "event": "run_failed", "label": spec.label,
                              "error": result["failed"]})
            else:
                events.write({"time": now_iso(), "event": "run_finished", "label": spec.label,
                              "accuracy": result["accuracy"]})
            results.append(result)
    finally:
        events.close()
    curves = {s.label: read_curves(folder / s.label) for s in specs
              if (folder / s.label / "steps.csv").exists()}
    plots.learning_curves(curves, folder / "learning_curves.png", title=loaded.config.name)
    meta["ended"] = now_iso()
    atomic_write_json(folder / "metadata.json", meta)
    return results


def with_training_overrides(loaded: LoadedConfig, controller: dict[str, Any] | None = None,
                            **changes: Any) -> LoadedConfig:
    """``loaded`` with some ``training`` fields (and ``controller`` fields) replaced (None
    values are ignored) and the result validated like a config file.

    ``torch_device`` also moves every twin array there: the model and its devices'
    state belong on the same torch device.
    """
    changes = {k: v for k, v in changes.items() if v is not None}
    controller = {k: v for k, v in (controller or {}).items() if v is not None}
    if not changes and not controller:
        return loaded
    data = to_data(loaded.config)
    data["training"].update(changes)
    data["controller"].update(controller)
    if "torch_device" in changes:
        for array in data["arrays"].values():
            if array["backend"] == "twin":
                array["twin"]["torch_device"] = changes["torch_device"]
    config = from_data(LabConfig, data, file=f"{loaded.path} (with command-line overrides)")
    return dataclasses.replace(loaded, config=config)
