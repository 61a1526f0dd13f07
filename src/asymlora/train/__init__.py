"""Training: one Accelerate-based loop, resumable checkpoints, and the run-folder layout.

``train(model, train_set, val_set, TrainConfig(...), metrics_fn=..., primary_metric=..., run_dir=...)``
trains whatever has ``requires_grad`` (adapters, head, or the whole model), validates each epoch,
keeps the best (or last) epoch and can be killed and resumed. Needs the ``experiments`` extra
(accelerate, transformers, tqdm).
"""

from asymlora.provenance import environment, git_commit, versions
from asymlora.train.loop import (
    EpochSampler,
    TrainConfig,
    TrainOutcome,
    default_loss,
    default_predict,
    evaluate,
    is_lower_better,
    load_trainable_state,
    make_accelerator,
    train,
    trainable_state,
)
from asymlora.train.rundir import RunBusy, RunDir
from asymlora.train.state import Checkpointer, ResumeError

__all__ = [
    "TrainConfig", "TrainOutcome", "train", "evaluate", "make_accelerator", "EpochSampler", "default_loss",
    "default_predict", "is_lower_better", "trainable_state", "load_trainable_state",
    "RunDir", "RunBusy", "environment", "git_commit", "versions", "Checkpointer", "ResumeError",
]
