"""Run folders: started from a validated config, trained run by run, reopened to resume.

A *run folder* holds one or more *training runs* (the push-pull run and its float SGD
reference for ``dwlab train``; every precision and seed for ``dwlab sweep``)::

    RUN/
      config.yaml      the resolved lab config (a record; ``--resume`` trains from it)
      metadata.json    versions, git revision, seeds, config path, runs, start/end times;
                       ``distributed``: the run's shards and the world size of each attempt;
                       ``status`` (running / completed / interrupted / failed), ``error``
                       when it failed, and ``run_status`` per training run; rewritten
                       atomically as they change (a killed run still says ``running``)
      events.jsonl     run-level events (start and resume with the world size, a run
                       finished or failed,
                       interrupted with the step to resume from, failed with the error)
      <label>/         one training run
        steps.csv      per logged step: loss, weight projection, step size, device
                       statistics (as it goes)
        epochs.csv     per epoch: test metrics of the current weights and of the samples'
                       average, the last stationarity z, sampling start and thinning
        device_events.jsonl  what the arrays report: every apply, an aborted apply
                       with the pulses sent before the stop, a failed safe state
        checkpoint.pt  model, optimiser/controller (incl. device) state, sample store,
                       position and RNG states; replaced atomically
        model_final.pt final weights;  result.json  final metrics of the final weights
                       and of the model average, the chain's diagnostics (marks it done)
        conductance.png device conductances, the nominal window marked (device-backed
                       schemes; redrawn after every epoch, a last time at the end)
        events.out.tfevents.*  the live view (TensorBoard): every numeric column of
                       steps.csv and epochs.csv as scalars, conductance histograms and
                       crossbar maps per epoch; ``dwlab watch RUN`` shows it
      learning_curves.png  every run's curves, redrawn after every epoch

A new folder trains from the config in memory; one killed at any point continues with
``dwlab train --resume RUN``, which reads ``config.yaml`` back: finished runs are skipped,
an unfinished one restarts from its last checkpoint. Rows written after that checkpoint
are kept; the replayed steps are written again with a higher ``attempt`` number, so
readers take the last row of each step. Ctrl-C ends a run at the next step boundary with
a checkpoint there (see :class:`~dwlab.app.training.loop.TrainingRun`).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

from dwlab.app.data import ImageData, load_dataset
from dwlab.app.training.distributed import Parallel
from dwlab.app.training.loop import TrainingDiverged, TrainingInterrupted, TrainingRun
from dwlab.app.training.memory import keep_freed_memory
from dwlab.app.training.results import FailedRun, RunOutcome, write_result
from dwlab.app.training.spec import RunSpec
from dwlab.config import LabConfig, LoadedConfig, from_data, read_yaml, to_data
from dwlab.core.errors import CheckpointError, PlanError
from dwlab.records import (
    EventLog,
    atomic_write_json,
    atomic_write_text,
    base_metadata,
    now_iso,
    plots,
    read_table,
)
from dwlab.records.live import Pacer
from dwlab.records.status import RunStatus, StopRequest, error_text


@dataclass
class RunFolder:
    """A run folder and what it trains: the config, its runs and its metadata."""

    path: Path
    loaded: LoadedConfig
    specs: list[RunSpec]
    metadata: dict[str, Any]
    parallel: Parallel = field(default_factory=Parallel)
    """This process's rank; only rank 0 writes the folder's own records."""

    @property
    def shards(self) -> int:
        """Slices of every batch and blocks of every array, fixed for the run."""
        return int(self.metadata.get("distributed", {}).get("shards", 1))


def start_run_folder(loaded: LoadedConfig, folder: Path, kind: str, specs: list[RunSpec],
                     parallel: Parallel | None = None) -> RunFolder:
    """A new run folder, with the resolved config and the metadata written as records (by
    rank 0 alone when ``parallel`` has several ranks)."""
    parallel = parallel or Parallel()
    if not parallel.is_main:
        return RunFolder(folder, loaded, list(specs),
                         {"distributed": {"shards": parallel.shards}}, parallel)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / "config.yaml",
                      yaml.safe_dump(to_data(loaded.config), sort_keys=False))
    meta = base_metadata(kind, seed=loaded.config.seed,
                         config_path=str(loaded.path.resolve()),
                         runs=[dataclasses.asdict(s) for s in specs],
                         torch_device=loaded.config.training.torch_device,
                         torch_threads=torch.get_num_threads(),
                         distributed={"shards": parallel.shards, "world_sizes": []})
    atomic_write_json(folder / "metadata.json", meta)
    return RunFolder(folder, loaded, list(specs), meta, parallel)


def open_run_folder(folder: Path) -> RunFolder:
    """An existing run folder, read back from its records (for ``--resume``)."""
    meta_path = folder / "metadata.json"
    if not meta_path.is_file():
        raise CheckpointError(f"{folder} is not a dwlab run folder (no metadata.json)")
    meta = json.loads(meta_path.read_text())
    config = from_data(LabConfig, read_yaml(folder / "config.yaml"),
                       file=str(folder / "config.yaml"))
    # Paths in the config stay relative to the original config file.
    loaded = LoadedConfig(config, Path(meta["config_path"]))
    specs = [RunSpec(**s) for s in meta["runs"]]
    return RunFolder(folder, loaded, specs, meta)


def load_training_data(loaded: LoadedConfig) -> ImageData:
    t = loaded.config.training
    data_dir = loaded.resolve(t.data_dir) if t.data_dir else None
    return load_dataset(t.dataset, data_dir, t.limit_train, t.limit_test, t.augment)


def train_run_folder(run: RunFolder, progress: bool = True, keep_going: bool = False,
                     run_factory: Callable[..., TrainingRun] = TrainingRun
                     ) -> list[RunOutcome]:
    """Train (or continue) every run of a run folder, then write plots and the end time.

    With ``keep_going`` (sweeps) a run that diverges or whose pulse plan is refused is
    recorded as failed (``result.json`` with ``failed``) and the next run starts.

    The metadata says how it stands as it changes (:func:`mark`); a Ctrl-C is recorded as
    an ``interrupted`` event and status, any other way out as ``failed`` with the error,
    and the exception goes on to the caller.
    """
    folder = run.path
    keep_freed_memory()  # the device update's temporaries would slow the next pass
    if not run.parallel.is_main:  # the other ranks train alike and record nothing here
        with StopRequest() as stop:
            return _train_runs(run, None, stop, False, keep_going, run_factory)
    events = EventLog(folder / "events.jsonl")
    resumed = any((folder / s.label / "checkpoint.pt").exists() for s in run.specs)
    world = run.parallel.world_size
    events.write({"time": now_iso(), "event": "resume" if resumed else "start",
                  "world_size": world})
    distributed = run.metadata.setdefault("distributed", {"shards": run.shards})
    distributed.setdefault("world_sizes", []).append(world)
    mark(run, "running")
    try:
        with StopRequest() as stop:
            results = _train_runs(run, events, stop, progress, keep_going, run_factory)
        write_learning_curves(run)
    except KeyboardInterrupt as exc:
        where = exc.event() if isinstance(exc, TrainingInterrupted) else {"event": "interrupted"}
        events.write({"time": now_iso(), **where})
        mark(run, "interrupted")
        raise
    except BaseException as exc:
        events.write({"time": now_iso(), "event": "failed", "error": error_text(exc)})
        mark(run, "failed", error_text(exc))
        raise
    finally:
        events.close()
    mark(run, "completed")
    return results


def _train_runs(run: RunFolder, events: EventLog | None, stop: StopRequest, progress: bool,
                keep_going: bool, run_factory: Callable[..., TrainingRun]
                ) -> list[RunOutcome]:
    data = load_training_data(run.loaded)
    results: list[RunOutcome] = []
    curves = Pacer()

    def redraw_curves() -> None:  # as the runs go; the last drawing follows them all
        if curves.due():
            write_learning_curves(run)

    for spec in run.specs:
        if stop.requested:  # Ctrl-C between two runs (or while the data loaded)
            raise KeyboardInterrupt
        mark(run, "running", label=spec.label)
        try:
            training = run_factory(run.loaded, spec, run.path / spec.label, data, progress,
                                   stop=stop, parallel=run.parallel)
            training.on_epoch = redraw_curves
            result = training.run()
        except (TrainingDiverged, PlanError) as exc:
            if not keep_going:
                raise
            result = FailedRun.of(spec, exc)
            if run.parallel.is_main:
                write_result(run.path / spec.label, result)
        mark(run, "failed" if isinstance(result, FailedRun) else "completed",
             label=spec.label)
        if events is not None:
            events.write({"time": now_iso(), **result.event()})
        results.append(result)
    if stop.requested:  # Ctrl-C while the last run finished: it is recorded, but say so
        raise KeyboardInterrupt
    return results


def mark(run: RunFolder, status: RunStatus, error: str | None = None,
         label: str | None = None) -> None:
    """Record in ``metadata.json`` (atomically) how the run folder, or its training run
    ``label``, stands. A folder that ends marks the run still ``running`` in it alike.
    (Rank 0 alone writes it.)"""
    if not run.parallel.is_main:
        return
    meta = run.metadata
    per_run: dict[str, str] = meta.setdefault("run_status", {})
    if label is not None:
        per_run[label] = status
    else:
        meta.update(status=status, error=error)
        if status == "running":
            meta.pop("ended", None)
        else:
            meta["ended"] = now_iso()
            per_run.update({k: status for k, v in per_run.items() if v == "running"})
    atomic_write_json(run.path / "metadata.json", meta)


def write_learning_curves(run: RunFolder) -> None:
    """``learning_curves.png`` of every run of the folder so far (by rank 0)."""
    if not run.parallel.is_main:
        return
    folder = run.path
    curves = {s.label: read_curves(folder / s.label) for s in run.specs
              if (folder / s.label / "steps.csv").exists()}
    plots.learning_curves(curves, folder / "learning_curves.png", title=run.loaded.config.name)


def read_curves(folder: Path) -> dict[str, list[float]]:
    """Learning-curve data of one training run; the last row of each step (epoch) wins.
    The ``bma_`` lists hold the epochs that had posterior samples."""
    steps = {int(r["step"]): float(r["loss"]) for r in read_table(folder / "steps.csv")}
    epochs = {int(r["epoch"]): r for r in read_table(folder / "epochs.csv")}
    rows = [epochs[e] for e in sorted(epochs)]
    sampled = [r for r in rows if r["bma_nll"]]

    def column(rows: list[dict[str, str]], name: str) -> list[float]:
        return [float(r[name]) for r in rows]

    return {"step": sorted(steps), "loss": [steps[s] for s in sorted(steps)],
            "epoch": column(rows, "epoch"), "test_accuracy": column(rows, "test_accuracy"),
            "test_nll": column(rows, "test_nll"), "bma_epoch": column(sampled, "epoch"),
            "bma_accuracy": column(sampled, "bma_accuracy"),
            "bma_nll": column(sampled, "bma_nll")}
