"""The task protocol: what every modality's task tells the runner, and nothing more.

A task is data + a model head + a metric (docs/ARCHITECTURE.md). The runner (``asymlora.experiments``)
drives any task through these calls and never asks what the modality is::

    task.encode(split, preprocessor, limits) -> Dataset     tokenise / build prompts / transform images
    task.collator(dataset) -> (items -> batch)              pad, stack
    task.loss(model, batch) -> scalar tensor                what training minimises
    task.evaluate(model, dataset, ctx) -> Evaluation        logits -> accuracy, generate -> ROUGE, MMLU, ...
    task.head, task.head_options()                          which model head the model loader builds

Splits are named ``train``, ``validation``, ``test`` plus the task's :meth:`~TaskProtocol.extra_test_names`
(out-of-domain sets, other environments). Every run evaluates the selected adapter on all of them with the
same :meth:`~TaskProtocol.evaluate`, ``train`` included (dropout off), so the train − test gap of the paper's
Table 13 can be read from any run folder.

Two metric names matter: :attr:`~TaskProtocol.selection_metric`, read on the validation split to keep an
epoch and choose a learning rate (a name in :data:`LOWER_IS_BETTER` is minimised, any other maximised), and
:attr:`~TaskProtocol.primary_metric`, the headline test figure of a report (often the same name).
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch

HEADS = ("sequence-classification", "causal-lm", "seq2seq-lm", "image-classification")
SPLITS = ("train", "validation", "test")
# Metrics where lower is better; every other metric is maximised.
LOWER_IS_BETTER = frozenset({"loss", "mse", "mae", "rmse", "error", "perplexity"})

# Metrics that are fractions (reports show them as percentages): these names, and any name ending in
# ``_accuracy`` (e.g. ``letter_stem_accuracy``, ``ood_accuracy``).
PERCENT_METRICS = frozenset({"accuracy", "f1", "macro_f1", "mcc", "pearson", "spearman",
                             "rouge1", "rouge2", "rougeL", "rougeLsum"})


def is_lower_better(metric: str) -> bool:
    return metric.lower() in LOWER_IS_BETTER


def is_percent(metric: str) -> bool:
    """Whether ``metric`` is a fraction that reports show as a percentage (see :data:`PERCENT_METRICS`)."""
    return metric in PERCENT_METRICS or metric.endswith("_accuracy")


@dataclass(frozen=True)
class Limits:
    """What a run asks of :meth:`TaskProtocol.encode`.

    ``max_length``: tokens per example (text tasks; ``None``: the task's :attr:`~TaskProtocol.default_max_length`).
    ``max_examples``: a fixed subset — the first N of a permutation seeded by ``subset_seed``, in the split's own
    order (:func:`subset`), so every method and seed sees the same examples. ``image_size``: the side in pixels
    image tasks resize to (``None``: the preprocessor's own).
    """

    max_length: int | None = None
    max_examples: int | None = None
    subset_seed: int = 0
    image_size: int | None = None


@dataclass
class EvalContext:
    """How to evaluate: the accelerator (device, sharding, gathering), the batch size, progress output."""

    accelerator: Any
    batch_size: int = 128
    progress: bool = True
    desc: str = "eval"


@dataclass
class Evaluation:
    """Metrics of one split, and optionally one record per example (the run writes them as JSON lines)."""

    metrics: dict[str, float]
    records: list[dict[str, Any]] | None = None


def subset(examples: Sequence[Any], limit: int | None, seed: int = 0) -> list[Any]:
    """The first ``limit`` of a seeded permutation, in original order (all when ``limit`` is None)."""
    if limit is None or limit >= len(examples):
        return list(examples)
    if limit < 1:
        raise ValueError(f"a subset needs at least one example, got limit={limit}")
    g = torch.Generator().manual_seed(seed)
    keep = sorted(torch.randperm(len(examples), generator=g)[:limit].tolist())
    return [examples[i] for i in keep]


def fingerprint_of(named_rows: dict[str, Sequence[Any]]) -> str:
    """sha256 (16 hex digits) over named sequences of JSON-able rows, in name order: changes if any row does."""
    h = hashlib.sha256()
    for name, rows in sorted(named_rows.items()):
        h.update(name.encode())
        for row in rows:
            h.update(json.dumps(row, ensure_ascii=False, sort_keys=True).encode())
    return h.hexdigest()[:16]


class TaskProtocol(ABC):
    """What the runner needs of a task (see the module doc). Subclasses set the class attributes or fields."""

    name: str
    head: str  # one of HEADS
    primary_metric: str
    default_max_length: int | None = None  # tokens, for tasks that tokenise

    # --- metrics ------------------------------------------------------------------------------
    @property
    def selection_metric(self) -> str:
        """The validation metric that keeps an epoch and picks a learning rate (default: the primary metric)."""
        return self.primary_metric

    @property
    def selection_higher_is_better(self) -> bool:
        return not is_lower_better(self.selection_metric)

    @property
    def report_metrics(self) -> tuple[str, ...]:
        """Test metrics a report lays out beside the primary one (e.g. ROUGE-1/2/L, MMLU categories)."""
        return ()

    # --- data ----------------------------------------------------------------------------------
    def extra_test_names(self) -> tuple[str, ...]:
        """Names of test sets beyond ``test`` (out-of-domain sets, other environments)."""
        return ()

    @abstractmethod
    def split_size(self, split: str) -> int:
        """Examples in ``split`` before any limit."""

    @abstractmethod
    def encode(self, split: str, preprocessor: Any, limits: Limits) -> torch.utils.data.Dataset:
        """``split`` as a dataset of model inputs (may expose ``lengths`` for length-bucketed batches)."""

    def collator(self, data: torch.utils.data.Dataset) -> Callable[[Sequence[Any]], dict[str, torch.Tensor]]:
        """The function that turns items of an encoded split into a batch (default: the dataset's ``collate``)."""
        collate = getattr(data, "collate", None)
        if collate is None:
            raise TypeError(f"task {self.name!r}: {type(data).__name__} has no collate(); the task must define collator()")
        return collate

    # --- training and evaluation -----------------------------------------------------------------
    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The training loss of a batch (default: the loss the model computes from ``labels``)."""
        out = model(**batch)
        if getattr(out, "loss", None) is None:
            raise ValueError(f"task {self.name!r}: the model returned no loss for a batch with "
                             f"{', '.join(batch)}; the task must pass labels or define loss()")
        return out.loss

    @abstractmethod
    def evaluate(self, model: torch.nn.Module, data: torch.utils.data.Dataset, ctx: EvalContext) -> Evaluation:
        """Metrics (and optional per-example records) of ``model`` on an encoded split."""

    # --- the head --------------------------------------------------------------------------------
    @property
    def heads(self) -> tuple[str, ...]:
        """The heads this task can work with, preferred first (e.g. a summariser: causal-lm, seq2seq-lm); the
        loader picks the first one the model takes and asks for :meth:`with_head`."""
        return (self.head,)

    def with_head(self, head: str) -> "TaskProtocol":
        """This task for a model with ``head`` (one of :attr:`heads`)."""
        if head != self.head:
            raise ValueError(f"task {self.name!r} works with the heads {', '.join(self.heads)}, not {head!r}")
        return self

    def head_options(self) -> dict[str, Any]:
        """What the model loader needs to build the head (e.g. ``num_labels``, ``label_names``)."""
        return {}

    # --- provenance ------------------------------------------------------------------------------
    @abstractmethod
    def summary(self) -> dict[str, Any]:
        """Name, head, sizes, source and a content fingerprint: what a run folder records."""


class SplitsMixin:
    """For tasks that hold their splits in two dicts, ``splits`` (train / validation / test) and
    ``extra_test_sets``: lookup by name, sizes and the check that the three splits are there."""

    name: str
    splits: dict[str, Any]
    extra_test_sets: dict[str, Any]

    def check_splits(self) -> None:
        missing = [s for s in SPLITS if s not in self.splits]
        if missing:
            raise ValueError(f"task {self.name!r} lacks split(s) {missing}")

    def part(self, split: str) -> Any:
        """The records of a split or extra test set."""
        if split in self.splits:
            return self.splits[split]
        if split in self.extra_test_sets:
            return self.extra_test_sets[split]
        raise KeyError(f"task {self.name!r} has no split {split!r}; it has "
                       f"{', '.join(list(self.splits) + list(self.extra_test_sets))}")

    def extra_test_names(self) -> tuple[str, ...]:
        return tuple(self.extra_test_sets)

    def split_size(self, split: str) -> int:
        return len(self.part(split))
