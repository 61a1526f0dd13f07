"""Text classification and regression: the text task of the task protocol, and the records it splits.

``Task`` holds fixed ``train`` / ``validation`` / ``test`` splits of ``Example`` records (and optional extra
test sets), says what head a model needs (a sequence classifier with ``num_labels`` outputs, ``problem_type``
regression for scores) and scores predictions (``metrics``: accuracy, MCC, F1 / Pearson, Spearman, MSE). As a
:class:`~asymlora.tasks.protocol.TaskProtocol` it tokenises a split (:meth:`Task.encode`, ragged ids padded per
batch), trains on the model's own loss and evaluates logits → metrics (:meth:`Task.evaluate`).

Splits are made by :func:`split_examples`: each example gets a key ``sha256(seed, text, pair)``,
which depends on no library version and not on the file's order, and each class is cut at the same
quantiles of that key (stratified), so the same data and seed always give the same splits.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

from asymlora.data.encoding import TextDataset, text_dataset
from asymlora.data.metrics import classification_metrics, regression_metrics
from asymlora.evaluation.predict import gathered_predictions
from asymlora.tasks.protocol import SPLITS, EvalContext, Evaluation, Limits, SplitsMixin, TaskProtocol, fingerprint_of, subset

KINDS = ("classification", "regression")
DEFAULT_MAX_LENGTH = 64


class DataError(ValueError):
    """Bad or missing data; names the file and line where there is one."""

    def __init__(self, message: str, path: str | None = None, line: int | None = None):
        self.path, self.line, self.problem = path, line, message
        where = f"{path}, line {line}: " if path and line else (f"{path}: " if path else "")
        super().__init__(where + message)


def task_option(value: Any, name: str, kind: type = int, *, allow_none: bool = False) -> Any:
    """A task loader's option as ``kind`` (``int`` or ``float``): from the command line (``--task-option``) it
    arrives as a string. With ``allow_none``, ``None``, ``""``, ``"all"`` and ``"none"`` mean None (no limit).
    Anything else that does not convert is a :class:`DataError` naming the option."""
    if allow_none and (value is None or str(value).strip().lower() in ("", "all", "none")):
        return None
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise DataError(f"task option {name} must be {'an integer' if kind is int else 'a number'}"
                        + (" or 'all'" if allow_none else "") + f", got {value!r}") from None


@dataclass(frozen=True)
class Example:
    """One text example: a text (and optional second text) with a class id or a score."""

    text: str
    label: int | float
    text_pair: str | None = None
    uid: str = ""  # where it came from (source id or file line), for error reports and audits


@dataclass
class Task(SplitsMixin, TaskProtocol):
    name: str
    kind: str  # "classification" or "regression"
    splits: dict[str, list[Any]]
    label_names: tuple[str, ...] = ()  # class names by id (empty for regression)
    primary_metric: str = "accuracy"
    text_fields: tuple[str, ...] = ("text",)  # ("text",) or ("text", "text_pair")
    extra_test_sets: dict[str, list[Any]] = field(default_factory=dict)  # e.g. out-of-domain tests
    positive_label: int = 1  # the class whose F1 is reported for binary tasks
    modality: str = "text"
    source: str = ""  # provenance: package==version:path, file path, or dataset name
    description: str = ""
    metric_fn: Callable[[Any, Any], dict[str, float]] | None = None  # overrides the kind's default

    head = "sequence-classification"
    default_max_length = DEFAULT_MAX_LENGTH

    def __post_init__(self) -> None:
        if self.kind not in KINDS and self.metric_fn is None:
            raise ValueError(f"task kind {self.kind!r} needs a metric_fn (built-in kinds: {KINDS})")
        if self.kind == "classification" and len(self.label_names) < 2:
            raise ValueError(f"classification task {self.name!r} needs at least two label names")
        self.check_splits()

    # --- the head -------------------------------------------------------------------------------
    @property
    def num_labels(self) -> int:
        """Outputs of the head: the number of classes, or 1 for regression."""
        return len(self.label_names) if self.kind == "classification" else 1

    @property
    def problem_type(self) -> str:
        """The Hugging Face ``problem_type`` of a sequence-classification head for this task."""
        return "regression" if self.kind == "regression" else "single_label_classification"

    def head_options(self) -> dict[str, Any]:
        return {"kind": self.kind, "num_labels": self.num_labels, "label_names": tuple(self.label_names),
                "problem_type": self.problem_type}

    # --- the metric -----------------------------------------------------------------------------
    def metrics(self, predictions: Any, labels: Any) -> dict[str, float]:
        """All metrics of this task; ``self.primary_metric`` names the one to select models by."""
        if self.metric_fn is not None:
            return self.metric_fn(predictions, labels)
        if self.kind == "regression":
            return regression_metrics(predictions, labels)
        return classification_metrics(predictions, labels, num_labels=self.num_labels,
                                      positive_label=self.positive_label)

    # --- records --------------------------------------------------------------------------------
    def labels(self, split: str) -> list[Any]:
        return [ex.label for ex in self.examples(split)]

    def examples(self, split: str) -> list[Any]:
        """The records of a split or extra test set."""
        return self.part(split)

    # --- the task protocol ------------------------------------------------------------------------
    def encode(self, split: str, preprocessor: Any, limits: Limits) -> TextDataset:
        """Token ids of a split (a fixed subset under ``limits.max_examples``), truncated to ``limits.max_length``."""
        examples = subset(self.examples(split), limits.max_examples, limits.subset_seed)
        if not examples:
            raise ValueError(f"task {self.name!r}: split {split!r} is empty")
        return text_dataset(examples, preprocessor, kind=self.kind, max_length=limits.max_length or self.default_max_length)

    def evaluate(self, model: Any, data: TextDataset, ctx: EvalContext) -> Evaluation:
        predictions, labels = gathered_predictions(model, data, ctx, collate=data.collate)
        return Evaluation(self.metrics(predictions, labels))

    def summary(self) -> dict[str, Any]:
        """Sizes, label counts and a content fingerprint: what a result file should record."""
        def counts(exs: list[Any]) -> dict[str, int] | None:
            if self.kind != "classification":
                return None
            c = Counter(ex.label for ex in exs)
            return {self.label_names[i]: c.get(i, 0) for i in range(len(self.label_names))}

        sets = {**self.splits, **self.extra_test_sets}
        return {
            "name": self.name, "head": self.head, "kind": self.kind, "num_labels": self.num_labels,
            "label_names": list(self.label_names), "primary_metric": self.primary_metric,
            "source": self.source, "sizes": {k: len(v) for k, v in sets.items()},
            "label_counts": {k: counts(v) for k, v in sets.items()} if self.kind == "classification" else None,
            "fingerprint": self.fingerprint(),
        }

    def fingerprint(self) -> str:
        """sha256 over every split's examples (text, pair, label, order): changes if any split does."""
        return fingerprint_of({name: [[ex.text, ex.text_pair, ex.label] for ex in exs]
                               for name, exs in {**self.splits, **self.extra_test_sets}.items()})


def _key(seed: int, ex: Any) -> bytes:
    text = f"{seed}\x00{getattr(ex, 'text', '')}\x00{getattr(ex, 'text_pair', None) or ''}"
    return hashlib.sha256(text.encode("utf-8")).digest()


def split_examples(examples: Sequence[Any], fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0,
                   stratify: bool = True, names: Sequence[str] = SPLITS) -> dict[str, list[Any]]:
    """Reproducible (stratified) split into ``names`` with the given ``fractions``.

    The split sizes are ``round(N * f)`` for every split but the first, which gets the rest. Each
    split keeps the examples in their original order. ``stratify`` uses ``ex.label`` as the class.
    """
    if len(fractions) != len(names) or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(f"fractions {tuple(fractions)} must be {len(names)} non-negative numbers summing to 1")
    n = len(examples)
    keys = [_key(seed, ex) for ex in examples]
    if stratify:
        groups: dict[Any, list[int]] = {}
        for i, ex in enumerate(examples):
            groups.setdefault(ex.label, []).append(i)
        position: list[tuple[float, bytes, int]] = []
        for idx in groups.values():
            idx.sort(key=lambda i: (keys[i], i))
            position += [((rank + 0.5) / len(idx), keys[i], i) for rank, i in enumerate(idx)]
        order = [i for _, _, i in sorted(position)]
    else:
        order = sorted(range(n), key=lambda i: (keys[i], i))
    sizes = [round(n * f) for f in fractions[1:]]
    if sum(sizes) > n:
        raise ValueError(f"cannot split {n} examples with fractions {tuple(fractions)}")
    out: dict[str, list[Any]] = {}
    start = 0
    for name, size in zip(names[1:][::-1], sizes[::-1]):  # last splits first: test, validation
        out[name] = [examples[i] for i in sorted(order[start:start + size])]
        start += size
    out[names[0]] = [examples[i] for i in sorted(order[start:])]
    return {name: out[name] for name in names}


def dedupe(examples: Iterable[Any], drop_conflicts: bool = True) -> tuple[list[Any], int, int]:
    """Drop repeated texts (keeping the first); with ``drop_conflicts`` drop every copy of a text
    whose labels disagree (for classification; a regression score keeps its first value).

    Returns ``(kept, n_repeats_dropped, n_conflicting_texts_dropped)``.
    """
    seen: dict[tuple[str, str | None], Any] = {}
    labels: dict[tuple[str, str | None], set[Any]] = {}
    repeats = 0
    for ex in examples:
        k = (ex.text, ex.text_pair)
        if k in seen:
            repeats += 1
            labels[k].add(ex.label)
        else:
            seen[k] = ex
            labels[k] = {ex.label}
    conflicts = {k for k, v in labels.items() if len(v) > 1} if drop_conflicts else set()
    return [ex for k, ex in seen.items() if k not in conflicts], repeats, len(conflicts)


def require_splits(splits: dict[str, list[Any]], source: str, names: Sequence[str] = SPLITS) -> None:
    """Refuse splits of which any of ``names`` is empty, with the sizes of all, so that a file too small for its
    splits fails when it is read rather than inside a run."""
    empty = [n for n in names if not splits.get(n)]
    if empty:
        sizes = ", ".join(f"{n} {len(splits.get(n) or [])}" for n in names)
        raise DataError(f"the {' and '.join(empty)} split{'s are' if len(empty) > 1 else ' is'} empty ({sizes} "
                        f"examples): give more examples, or a split column with rows of every split", source)
