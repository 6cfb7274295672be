"""The training host: one loop for every optimiser and mapping (``loop``), posterior samples
and Bayesian model averaging (``posterior``), metrics (``metrics``), the arrays of a run
(``arrays``), checkpoints (``checkpoint``), run folders and resume (``runs``), and
command-line overrides of a config (``overrides``)."""

from dwlab.app.training.loop import Progress, TrainingDiverged, TrainingInterrupted, TrainingRun
from dwlab.app.training.metrics import classification_metrics, predict_probs
from dwlab.app.training.overrides import (
    add_training_options,
    config_with_overrides,
    with_training_overrides,
)
from dwlab.app.training.posterior import PosteriorStore
from dwlab.app.training.results import FailedRun, RunOutcome, RunResult
from dwlab.app.training.runs import (
    RunFolder,
    open_run_folder,
    read_curves,
    start_run_folder,
    train_run_folder,
)
from dwlab.app.training.spec import FLOAT_SCHEMES, RunSpec

__all__ = [
    "FLOAT_SCHEMES", "FailedRun", "PosteriorStore", "Progress", "RunFolder", "RunOutcome",
    "RunResult", "RunSpec", "TrainingDiverged", "TrainingInterrupted", "TrainingRun",
    "add_training_options",
    "classification_metrics", "config_with_overrides", "open_run_folder", "predict_probs",
    "read_curves", "start_run_folder", "train_run_folder", "with_training_overrides",
]
