"""Run folders: started from a validated config, trained run by run, reopened to resume.

A *run folder* holds one or more *training runs* (the push-pull run and its float SGD
reference for ``dwlab train``; every precision and seed for ``dwlab sweep``)::

    RUN/
      config.yaml      the resolved lab config (a record; ``--resume`` trains from it)
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

A new folder trains from the config in memory; one killed at any point continues with
``dwlab train --resume RUN``, which reads ``config.yaml`` back: finished runs are skipped,
an unfinished one restarts from its last checkpoint. Rows written after that checkpoint
are kept; the replayed steps are written again with a higher ``attempt`` number, so
readers take the last row of each step.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from dwlab.app.data import ImageData, load_dataset
from dwlab.app.training.loop import TrainingDiverged, TrainingRun
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


@dataclass
class RunFolder:
    """A run folder and what it trains: the config, its runs and its metadata."""

    path: Path
    loaded: LoadedConfig
    specs: list[RunSpec]
    metadata: dict[str, Any]


def start_run_folder(loaded: LoadedConfig, folder: Path, kind: str, specs: list[RunSpec]
                     ) -> RunFolder:
    """A new run folder, with the resolved config and the metadata written as records."""
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / "config.yaml",
                      yaml.safe_dump(to_data(loaded.config), sort_keys=False))
    meta = base_metadata(kind, seed=loaded.config.seed,
                         config_path=str(loaded.path.resolve()),
                         runs=[dataclasses.asdict(s) for s in specs],
                         torch_device=loaded.config.training.torch_device,
                         torch_threads=torch.get_num_threads())
    atomic_write_json(folder / "metadata.json", meta)
    return RunFolder(folder, loaded, list(specs), meta)


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
    """
    folder, specs = run.path, run.specs
    events = EventLog(folder / "events.jsonl")
    resumed = any((folder / s.label / "checkpoint.pt").exists() for s in specs)
    events.write({"time": now_iso(), "event": "resume" if resumed else "start"})
    data = load_training_data(run.loaded)
    results: list[RunOutcome] = []
    try:
        for spec in specs:
            try:
                result = run_factory(run.loaded, spec, folder / spec.label, data,
                                     progress).run()
            except (TrainingDiverged, PlanError) as exc:
                if not keep_going:
                    raise
                result = FailedRun.of(spec, exc)
                write_result(folder / spec.label, result)
            events.write({"time": now_iso(), **result.event()})
            results.append(result)
    finally:
        events.close()
    curves = {s.label: read_curves(folder / s.label) for s in specs
              if (folder / s.label / "steps.csv").exists()}
    plots.learning_curves(curves, folder / "learning_curves.png",
                          title=run.loaded.config.name)
    run.metadata["ended"] = now_iso()
    atomic_write_json(folder / "metadata.json", run.metadata)
    return results


def read_curves(folder: Path) -> dict[str, list[float]]:
    """Learning-curve data of one training run; the last row of each step wins."""
    steps = {int(r["step"]): float(r["loss"]) for r in read_table(folder / "steps.csv")}
    epochs = {int(r["epoch"]): float(r["test_accuracy"])
              for r in read_table(folder / "epochs.csv")}
    return {"step": sorted(steps), "loss": [steps[s] for s in sorted(steps)],
            "epoch": sorted(epochs), "test_accuracy": [epochs[e] for e in sorted(epochs)]}
