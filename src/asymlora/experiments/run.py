"""One run: task × method × rank × seed, over one learning rate or a small sweep of them.

Layout of a run folder (``OUT/<task>/<model>/<method>[-r<rank>]/seed<seed>/``)::

    config.json          the RunSpec (everything that decides the numbers)
    env.json             seed, versions, git commit, machine
    trials/lr-<lr>/      one training per learning rate: config.json, metrics.jsonl, checkpoint/ while
                         running, adapter/ (the selected epoch's trained parameters), trial.json when done
    metrics.jsonl        the chosen learning rate's per-epoch curve
    adapter/             the chosen learning rate's adapter (asymlora format for adapter methods)
    result.json          written last: validation and test metrics, chosen lr, parameters, bytes, times

Protocol (see :mod:`asymlora.experiments.sweep`): every learning rate trains on the train split and
is scored on the validation split only; the best one is chosen on validation; then the test split
(and the task's out-of-domain test sets) is evaluated exactly once, on the chosen adapter loaded
back from disk onto a fresh base model — so the reported number is the saved file's.

A run whose ``result.json`` exists is done (``run`` returns it without training); a killed run resumes
at its last checkpoint; a folder made with other settings is refused (:class:`RunConflict`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from asymlora.experiments.methods import Method, get_method
from asymlora.train.rundir import RunDir

# Settings that do not change a run's numbers, ignored when comparing a folder's config.
VOLATILE = frozenset({"checkpoint_every", "eval_batch_size"})
# Settings added to RunSpec after run folders were first written, with the value an old folder had.
ADDED_SETTINGS = {"pooling": "model"}


def with_head(model: str, pooling: str | None) -> str:
    """A model's name in folders and reports: ``+mean-pool`` appended when it ran with the mean-pooling head."""
    return model + ("+mean-pool" if pooling == "mean" else "")


def with_added_settings(spec: Mapping[str, Any]) -> dict[str, Any]:
    """A saved spec with the settings added since it was written filled in (old folders stay comparable)."""
    return {**ADDED_SETTINGS, **spec}


class RunConflict(RuntimeError):
    """The run folder exists with different settings."""


class RunBusy(RuntimeError):
    """Another live process is working on this run folder (its ``.lock`` names it)."""


LOCK = ".lock"


def lock_owner(path: Path) -> dict[str, Any] | None:
    """The live process holding ``path/.lock`` (pid, host), or None if it is free or stale."""
    import json
    import socket

    try:
        info = json.loads((path / LOCK).read_text())
    except (OSError, ValueError):
        return None
    if info.get("host") != socket.gethostname():
        return info  # another machine: cannot check it, so assume it is alive
    try:
        os.kill(int(info["pid"]), 0)
    except (ProcessLookupError, ValueError, KeyError, TypeError):
        return None
    except PermissionError:
        return info
    return info


@contextlib.contextmanager
def run_lock(path: Path, enabled: bool = True):
    """Hold ``path/.lock`` while a run trains, so that two grids never train the same run at once."""
    import json
    import socket

    if not enabled:
        yield
        return
    path.mkdir(parents=True, exist_ok=True)
    me = {"pid": os.getpid(), "host": socket.gethostname()}
    for _ in range(2):
        try:
            fd = os.open(path / LOCK, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            owner = lock_owner(path)
            if owner is not None:
                raise RunBusy(f"{path} is being run by process {owner.get('pid')} on {owner.get('host')}; "
                              f"wait for it, or delete {path / LOCK} if that process is gone") from None
            (path / LOCK).unlink(missing_ok=True)  # stale: its process died
            continue
        with os.fdopen(fd, "w") as f:
            json.dump(me, f)
        break
    else:  # pragma: no cover - lost a race twice
        raise RunBusy(f"{path} is locked by another process")
    try:
        yield
    finally:
        (path / LOCK).unlink(missing_ok=True)


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
    max_length: int = 64
    max_train_examples: int | None = None
    max_val_examples: int | None = None  # a fixed subset of the validation split (quick runs only)
    max_test_examples: int | None = None  # a fixed subset of the test split(s) (quick runs only)
    warmup_ratio: float = 0.06
    weight_decay: float = 0.0
    max_grad_norm: float | None = 1.0
    select: str = "best"
    targets: tuple[str, ...] | None = None  # None: the model's query / value projections
    extra_tests: bool = True  # also evaluate the task's out-of-domain test sets (with the test split)
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
        object.__setattr__(self, "lrs", tuple(float(x) for x in self.lrs))
        if any(not (x > 0 and math.isfinite(x)) for x in self.lrs):
            raise ValueError(f"learning rates must be positive numbers, got {self.lrs}")
        if self.targets is not None:
            object.__setattr__(self, "targets", tuple(self.targets))
        from asymlora.models.pooling import POOLINGS

        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}, got {self.pooling!r}")
        object.__setattr__(self, "task_options", tuple(sorted((str(k), str(v)) for k, v in dict(self.task_options).items())))
        for name in ("max_train_examples", "max_val_examples", "max_test_examples"):
            v = getattr(self, name)
            if v is not None and int(v) < 1:
                raise ValueError(f"{name} must be ≥ 1 (or None for all), got {v}")
        self.train_config(self.resolved_lrs()[0])  # validates the optimisation settings

    # --- derived ----------------------------------------------------------------------------------
    @property
    def method_obj(self) -> Method:
        return get_method(self.method)

    def resolved_lrs(self) -> tuple[float, ...]:
        m = self.method_obj
        if self.lrs:
            return tuple(sorted(set(self.lrs)))
        return tuple(sorted(m.lr_sweep)) if self.sweep else (m.lr,)

    def train_config(self, lr: float, *, progress: bool = True):
        from asymlora.train import TrainConfig

        return TrainConfig(lr=lr, epochs=self.epochs, batch_size=self.batch_size,
                           eval_batch_size=self.eval_batch_size, warmup_ratio=self.warmup_ratio,
                           weight_decay=self.weight_decay, max_grad_norm=self.max_grad_norm, seed=self.seed,
                           select=self.select, checkpoint_every=self.checkpoint_every,
                           mixed_precision=self.mixed_precision, progress=progress)

    @property
    def display(self) -> str:
        return self.method_obj.display(self.rank)

    def run_name(self) -> str:
        return f"{self.method}-r{self.rank}" if self.rank else self.method

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


def slug(text: str) -> str:
    s = re.sub(r"[^A-Za-z0-9._+-]+", "-", text).strip("-.")
    return s or "x"


def task_label(task: str) -> str:
    p = Path(task)
    return p.stem if p.suffix.lower() in (".csv", ".tsv", ".jsonl") else task.replace("/", "-")


def model_label(model: str) -> str:
    p = Path(model)
    return p.name if (p.is_absolute() or model.startswith(".")) else model.replace("/", "--")


# --- loading (cached per process: a grid loads each task and tokenises each split once) -------------
_TASKS: dict[tuple, Any] = {}
_DATA: dict[tuple, Any] = {}


def load_task(spec: RunSpec):
    key = (spec.task, spec.task_options)
    if key not in _TASKS:
        from asymlora.data import get_task

        _TASKS[key] = get_task(spec.task, **dict(spec.task_options))
    return _TASKS[key]


_PRISTINE: dict[tuple, tuple[Any, Any, Any]] = {}


def default_model_loader(spec: RunSpec, task: Any):
    """``(model, tokenizer)`` with a fresh head for ``task``, its initialisation seeded by the run seed.

    The last loaded base is kept in memory and handed out as a deep copy, so that the trials and the
    test evaluation of a run (and the runs of a grid that share a seed) read the weights from disk once.
    """
    import copy

    from asymlora.models import load_model

    key = (spec.model, spec.pooling, id(task), getattr(task, "num_labels", None), spec.seed)
    hit = _PRISTINE.get(key)
    if hit is None or hit[2] is not task:
        model, tokenizer = load_model(spec.model, task, seed=spec.seed, pooling=spec.pooling)
        _PRISTINE.clear()
        hit = _PRISTINE[key] = (model, tokenizer, task)
    return copy.deepcopy(hit[0]), hit[1]


@dataclass
class Data:
    train: Any
    validation: Any
    test: Any
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def collate(self) -> Callable:
        return self.train.collate


def prepare_data(spec: RunSpec, task: Any, tokenizer: Any) -> Data:
    """Tokenised splits of ``task`` for this run (cached per task object, tokenizer and settings)."""
    from asymlora.experiments.textdata import encode_split

    key = (id(task), spec.model, getattr(tokenizer, "name_or_path", None), type(tokenizer).__name__,
           spec.max_length, spec.max_train_examples, spec.max_val_examples, spec.max_test_examples, spec.extra_tests)
    hit = _DATA.get(key)
    if hit is not None and hit[0] is task:
        return hit[1]
    enc = dict(tokenizer=tokenizer, max_length=spec.max_length)
    data = Data(train=encode_split(task, "train", limit=spec.max_train_examples, **enc),
                validation=encode_split(task, "validation", limit=spec.max_val_examples, **enc),
                test=encode_split(task, "test", limit=spec.max_test_examples, **enc))
    if spec.extra_tests:
        for name in getattr(task, "extra_test_sets", {}) or {}:
            data.extra[name] = encode_split(task, name, limit=spec.max_test_examples, **enc)
    _DATA[key] = (task, data)
    return data


def clear_caches() -> None:
    _TASKS.clear()
    _DATA.clear()
    _PRISTINE.clear()


# --- the run ---------------------------------------------------------------------------------------
def comparable(config: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k not in VOLATILE}


def check_conflict(rd: RunDir, spec: RunSpec) -> None:
    saved = rd.read_config()
    if saved is None:
        return
    old, new = comparable(with_added_settings(saved.get("spec", {}))), comparable(spec.to_dict())
    if old != new:
        diff = [f"{k}={old.get(k)!r} → {new.get(k)!r}" for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
        raise RunConflict(f"{rd.path} holds a run made with other settings ({'; '.join(diff[:6])}). "
                          "Use another output folder, or delete that run folder to redo it with the new settings.")


def run(spec: RunSpec, out: str | os.PathLike, *, accelerator=None, progress: bool = True, task: Any = None,
        model_loader: Callable[[RunSpec, Any], tuple[Any, Any]] | None = None,
        callbacks: Sequence[Callable] = (), echo: Callable[[str], None] | None = print) -> dict[str, Any]:
    """Do (or finish, or skip if done) one run under ``out``; returns its ``result.json`` content.

    Raises :class:`RunConflict` if the folder holds a run with other settings and :class:`RunBusy`
    if another live process is running it."""
    from asymlora.train import make_accelerator

    say = echo or (lambda _msg: None)
    rd = RunDir(Path(out) / spec.relpath())
    check_conflict(rd, spec)
    if rd.is_done():
        return rd.read_result() or {}
    acc = accelerator or make_accelerator(spec.mixed_precision)
    with run_lock(rd.path, enabled=acc.is_main_process):
        return _run_locked(spec, rd, acc, progress=progress, task=task, model_loader=model_loader,
                           callbacks=callbacks, say=say)


def _run_locked(spec: RunSpec, rd: RunDir, acc, *, progress: bool, task: Any, model_loader, callbacks,
                say) -> dict[str, Any]:
    from asymlora.experiments.sweep import pick_lr, run_trials

    if rd.is_done():  # finished by another process while this one waited
        return rd.read_result() or {}
    started = time.monotonic()
    method = spec.method_obj
    loader = model_loader or default_model_loader
    task = task if task is not None else load_task(spec)
    if acc.is_main_process:
        rd.path.mkdir(parents=True, exist_ok=True)
        rd.write_config({"spec": spec.to_dict(), "display": spec.display, "notation": method.notation,
                         "lrs": list(spec.resolved_lrs()), "task": task.summary() if hasattr(task, "summary") else None})
        if not rd.file("env.json").is_file():
            rd.write_env(spec.seed, command=_command_line())
    acc.wait_for_everyone()

    trials = run_trials(spec, rd, task, loader, accelerator=acc, progress=progress, callbacks=callbacks, echo=say)
    higher = _higher(task)
    chosen = pick_lr(trials, higher=higher)
    trial_dir = rd.path / "trials" / lr_dirname(chosen["lr"])

    # --- the test split: once, on the chosen adapter loaded back from disk -----------------------
    t0 = time.monotonic()
    base, tokenizer = loader(spec, task)
    model = method.load(base, trial_dir / "adapter")
    data = prepare_data(spec, task, tokenizer)
    kw = dict(metrics_fn=task.metrics, collate_fn=data.collate, batch_size=spec.eval_batch_size,
              accelerator=acc, progress=progress)
    test = evaluate_test(model, data.test, desc=f"{spec.display} test", **kw)
    extra = {name: evaluate_test(model, ds, desc=f"{spec.display} {name}", **kw) for name, ds in data.extra.items()}
    test_seconds = time.monotonic() - t0

    result = {
        "task": spec.task, "task_label": task_label(spec.task), "model": spec.model, "pooling": spec.pooling, "method": spec.method,
        "display": spec.display, "notation": method.notation, "rank": spec.rank, "seed": spec.seed,
        "primary_metric": task.primary_metric, "higher_is_better": higher,
        "lr": chosen["lr"], "lr_candidates": [t["lr"] for t in trials],
        "val_by_lr": {f"{t['lr']:g}": t["val_primary"] for t in trials},
        "val": chosen["val"], "test": test, "test_extra": extra,
        "test_primary": test.get(task.primary_metric, math.nan),
        "selected_epoch": chosen["selected_epoch"], "epochs": spec.epochs, "steps": chosen["steps"],
        "trainable_params": chosen["trainable_params"], "total_params": chosen["total_params"],
        "adapter_bytes": chosen["adapter_bytes"], "adapter_files_bytes": chosen["adapter_files_bytes"],
        "adapter_file": chosen["adapter_file"],
        "train_seconds": chosen["train_seconds"], "sweep_seconds": round(sum(t["train_seconds"] for t in trials), 3),
        "test_seconds": round(test_seconds, 3), "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "sizes": {"train": len(data.train), "validation": len(data.validation), "test": len(data.test),
                  **{k: len(v) for k, v in data.extra.items()}},
        "spec": spec.to_dict(),
    }
    if acc.is_main_process:
        _replace_dir(trial_dir / "adapter", rd.adapter)
        shutil.copyfile(trial_dir / "metrics.jsonl", rd.file("metrics.jsonl.tmp"))
        os.replace(rd.file("metrics.jsonl.tmp"), rd.file("metrics.jsonl"))
        rd.write_result(result)
    acc.wait_for_everyone()
    say(f"{spec.display} on {task_label(spec.task)} (seed {spec.seed}): lr {chosen['lr']:g}, "
        f"val {task.primary_metric} {chosen['val_primary']:.4f}, test {result['test_primary']:.4f} "
        f"[{time.monotonic() - started:.0f} s]")
    return result


def evaluate_test(model, dataset, **kw) -> dict[str, float]:
    """The one place a test split is evaluated (a function of its own so that tests can count calls)."""
    from asymlora.train import loop

    return loop.evaluate(model, dataset, **kw)


def lr_dirname(lr: float) -> str:
    return f"lr-{lr:g}"


def _higher(task: Any) -> bool:
    from asymlora.train import is_lower_better

    return not is_lower_better(task.primary_metric)


def _replace_dir(src: Path, dst: Path) -> None:
    """Copy folder ``src`` to ``dst`` atomically (a temporary sibling renamed into place)."""
    tmp = dst.with_name(f".{dst.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    shutil.copytree(src, tmp)
    if dst.exists():
        shutil.rmtree(dst)
    os.replace(tmp, dst)


def _command_line() -> str:
    import sys

    return " ".join(sys.argv)
