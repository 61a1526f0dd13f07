"""Experiment tracking through Accelerate's trackers (TensorBoard, W&B, MLflow, … whichever is installed), off by
default.

:class:`TrackerCallback` is a training callback (``train(..., callbacks=[cb])``): on the main process it starts the
trackers named in ``report_to`` as ``Accelerator.init_trackers`` does (the classes of
``accelerate.tracking.LOGGER_TYPE_TO_CLASS``; those that keep files write under ``logging_dir/run_name``), stores the
run's settings as hyper-parameters, and logs

* every optimizer step ``s``: ``train/loss`` (this process's batch loss; under several processes the main process's
  shard) and ``train/lr`` at step ``s``;
* every epoch: ``train/epoch_loss`` (the mean over all processes and batches, as in ``metrics.jsonl``) and
  ``val/<metric>`` for each validation metric, at the epoch's last step.

A resumed run logs from the step after its checkpoint on, to the same ``run_name`` (TensorBoard adds an event file).
Other processes log nothing. :func:`check_trackers` refuses names Accelerate does not know and trackers whose package
is not installed, before anything trains.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from accelerate import PartialState
from accelerate.tracking import LOGGER_TYPE_TO_CLASS, get_available_trackers
from accelerate.utils import LoggerType

__all__ = ["TrackerCallback", "check_trackers", "TRACKER_NAMES", "TRACKER_PACKAGES"]

TRACKER_NAMES = tuple(sorted(LOGGER_TYPE_TO_CLASS))
TRACKER_PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow", "comet_ml": "comet-ml",
                    "aim": "aim", "clearml": "clearml", "dvclive": "dvclive", "swanlab": "swanlab", "trackio": "trackio"}


def check_trackers(report_to: Sequence[str]) -> tuple[str, ...]:
    """The tracker names of ``report_to`` (``"all"``: every installed one; ``"none"`` or empty: none), after checking
    each is known and installed (``ValueError`` saying what to install otherwise)."""
    names = [str(n).strip().lower() for n in report_to]
    if not names or names == ["none"]:
        return ()
    available = {str(t) for t in get_available_trackers()}
    if "all" in names:
        return tuple(sorted(available & set(TRACKER_NAMES)))
    unknown = [n for n in names if n not in TRACKER_NAMES]
    if unknown:
        raise ValueError(f"unknown tracker(s) {unknown}: choose from {', '.join(TRACKER_NAMES)}, 'all' or 'none'")
    missing = [n for n in names if str(LoggerType(n)) not in available]
    if missing:
        pkgs = " ".join(TRACKER_PACKAGES.get(n, n) for n in missing)
        raise ValueError(f"tracker(s) {missing} not installed: pip install {pkgs} (for TensorBoard: pip install "
                         "'asymlora[tracking]')")
    return tuple(dict.fromkeys(names))


def _hparam(value: Any) -> bool | int | float | str:
    """A value TensorBoard's hparams accept (bool, int, float, str); lists and None as text."""
    if isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


class TrackerCallback:
    """Log a training run to Accelerate trackers (module doc); ``finish()`` closes them."""

    def __init__(self, report_to: Sequence[str], *, logging_dir: str | os.PathLike, run_name: str,
                 config: Mapping[str, Any] | None = None) -> None:
        self.names = check_trackers(report_to)
        self.trackers: list[Any] = []
        if not self.names or not PartialState().is_main_process:
            return
        Path(logging_dir).mkdir(parents=True, exist_ok=True)
        for name in self.names:
            cls = LOGGER_TYPE_TO_CLASS[name]
            tracker = cls(run_name, str(logging_dir)) if cls.requires_logging_directory else cls(run_name)
            tracker.start()
            if config:
                tracker.store_init_configuration({k: _hparam(v) for k, v in config.items()})
            self.trackers.append(tracker)

    def log(self, values: dict[str, float], step: int) -> None:
        for tracker in self.trackers:
            tracker.log(values, step=step)

    def __call__(self, event: str, info: dict[str, Any]) -> None:
        if not self.trackers:
            return
        if event == "step":
            self.log({"train/loss": float(info["loss"]), "train/lr": float(info["lr"])}, step=int(info["step"]))
        elif event == "epoch":
            values = {"train/epoch_loss": float(info["train_loss"])}
            values.update({f"val/{k}": float(v) for k, v in (info.get("val") or {}).items()
                           if isinstance(v, (int, float)) and math.isfinite(float(v))})
            self.log(values, step=int(info["step"]))

    def finish(self) -> None:
        for tracker in self.trackers:
            tracker.finish()
        self.trackers = []
