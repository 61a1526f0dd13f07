"""One run: task × method × rank × seed, over one learning rate or a small sweep of them.

Layout of a run folder (``OUT/<task>/<model>/<method>[-r<rank>]/seed<seed>/``, see
:mod:`asymlora.experiments.spec`)::

    config.json          the resolved RunSpec (everything that decides the numbers) and the task's summary
    env.json             seed, versions, git commit, machine
    trials/lr-<lr>/      one training per learning rate: config.json, metrics.jsonl, checkpoint/ while
                         running, adapter/ (the selected epoch's trained parameters), trial.json when done
    metrics.jsonl        the chosen learning rate's per-epoch curve
    adapter/             the chosen learning rate's adapter (asymlora format for adapter methods)
    predictions*.jsonl   per-example records of the test (and extra test) sets, for tasks that make them
    result.json          written last: train, validation and test metrics, the train − test gap, chosen lr,
                         parameters, bytes, times

Protocol (see :mod:`asymlora.experiments.sweep`): every learning rate trains on the train split and is
scored on the validation split only; the best one is chosen on validation; then the selected adapter is
loaded back from disk onto a fresh base model and evaluated exactly once on the test split, the task's extra
test sets and the training examples (dropout off) — so the reported numbers are the saved file's, and
``gap`` = train − test of the primary metric (the paper's Table 13) is there for every task.

A run whose ``result.json`` exists is done (``run`` returns it without training); a killed run resumes
at its last checkpoint; a folder made with other settings is refused (:class:`RunConflict`); a folder another
live process is running is refused (:class:`~asymlora.train.rundir.RunBusy`).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

from asymlora.atomic import atomic_write_bytes
from asymlora.experiments.loader import Loader
from asymlora.experiments.spec import RunConflict, RunSpec, settings_conflict, task_label, trial_dirname
from asymlora.experiments.sweep import pick_lr, run_trials
from asymlora.tasks.protocol import EvalContext, Evaluation, TaskProtocol, is_lower_better
from asymlora.train.loop import make_accelerator
from asymlora.train.rundir import RunDir

__all__ = ["run", "RunConflict", "check_conflict", "evaluate_split"]


def check_conflict(rd: RunDir, spec: RunSpec) -> None:
    """:class:`RunConflict` if ``rd`` holds a run made with settings other than ``spec`` (resolved)."""
    saved = rd.read_config()
    if saved is None:
        return
    diff = settings_conflict(saved.get("spec", {}), spec)
    if diff:
        raise RunConflict(f"{rd.path} holds a run made with other settings ({diff}). "
                          "Use another output folder, or delete that run folder to redo it with the new settings.")


def run(spec: RunSpec, out: str | os.PathLike, *, loader: Loader | None = None, accelerator=None,
        progress: bool = True, callbacks: Sequence[Callable] = (),
        echo: Callable[[str], None] | None = print, fsdp: bool = False, report_to: Sequence[str] = ()) -> dict[str, Any]:
    """Do (or finish, or skip if done) one run under ``out``; returns its ``result.json`` content.

    ``loader`` holds the tasks, base models and encoded splits this process has loaded (a grid passes one for
    all its runs; default: a new one). Raises :class:`RunConflict` if the folder holds a run with other
    settings and :class:`~asymlora.train.rundir.RunBusy` if another live process is running it. ``fsdp`` trains
    with FSDP2 instead of DDP (≥ 2 processes; not a setting of the run: the numbers agree within round-off);
    ``report_to`` names Accelerate trackers (e.g. ``("tensorboard",)``) that log under ``RUN/logs/``."""
    say = echo or (lambda _msg: None)
    loader = loader or Loader()
    task = loader.task(spec)
    spec = spec.resolved(task)
    rd = RunDir(Path(out) / spec.relpath())
    check_conflict(rd, spec)
    if rd.is_done():
        return rd.read_result() or {}
    acc = accelerator or make_accelerator(spec.mixed_precision)
    if not acc.is_main_process:  # one process speaks for a multi-process run
        say = lambda _msg: None  # noqa: E731
    with rd.lock(enabled=acc.is_main_process):
        return _run_locked(spec, rd, acc, task=task, loader=loader, progress=progress, callbacks=callbacks, say=say,
                           fsdp=fsdp, report_to=report_to)


def _run_locked(spec: RunSpec, rd: RunDir, acc, *, task: TaskProtocol, loader: Loader, progress: bool, callbacks,
                say, fsdp: bool = False, report_to: Sequence[str] = ()) -> dict[str, Any]:
    if rd.is_done():  # finished by another process while this one waited
        return rd.read_result() or {}
    started = time.monotonic()
    method = spec.method_obj
    if acc.is_main_process:
        rd.path.mkdir(parents=True, exist_ok=True)
        rd.write_config({"spec": spec.to_dict(), "display": spec.display, "notation": method.notation,
                         "lrs": list(spec.resolved_lrs()), "task": task.summary()})
        if not rd.file("env.json").is_file():
            rd.write_env(spec.seed, command=" ".join(sys.argv))
    acc.wait_for_everyone()

    trials = run_trials(spec, rd, task, loader, accelerator=acc, progress=progress, callbacks=callbacks, echo=say,
                        fsdp=fsdp, report_to=report_to)
    chosen = pick_lr(trials, higher=task.selection_higher_is_better)
    trial_dir = rd.path / "trials" / trial_dirname(chosen["lr"])

    # --- the saved adapter on a fresh base: test (and extra) sets once, and the training examples ------------
    t0 = time.monotonic()
    loaded = loader.model(spec, task)
    model = method.load(loaded.model, trial_dir / "adapter")
    data = loader.data(spec, task, loaded.preprocessor)
    ctx = EvalContext(acc, batch_size=spec.eval_batch_size, progress=progress)
    test = evaluate_split(task, model, data.test, ctx, f"{spec.display} test")
    extra = {name: evaluate_split(task, model, ds, ctx, f"{spec.display} {name}") for name, ds in data.extra.items()}
    train_eval = evaluate_split(task, model, data.train_eval, ctx, f"{spec.display} train")
    test_seconds = time.monotonic() - t0

    p = task.primary_metric
    result = {
        "task": spec.task, "task_label": task_label(spec.task), "head": task.head, "model": spec.model,
        "pooling": spec.pooling, "method": spec.method, "display": spec.display, "notation": method.notation,
        "rank": spec.rank, "seed": spec.seed,
        "primary_metric": p, "higher_is_better": not is_lower_better(p), "selection_metric": task.selection_metric, "report_metrics": list(task.report_metrics),
        "lr": chosen["lr"], "lr_candidates": [t["lr"] for t in trials],
        "val_by_lr": {f"{t['lr']:g}": t["val_primary"] for t in trials},
        "val": chosen["val"], "test": test.metrics, "test_extra": {k: v.metrics for k, v in extra.items()},
        "train": train_eval.metrics, "gap": gaps(train_eval.metrics, test.metrics, {k: v.metrics for k, v in extra.items()}, p),
        "test_primary": test.metrics.get(p, math.nan),
        "selected_epoch": chosen["selected_epoch"], "epochs": spec.epochs, "steps": chosen["steps"],
        "trainable_params": chosen["trainable_params"], "total_params": chosen["total_params"],
        "adapter_bytes": chosen["adapter_bytes"], "adapter_files_bytes": chosen["adapter_files_bytes"],
        "adapter_file": chosen["adapter_file"],
        "train_seconds": chosen["train_seconds"], "train_throughput": chosen.get("train_throughput", {}),
        "sweep_seconds": round(sum(t["train_seconds"] for t in trials), 3),
        "test_seconds": round(test_seconds, 3), "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "sizes": {"train": len(data.train), "validation": len(data.validation), "test": len(data.test),
                  "train_eval": len(data.train_eval), **{k: len(v) for k, v in data.extra.items()}},
        "spec": spec.to_dict(),
    }
    if acc.is_main_process:
        for name, ev in (("test", test), *extra.items()):
            if ev.records is not None:
                write_records(rd.file("predictions.jsonl" if name == "test" else f"predictions-{name}.jsonl"), ev.records)
        _replace_dir(trial_dir / "adapter", rd.adapter)
        shutil.copyfile(trial_dir / "metrics.jsonl", rd.file("metrics.jsonl.tmp"))
        os.replace(rd.file("metrics.jsonl.tmp"), rd.file("metrics.jsonl"))
        rd.write_result(result)
    acc.wait_for_everyone()
    say(f"{spec.display} on {task_label(spec.task)} (seed {spec.seed}): lr {chosen['lr']:g}, "
        f"val {task.selection_metric} {chosen['val_primary']:.4f}, test {p} {result['test_primary']:.4f}"
        + (f", train − test {result['gap']['test']:+.4f}" if "test" in result["gap"] else "")
        + f" [{time.monotonic() - started:.0f} s]")
    return result


def evaluate_split(task: TaskProtocol, model, data, ctx: EvalContext, desc: str) -> Evaluation:
    """The one place a run evaluates its selected adapter on a split (a function of its own so tests can count)."""
    return task.evaluate(model, data, EvalContext(ctx.accelerator, ctx.batch_size, ctx.progress, desc))


def gaps(train: dict[str, float], test: dict[str, float], extra: dict[str, dict[str, float]], metric: str) -> dict[str, float]:
    """train − test of ``metric`` for the test split and each extra set (where both sides have it)."""
    if metric not in train:
        return {}
    out = {"test": train[metric] - test[metric]} if metric in test else {}
    out.update({name: train[metric] - m[metric] for name, m in extra.items() if metric in m})
    return out


def write_records(path: Path, records: Sequence[dict[str, Any]]) -> None:
    text = "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in records)
    atomic_write_bytes(path, text.encode("utf-8"))


def _replace_dir(src: Path, dst: Path) -> None:
    """Copy folder ``src`` to ``dst`` atomically (a temporary sibling renamed into place)."""
    tmp = dst.with_name(f".{dst.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    shutil.copytree(src, tmp)
    if dst.exists():
        shutil.rmtree(dst)
    os.replace(tmp, dst)
