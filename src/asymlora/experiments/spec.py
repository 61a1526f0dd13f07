"""What decides one run's numbers (:class:`RunSpec`), and how its folder is named.

A run folder is ``OUT/<task>/<model>[+mean-pool]/<method>[-r<rank>]/seed<seed>/``; one trial per learning rate
lives in ``trials/lr-<lr>/`` inside it. A folder holds the spec it was made with (``config.json``); a spec that
differs from it in anything but the :data:`VOLATILE` settings is a conflict, so a results folder never mixes
configurations. Settings added after folders were first written (:data:`ADDED_SETTINGS`) are filled in with
the value those folders had, so old folders stay comparable.

Some settings depend on the task: ``max_length=None`` means the task's own default (64 tokens for sentence
classification, 256 for instruction data); :meth:`RunSpec.resolved` fills them in, and the resolved spec is
what a run folder records and compares.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from asymlora.config import DROPOUT_ON
from asymlora.experiments.methods import Method, get_method
from asymlora.models.pooling import POOLINGS
from asymlora.train.loop import TrainConfig

# Settings that do not change a run's numbers, ignored when comparing a folder's config.
VOLATILE = frozenset({"checkpoint_every", "eval_batch_size"})
# Settings added to RunSpec after run folders were first written, with the value an old folder had.
ADDED_SETTINGS: dict[str, Any] = {"pooling": "model", "image_size": None, "max_train_eval_examples": None,
                                  "dropout": 0.0, "dropout_on": "input"}


class RunConflict(RuntimeError):
    """The run folder exists with different settings."""


@dataclass(frozen=True)
class RunSpec:
    """Everything that decides one run's numbers."""

    task: str = "sentiment"
    method: str = "b-only"
    rank: int | None = 8
    seed: int = 0
    model: str = "minilm"
    pooling: str = "model"  # "mean": a linear head on mean-pooled token states (asymlora.models.pooling)
    lrs: tuple[float, ...] = ()  # empty: the method's default lr, or its sweep when sweep=True
    sweep: bool = False
    epochs: int = 3
    batch_size: int = 32
    eval_batch_size: int = 128
    max_length: int | None = None  # tokens per example; None: the task's default
    image_size: int | None = None  # pixels (image tasks); None: the model's own input size
    max_train_examples: int | None = None
    max_val_examples: int | None = None  # a fixed subset of the validation split (quick runs only)
    max_test_examples: int | None = None  # a fixed subset of the test split(s) (quick runs only)
    max_train_eval_examples: int | None = None  # the train split's metrics on a fixed part of the trained examples
    warmup_ratio: float = 0.06
    weight_decay: float = 0.0
    max_grad_norm: float | None = 1.0
    select: str = "best"
    targets: tuple[str, ...] | None = None  # None: the model's query / value projections
    dropout: float = 0.0  # adapter dropout (adapter methods and PEFT's LoRA only)
    dropout_on: str = "input"  # "input": drop(x), the paper's and PEFT's; "projection": drop(A·x) (asymlora's only)
    extra_tests: bool = True  # also evaluate the task's extra test sets (out-of-domain sets, environments)
    mixed_precision: str = "no"
    checkpoint_every: int = 100
    task_options: tuple[tuple[str, str], ...] = ()  # for data files: (("text_column", "review"), ...)

    def __post_init__(self) -> None:
        method = get_method(self.method)
        object.__setattr__(self, "method", method.name)
        if not method.uses_rank:
            object.__setattr__(self, "rank", None)
        elif self.rank is None or isinstance(self.rank, bool) or int(self.rank) < 1:
            raise ValueError(f"method {method.name!r} needs a rank ≥ 1, got {self.rank!r}")
        else:
            object.__setattr__(self, "rank", int(self.rank))
        object.__setattr__(self, "lrs", tuple(float(x) for x in self.lrs) if method.trains else ())
        if not method.trains:
            object.__setattr__(self, "sweep", False)
        if any(not (x > 0 and math.isfinite(x)) for x in self.lrs):
            raise ValueError(f"learning rates must be positive numbers, got {self.lrs}")
        if self.targets is not None:
            object.__setattr__(self, "targets", tuple(self.targets))
        self._check_dropout(method)
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}, got {self.pooling!r}")
        object.__setattr__(self, "task_options", tuple(sorted((str(k), str(v)) for k, v in dict(self.task_options).items())))
        for name in ("max_length", "image_size", "max_train_examples", "max_val_examples", "max_test_examples",
                     "max_train_eval_examples"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or int(v) < 1):
                raise ValueError(f"{name} must be ≥ 1 (or None for the default), got {v!r}")
        if method.trains:
            self.train_config(self.resolved_lrs()[0])  # validates the optimisation settings

    def _check_dropout(self, method: Method) -> None:
        if isinstance(self.dropout, bool) or not (isinstance(self.dropout, (int, float)) and 0 <= self.dropout < 1):
            raise ValueError(f"dropout must be a probability in [0, 1), got {self.dropout!r}")
        object.__setattr__(self, "dropout", float(self.dropout))
        if self.dropout_on not in DROPOUT_ON:
            raise ValueError(f"dropout_on must be one of {', '.join(DROPOUT_ON)}, got {self.dropout_on!r}")
        method.check_dropout(self.dropout, self.dropout_on)

    # --- derived ----------------------------------------------------------------------------------
    @property
    def method_obj(self) -> Method:
        return get_method(self.method)

    def resolved_lrs(self) -> tuple[float, ...]:
        m = self.method_obj
        if not m.trains:
            return (0.0,)  # one trial, nothing trained (lrs and sweep do not apply)
        if self.lrs:
            return tuple(sorted(set(self.lrs)))
        return tuple(sorted(m.lr_sweep)) if self.sweep else (m.lr,)

    def resolved(self, task: Any) -> "RunSpec":
        """This spec with the task-dependent defaults filled in (``max_length``: the task's default)."""
        if self.max_length is None and getattr(task, "default_max_length", None):
            return self.replace(max_length=int(task.default_max_length))
        return self

    def train_config(self, lr: float, *, progress: bool = True, fsdp: bool = False) -> TrainConfig:
        return TrainConfig(lr=lr, epochs=self.epochs, batch_size=self.batch_size,
                           eval_batch_size=self.eval_batch_size, warmup_ratio=self.warmup_ratio,
                           weight_decay=self.weight_decay, max_grad_norm=self.max_grad_norm, seed=self.seed,
                           select=self.select, checkpoint_every=self.checkpoint_every,
                           mixed_precision=self.mixed_precision, progress=progress, fsdp=fsdp)

    @property
    def display(self) -> str:
        return self.method_obj.display(self.rank)

    def run_name(self) -> str:
        """``b-only-r8``; with adapter dropout ``b-only-r8-drop0.1`` (input) or ``b-only-r8-drop0.1-projection``."""
        name = f"{self.method}-r{self.rank}" if self.rank else self.method
        if self.dropout:
            name += f"-drop{self.dropout:g}" + ("" if self.dropout_on == "input" else f"-{self.dropout_on}")
        return name

    @property
    def model_id(self) -> str:
        """The model as run folders name it: its label, plus ``+mean-pool`` with the mean-pooling head."""
        return with_head(model_label(self.model), self.pooling)

    def relpath(self) -> Path:
        return Path(slug(task_label(self.task))) / slug(self.model_id) / self.run_name() / f"seed{self.seed}"

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["lrs"] = list(self.lrs)
        d["targets"] = list(self.targets) if self.targets is not None else None
        d["task_options"] = dict(self.task_options)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "RunSpec":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown run settings {sorted(unknown)}; known: {sorted(known)}")
        d = dict(d)
        if isinstance(d.get("task_options"), Mapping):
            d["task_options"] = tuple(d["task_options"].items())
        for key in ("lrs", "targets"):
            if isinstance(d.get(key), list):
                d[key] = tuple(d[key])
        return cls(**d)

    def replace(self, **changes: Any) -> "RunSpec":
        return dataclasses.replace(self, **changes)


# --- names ---------------------------------------------------------------------------------------------
def slug(text: str) -> str:
    s = re.sub(r"[^A-Za-z0-9._+-]+", "-", text).strip("-.")
    return s or "x"


def task_label(task: str) -> str:
    p = Path(task)
    return p.stem if p.suffix.lower() in (".csv", ".tsv", ".jsonl") else task.replace("/", "-")


def model_label(model: str) -> str:
    p = Path(model)
    return p.name if (p.is_absolute() or model.startswith(".")) else model.replace("/", "--")


def with_head(model: str, pooling: str | None) -> str:
    """A model's name in folders and reports: ``+mean-pool`` appended when it ran with the mean-pooling head."""
    return model + ("+mean-pool" if pooling == "mean" else "")


def trial_dirname(lr: float) -> str:
    return f"lr-{lr:g}"


# --- comparing a folder's settings with a spec ------------------------------------------------------------
def with_added_settings(spec: Mapping[str, Any]) -> dict[str, Any]:
    """A saved spec with the settings added since it was written filled in (old folders stay comparable)."""
    return {**ADDED_SETTINGS, **spec}


def comparable(config: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k not in VOLATILE}


def settings_conflict(saved: Mapping[str, Any], spec: RunSpec) -> str | None:
    """``None`` if a folder's saved spec matches ``spec`` (resolved), else the differing settings as text."""
    old, new = comparable(with_added_settings(saved)), comparable(spec.to_dict())
    if old == new:
        return None
    diff = [f"{k}={old.get(k)!r} → {new.get(k)!r}" for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    return "; ".join(diff[:6])
