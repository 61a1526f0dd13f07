"""What one process loads once and reuses across the runs it does: tasks, base models, encoded splits.

A :class:`Loader` is passed to :func:`~asymlora.experiments.run.run` (one per grid), so a grid reads each task
and each base model from disk once and tokenises each split once, while every run still starts from a
pristine copy (:meth:`Loader.model` hands out deep copies). Nothing is cached in module globals: two loaders
never share state, and a test builds its own with its tasks and models::

    Loader(tasks={"toy": toy_task()}, build=lambda spec, task: LoadedModel(...))

``build(spec, task)`` makes a fresh base model with the task's head; the default is
:func:`asymlora.models.build_model` (built-in name, local folder or hub name), seeded by the run seed.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from torch.utils.data import Dataset

from asymlora.data.registry import get_task
from asymlora.experiments.spec import RunSpec
from asymlora.models.heads import LoadedModel
from asymlora.models.registry import build_model, choose_head
from asymlora.tasks.protocol import Limits, TaskProtocol


@dataclass
class RunData:
    """The encoded splits of one run: what it trains on, validates on, tests on, and its train-split check."""

    train: Dataset
    validation: Dataset
    test: Dataset
    train_eval: Dataset  # the trained examples (or a fixed part of them), scored with dropout off
    extra: dict[str, Dataset] = field(default_factory=dict)


def default_build(spec: RunSpec, task: TaskProtocol) -> LoadedModel:
    return build_model(spec.model, task, seed=spec.seed, pooling=spec.pooling)


class Loader:
    """Tasks by (name, options), one pristine base model, and encoded splits, each loaded once."""

    def __init__(self, *, tasks: Mapping[str, TaskProtocol] | None = None,
                 build: Callable[[RunSpec, TaskProtocol], LoadedModel] = default_build) -> None:
        self._tasks: dict[tuple, TaskProtocol] = {(name, ()): task for name, task in (tasks or {}).items()}
        self._build = build
        self._pristine: tuple[tuple, LoadedModel] | None = None  # the last base model loaded
        self._data: dict[tuple, tuple[Any, RunData]] = {}  # value keeps the preprocessor alive: its id stays unique

    def task(self, spec: RunSpec) -> TaskProtocol:
        """The run's task, for its model: a task that works with several heads (a summariser: decoder-only or
        encoder-decoder) takes the first one the model has."""
        key = (spec.task, spec.task_options)
        if key not in self._tasks:
            self._tasks[key] = get_task(spec.task, **dict(spec.task_options))
        task = self._tasks[key]
        if len(task.heads) == 1:
            return task
        head = choose_head(task.heads, spec.model)
        if (key, head) not in self._tasks:
            self._tasks[(key, head)] = task.with_head(head)
        return self._tasks[(key, head)]

    def model(self, spec: RunSpec, task: TaskProtocol) -> LoadedModel:
        """A fresh base model with the task's head (its initialisation seeded by the run seed): a deep copy of
        the one kept in memory, so the trials, the test evaluation and the runs sharing a seed load it once."""
        key = (spec.model, spec.pooling, id(task), spec.seed)
        if self._pristine is None or self._pristine[0] != key:
            self._pristine = None  # drop the old model before loading the next
            self._pristine = (key, self._build(spec, task))
        base = self._pristine[1]
        return LoadedModel(copy.deepcopy(base.model), base.preprocessor, base.head_modules)

    def data(self, spec: RunSpec, task: TaskProtocol, preprocessor: Any) -> RunData:
        """The run's encoded splits (each split encoded once per task, preprocessor and limits)."""
        limits = dict(max_length=spec.max_length, image_size=spec.image_size)
        key = (id(task), id(preprocessor), spec.max_length, spec.image_size, spec.max_train_examples,
               spec.max_val_examples, spec.max_test_examples, spec.max_train_eval_examples, spec.extra_tests)
        if key not in self._data:
            def encode(split: str, limit: int | None) -> Dataset:
                return task.encode(split, preprocessor, Limits(max_examples=limit, **limits))

            train_eval_limit = _smaller(spec.max_train_examples, spec.max_train_eval_examples)
            train = encode("train", spec.max_train_examples)
            data = RunData(train=train, validation=encode("validation", spec.max_val_examples),
                           test=encode("test", spec.max_test_examples),
                           train_eval=train if train_eval_limit == spec.max_train_examples
                           else encode("train", train_eval_limit))
            if spec.extra_tests:
                data.extra = {name: encode(name, spec.max_test_examples) for name in task.extra_test_names()}
            self._data[key] = (preprocessor, data)
        return self._data[key][1]


def _smaller(a: int | None, b: int | None) -> int | None:
    """The smaller of two limits, ``None`` meaning no limit. The subset of ``min(a, b)`` examples is a subset of
    the one of ``a`` (both take the head of the same seeded permutation: :func:`~asymlora.tasks.protocol.subset`)."""
    if a is None:
        return b
    return a if b is None else min(a, b)
