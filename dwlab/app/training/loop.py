"""One training run: the loop shared by every optimiser and mapping, with its per-step and
per-epoch records, posterior samples and checkpoints (see :mod:`dwlab.app.training.runs`
for the files)."""

from __future__ import annotations

import dataclasses
import logging
import math
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from tqdm import tqdm

from dwlab.app.backends import open_backends
from dwlab.app.data import ImageData, batches_per_epoch, train_batches
from dwlab.app.models import build_model, count_parameters
from dwlab.app.training.arrays import build_training_optimizer, device_conductances
from dwlab.app.training.checkpoint import (
    capture_rng_states,
    load_checkpoint,
    restore_rng_states,
    save_checkpoint,
)
from dwlab.app.training.distributed import (
    Parallel,
    average_buffers,
    forward_backward,
    records_folder,
)
from dwlab.app.training.metrics import (
    autocast,
    bf16_emulated,
    classification_metrics,
    predict_probs,
)
from dwlab.app.training.posterior import ChainMonitor, PosteriorStore, WeightProjection
from dwlab.app.training.results import RunOutcome, RunResult, read_result, write_result
from dwlab.app.training.spec import RunSpec
from dwlab.config import LoadedConfig, evolve
from dwlab.core.errors import CheckpointError, DwlabError
from dwlab.records import EventLog, TableWriter, plots
from dwlab.records.live import LiveView, Pacer
from dwlab.records.status import StopRequest
from dwlab.sgld.controller import SGLDController, StepStats
from dwlab.sgld.weight import DeviceWeight

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 1
LIVE_MAPS = 4
"""Weight tensors whose crossbar conductance maps go into the live view (the first ones; a
ResNet has dozens)."""
STEP_COLUMNS = ["attempt", "step", "epoch", "batch", "loss", "batch_accuracy", "seconds",
                "weight_projection", *StepStats.LOGGED]
EPOCH_COLUMNS = ["attempt", "epoch", "step", "test_accuracy", "test_nll", "test_ece",
                 "test_entropy", "bma_accuracy", "bma_nll", "bma_ece", "bma_entropy",
                 "samples", "stationarity_z", "sampling_from_step", "thinning_steps",
                 "pulses_total", "seconds", "effective_temperature",
                 "saturated_fraction", "clipped_fraction", "edge_drift"]


class TrainingDiverged(DwlabError, ArithmeticError):
    """The training loss became NaN or infinite."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a training run: ``step`` steps were done, and ``checkpoint_step`` is
    where ``--resume`` continues (None: no checkpoint yet, it starts over)."""

    def __init__(self, label: str, step: int, checkpoint_step: int | None):
        super().__init__(f"{label}: interrupted after step {step}")
        self.label = label
        self.step = step
        self.checkpoint_step = checkpoint_step

    def event(self) -> dict[str, Any]:
        return {"event": "interrupted", "label": self.label, "step": self.step,
                "checkpoint_step": self.checkpoint_step}


@dataclass
class Progress:
    """Where a run stands; saved in every checkpoint. ``attempt`` counts resumes."""

    step: int = 0
    attempt: int = 0
    pulses_total: int = 0
    seconds: float = 0.0
    temperature_sum: float = 0.0
    # this epoch so far: what the device updates did (for epochs.csv)
    epoch_steps: int = 0
    epoch_temperature: float = 0.0
    epoch_clipped: float = 0.0
    epoch_edge_drift: float = 0.0


class TrainingRun:
    """Train one model with one scheme and seed, writing records into ``folder``.

    A Ctrl-C (``stop`` requested) ends the run at the next step boundary: a checkpoint
    there, then :class:`TrainingInterrupted`. A second Ctrl-C interrupts the step itself;
    the last checkpoint written stays the one to resume from.
    """

    def __init__(self, loaded: LoadedConfig, spec: RunSpec, folder: Path, data: ImageData,
                 progress: bool = True, stop: StopRequest | None = None,
                 parallel: Parallel | None = None):
        config = evolve(loaded.config, seed=spec.seed)
        self.loaded = dataclasses.replace(loaded, config=config)
        self.spec = spec
        self.folder = folder
        self.data = data
        self.parallel = parallel or Parallel()
        self.progress = progress and self.parallel.is_main
        self.out = folder
        """Where this process writes its records: ``folder`` but on ranks other than 0
        (see :func:`~dwlab.app.training.distributed.records_folder`)."""
        self.tcfg = loaded.config.training
        self.device = torch.device(self.tcfg.torch_device)
        self.controller_cfg = spec.controller(loaded.config.controller)
        self.uses_samples = spec.scheme != "float_sgd"
        self.checkpoint_path = folder / "checkpoint.pt"
        self.stop = stop or StopRequest()  # (one never entered is never requested)
        self._saved_step: int | None = None  # the step of the last checkpoint written
        # (step, test probabilities) of the last evaluation, reused at the end of the run
        self._last_eval: tuple[int, torch.Tensor] | None = None
        self._last_planes: dict[str, np.ndarray] = {}  # for the per-epoch change histograms
        self._figures = Pacer()  # figures are redrawn at most every few seconds
        self.on_epoch: Callable[[], None] | None = None
        """Called after each epoch's records are written (the run folder redraws its
        learning curves)."""

    # -- hooks (tests replace these in a subprocess to kill a run at a chosen step)
    def after_step(self, step: int) -> None:
        """Called after every training step has been recorded."""

    def run(self) -> RunOutcome:
        """Train to the end (or continue from the checkpoint); returns the final metrics."""
        self.folder.mkdir(parents=True, exist_ok=True)
        done = read_result(self.folder)
        if done is not None:
            return done
        with records_folder(self.folder, self.parallel) as self.out:
            return self._run()

    def _run(self) -> RunOutcome:
        seed = self.spec.seed
        torch.manual_seed(seed)
        np.random.seed(seed % 2**32)
        random.seed(seed)
        model = build_model(self.tcfg.model, self.data.in_channels, self.data.num_classes,
                            self.tcfg.width, self.data.image_size).to(self.device)
        if self.tcfg.channels_last:
            # torch's stubs omit Module.to(memory_format=...)
            model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        dataset_size = self.controller_cfg.dataset_size or self.data.train_size
        # The run owns what it opens: whatever ends it, its arrays are closed once and its
        # virtual lab stopped, and what they report (pulses applied, also before an
        # abort) lands in its folder.
        device_events = EventLog(self.out / "device_events.jsonl")
        try:
            with open_backends(self.loaded, device_events) as backends:
                opt = build_training_optimizer(model, self.loaded, self.controller_cfg,
                                               dataset_size, seed, backends, self.parallel)
                return self._train(model, opt)
        finally:
            device_events.close()

    def _resume(self, model: nn.Module, opt: SGLDController, store: PosteriorStore,
                chain: ChainMonitor) -> Progress:
        """Load the last checkpoint into ``model``, ``opt`` and ``store`` (a new attempt),
        or start from scratch when there is none."""
        if not self.checkpoint_path.exists():
            return Progress()
        ckpt = load_checkpoint(self.checkpoint_path)
        if ckpt["spec"] != dataclasses.asdict(self.spec):
            raise CheckpointError(
                f"{self.checkpoint_path}: written for {ckpt['spec']}, not {self.spec}")
        try:
            model.load_state_dict(ckpt["model"])
        except RuntimeError as exc:
            raise CheckpointError(f"{self.checkpoint_path}: model does not match ({exc})"
                                  ) from None
        opt.load_state_dict(ckpt["optimizer"])
        store.load_state_dict(ckpt["samples"])
        chain.load_state_dict(ckpt["chain"])
        progress = Progress(**ckpt["state"])
        progress.attempt += 1
        restore_rng_states(ckpt["rng"])
        self._saved_step = progress.step
        self.parallel.barrier()  # every rank has read it before rank 0 writes the next
        return progress

    def _checkpoint(self, model: nn.Module, opt: SGLDController, store: PosteriorStore,
                    chain: ChainMonitor, progress: Progress) -> None:
        state = {
            "format": CHECKPOINT_FORMAT, "spec": dataclasses.asdict(self.spec),
            "model": model.state_dict(), "optimizer": opt.state_dict(),
            "samples": store.state_dict(), "chain": chain.state_dict(),
            "state": dataclasses.asdict(progress),
            "rng": capture_rng_states(),
        }  # (built on every rank: the arrays' snapshots gather their blocks)
        save_checkpoint(self.out / self.checkpoint_path.name, state)
        self._saved_step = progress.step

    def _step_boundary(self, step: int, save: Callable[[], None]) -> None:
        """After every recorded step: the test hook, then a requested stop (checkpoint
        here unless one was just written)."""
        self.after_step(step)
        if self.parallel.any(self.stop.requested):
            if self._saved_step != step:
                save()
            raise TrainingInterrupted(self.spec.label, step, step)

    def _train(self, model: nn.Module, opt: SGLDController) -> RunResult:
        tcfg = self.tcfg
        per_epoch = batches_per_epoch(self.data, tcfg.batch_size)
        total_steps = per_epoch * tcfg.epochs
        burn_in_steps = math.ceil(tcfg.burn_in_epochs * per_epoch)
        store = PosteriorStore(tcfg.max_samples)
        chain = ChainMonitor(
            burn_in_steps, math.ceil(tcfg.stationarity_window_epochs * per_epoch),
            tcfg.stationarity_z,
            None if tcfg.thinning_steps == "auto" else tcfg.thinning_steps)
        projection = WeightProjection(model, self.spec.seed)
        state = self._resume(model, opt, store, chain)
        mapped = sum(dw.n_weights for dw in opt.weights)
        too_long = chain.burn_in_warning(total_steps) if self.uses_samples else None
        if too_long:
            log.warning("%s: %s", self.spec.label, too_long)
        if tcfg.bf16 and bf16_emulated(self.device):
            log.warning("%s: bf16 autocast on a CPU without native bf16 (AVX512-BF16 or "
                        "AMX) is emulated and several times slower than float32: set "
                        "training.bf16 false (or --no-bf16) here", self.spec.label)

        started = time.perf_counter()  # of the current stretch of training time

        def checkpoint() -> None:
            self._checkpoint(model, opt, store, chain, state)

        def checkpoint_mid_epoch() -> None:
            nonlocal started
            state.seconds += time.perf_counter() - started
            started = time.perf_counter()
            checkpoint()

        def predict() -> torch.Tensor:
            return predict_probs(model, self.data, tcfg.eval_batch_size, self.device,
                                 tcfg.bf16, tcfg.channels_last)

        steps_log = TableWriter(self.out / "steps.csv", STEP_COLUMNS)
        epochs_log = TableWriter(self.out / "epochs.csv", EPOCH_COLUMNS)
        live = LiveView(self.out)
        epoch_losses: list[float] = []
        bar = tqdm(total=total_steps, initial=state.step, desc=self.spec.label,
                   disable=None if self.progress else True, leave=False, dynamic_ncols=True)
        model.train()
        try:
            while state.step < total_steps:
                epoch, start_batch = divmod(state.step, per_epoch)
                started = time.perf_counter()
                for b, x, y in train_batches(self.data, tcfg.batch_size, self.spec.seed,
                                             epoch, start_batch, self.device):
                    if tcfg.channels_last:
                        x = x.contiguous(memory_format=torch.channels_last)
                    opt.zero_grad(set_to_none=True)
                    loss, accuracy = self._forward_backward(model, x, y)
                    if not torch.isfinite(loss):
                        raise TrainingDiverged(
                            f"{self.spec.label}: the training loss became {loss.item()} at "
                            f"step {state.step + 1}; lower controller.lr")
                    opt.step()
                    average_buffers(model, self.parallel)
                    stats = opt.last_stats
                    state.step += 1
                    state.pulses_total += stats.pulses_sent
                    state.temperature_sum += stats.effective_temperature
                    state.epoch_steps += 1
                    state.epoch_temperature += stats.effective_temperature
                    state.epoch_clipped += stats.steps_clipped / max(1, mapped)
                    state.epoch_edge_drift += stats.edge_drift
                    step = state.step
                    position = projection(model)
                    sample_due = chain.record(step, loss.item(), position)
                    epoch_losses.append(loss.item())
                    if step % tcfg.log_every_steps == 0 or step == total_steps:
                        step_row = {
                            "attempt": state.attempt, "step": step, "epoch": epoch,
                            "batch": b, "loss": f"{loss.item():.6g}",
                            "batch_accuracy": f"{accuracy:.4f}",
                            "seconds": f"{state.seconds + time.perf_counter() - started:.3f}",
                            "weight_projection": f"{position:.8g}", **stats.logged(),
                        }
                        steps_log.append(step_row)
                        live.scalars("train", step_row, step, skip=NOT_SCALARS)
                    if self.uses_samples and sample_due:
                        store.add(step, model, opt.device_snapshots()
                                  if tcfg.store_device_states else None)
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss.item():.3f}", samples=len(store))
                    if b + 1 == per_epoch:
                        break  # end of epoch: evaluate, then checkpoint
                    if step % tcfg.checkpoint_every_steps == 0:
                        checkpoint_mid_epoch()
                    self._step_boundary(step, checkpoint_mid_epoch)
                state.seconds += time.perf_counter() - started
                row = self._evaluate_epoch(model, store, predict, state.step)
                epoch_row = {"attempt": state.attempt, "epoch": epoch + 1,
                             "step": state.step, "stationarity_z": chain.last_z,
                             "sampling_from_step": chain.start,
                             "thinning_steps": chain.thinning or None,
                             "pulses_total": state.pulses_total,
                             "seconds": f"{state.seconds:.3f}", **row,
                             **device_epoch(state, opt.last_stats)}
                epochs_log.append(epoch_row)
                bar.set_postfix(acc=f"{row['test_accuracy']:.4f}", samples=len(store))
                log.info(epoch_line(self.spec.label, epoch_row, tcfg.epochs, epoch_losses))
                epoch_losses.clear()
                live.scalars("epoch", epoch_row, state.step, skip=NOT_SCALARS)
                self._picture_devices(opt, live, state.step,
                                      figures=self._figures.due(force=epoch + 1 == tcfg.epochs))
                live.flush()
                if self.on_epoch is not None:
                    self.on_epoch()
                checkpoint()
                self._step_boundary(state.step, checkpoint)
        except TrainingInterrupted:
            raise
        except KeyboardInterrupt:  # a second Ctrl-C, inside a step
            raise TrainingInterrupted(self.spec.label, state.step, self._saved_step) from None
        finally:
            bar.close()
            live.close()
            steps_log.close()
            epochs_log.close()
        return self._finish(model, opt, store, chain, predict, state)

    def _forward_backward(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor
                          ) -> tuple[torch.Tensor, torch.Tensor]:
        """Gradients of the batch's mean loss into ``model``; returns that loss and the
        batch accuracy. Split over shards and ranks when the run is
        (:func:`~dwlab.app.training.distributed.forward_backward`)."""
        if self.parallel.sharded:
            return forward_backward(model, x, y, self.parallel,
                                    lambda: autocast(self.device, self.tcfg.bf16))
        with autocast(self.device, self.tcfg.bf16):
            logits = model(x)
            loss = F.cross_entropy(logits.float(), y)
        if torch.isfinite(loss):  # (a diverged loss is refused before any update)
            loss.backward()
        return loss, (logits.argmax(1) == y).float().mean()

    def _picture_devices(self, opt: SGLDController, live: LiveView, step: int,
                         figures: bool) -> None:
        """The arrays as they stand after an epoch, from the last read-back (no extra read
        of the devices): each tensor's conductance histogram and change since the last
        epoch; with ``figures``, also the first tensors' crossbar maps and the pooled
        histograms with the nominal window marked (live view and ``conductance.png``)."""
        weights = [dw for dw in opt.weights if dw.last_read.numel()]
        if not weights:
            return
        pooled: dict[str, list[np.ndarray]] = {}
        for i, dw in enumerate(weights):
            g = dw.last_read.detach().float().cpu().numpy()
            pooled.setdefault(dw.array_name, []).append(g.ravel())
            live.histogram(f"conductance/{dw.name}", g, step)
            previous = self._last_planes.get(dw.name)
            if previous is not None and previous.shape == g.shape:
                live.histogram(f"conductance_change_per_epoch/{dw.name}", g - previous, step)
            self._last_planes[dw.name] = g
            if figures and i < LIVE_MAPS:
                live.figure(f"crossbar/{dw.name}", plots.crossbar_maps(
                    plots.crossbar_planes(g, dw.pair), None, window=_window(dw),
                    title=f"{self.spec.label} {dw.name} (step {step})"), step)
        if not figures:
            return
        readings = {name: np.concatenate(parts) for name, parts in pooled.items()}
        windows = {dw.array_name: _window(dw) for dw in weights}
        live.figure("conductance/histograms", plots.conductance_histograms(
            readings, None, title=f"{self.spec.label} (step {step})", windows=windows), step)
        plots.conductance_histograms(readings, self.out / "conductance.png",
                                     title=f"{self.spec.label} (step {step})", windows=windows)

    def _evaluate_epoch(self, model: nn.Module, store: PosteriorStore,
                        predict: Callable[[], torch.Tensor], step: int) -> dict[str, Any]:
        bins = self.tcfg.ece_bins
        probs = predict()
        self._last_eval = (step, probs)
        row = {f"test_{k}": v for k, v in
               classification_metrics(probs, self.data.test_y, bins).items()}
        bma = store.average_probs(model, predict) if self.tcfg.bma_every_epoch else None
        if bma is not None:
            row.update({f"bma_{k}": v for k, v in
                        classification_metrics(bma, self.data.test_y, bins).items()})
        row["samples"] = len(store)
        return row

    def _finish(self, model: nn.Module, opt: SGLDController, store: PosteriorStore,
                chain: ChainMonitor, predict: Callable[[], torch.Tensor], state: Progress
                ) -> RunResult:
        bins = self.tcfg.ece_bins
        if self._last_eval is not None and self._last_eval[0] == state.step:
            probs = self._last_eval[1]
        else:
            probs = predict()
        last = classification_metrics(probs, self.data.test_y, bins)
        bma_probs = store.average_probs(model, predict)
        bma = (classification_metrics(bma_probs, self.data.test_y, bins)
               if bma_probs is not None else None)
        headline = bma if bma is not None else last
        weights = sum(dw.n_weights for dw in opt.weights)
        result = RunResult(
            label=self.spec.label, scheme=self.spec.scheme,
            update_bits=self.spec.update_bits, seed=self.spec.seed,
            accuracy=headline["accuracy"], nll=headline["nll"], ece=headline["ece"],
            entropy=headline["entropy"], prediction="bma" if bma else "final_weights",
            final_weights=last, bma=bma, samples=len(store),
            steps=state.step, train_seconds=state.seconds,
            pulses_total=state.pulses_total, mapped_weights=weights,
            effective_temperature_mean=state.temperature_sum / max(1, state.step),
            saturated_fraction=opt.last_stats.saturated_fraction,
            precision=opt.precision_report(),
            tensor_temperatures={str(row["parameter"]): cast(float, row["implied_temperature"])
                                 for row in opt.mapping_report()},
            pulses_per_weight=state.pulses_total / weights if weights else 0.0,
            device_backed=bool(opt.weights), resumed_attempts=state.attempt,
            model_parameters=count_parameters(model),
            chain=(chain.summary(state.step, [s["step"] for s in store.samples])
                   if self.uses_samples else None),
        )
        torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()},
                   self.out / "model_final.pt")
        if opt.weights:
            readings = {name: g.numpy() for name, g in device_conductances(opt).items()}
            plots.conductance_histograms(
                readings, self.out / "conductance.png", title=f"{self.spec.label} (end)",
                windows={dw.array_name: _window(dw) for dw in opt.weights})
        write_result(self.out, result)
        return result


def device_epoch(state: Progress, last: StepStats) -> dict[str, float]:
    """The device columns of epochs.csv, and a fresh start for the next epoch: mean T_eff
    (device noise and rounding), saturated devices at the epoch's end, clipped steps per
    weight and step, and the mean excess drift of walls at a track end (in largest
    updates)."""
    n = max(1, state.epoch_steps)
    row = {"effective_temperature": state.epoch_temperature / n,
           "saturated_fraction": last.saturated_fraction,
           "clipped_fraction": state.epoch_clipped / n,
           "edge_drift": state.epoch_edge_drift / n}
    state.epoch_steps = 0
    state.epoch_temperature = state.epoch_clipped = state.epoch_edge_drift = 0.0
    return row
NOT_SCALARS = ("attempt", "step", "epoch", "batch")
"""Record columns that say where a row is, not what was measured."""


def _window(dw: DeviceWeight) -> plots.Window:
    return (dw.g_mid - dw.g_half, dw.g_mid + dw.g_half)


def epoch_line(label: str, row: dict[str, Any], epochs: int, losses: list[float]) -> str:
    """The log line of one epoch: where the run is and what its records just got."""
    parts = [f"{label} epoch {row['epoch']}/{epochs} (step {row['step']})"]
    if losses:
        parts.append(f"train loss {statistics.fmean(losses):.4f}")
    parts.append(f"test accuracy {100 * float(row['test_accuracy']):.2f}%")
    if row.get("bma_accuracy") not in (None, ""):
        parts.append(f"model average {100 * float(row['bma_accuracy']):.2f}%")
    parts.append(f"{row['samples']} samples")
    if row["pulses_total"]:
        parts.append(f"{row['pulses_total']:.3g} pulses")
    parts.append(f"{float(row['seconds']):.1f} s")
    return ", ".join(parts)
