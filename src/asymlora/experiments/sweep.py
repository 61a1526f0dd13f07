"""Learning-rate selection on the validation split.

Each candidate learning rate trains one model (``trials/lr-<lr>/``): the training split for the
weights, the validation split for choosing the epoch (best or last, see :mod:`asymlora.train.loop`), by the
task's selection metric (e.g. accuracy, or the instruction loss). :func:`pick_lr` then takes the learning
rate whose selected epoch has the best validation value (ties: the smaller learning rate; NaN: never chosen
unless every candidate is NaN). No test data is read here; :func:`asymlora.experiments.run.run` evaluates
the test split once, afterwards, on the chosen trial's saved adapter.

The choice is made per run (task × method × rank × seed), so it never uses another seed's data
order or initialisation; the report lists the chosen values.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

from asymlora.atomic import atomic_write_json
from asymlora.experiments.loader import Loader
from asymlora.experiments.spec import RunSpec, trial_dirname
from asymlora.models.registry import default_targets
from asymlora.summary import trainable_parameters
from asymlora.tasks.protocol import EvalContext, TaskProtocol
from asymlora.train.loop import evaluate_untrained, train
from asymlora.train.rundir import RunDir, dir_bytes
from asymlora.train.state import Checkpointer
from asymlora.train.tracking import TrackerCallback

TRIAL = "trial.json"


def pick_lr(trials: Sequence[dict[str, Any]], *, higher: bool = True) -> dict[str, Any]:
    """The trial with the best ``val_primary`` (see the module doc for ties and NaN)."""
    if not trials:
        raise ValueError("no trials to choose from")

    def key(t: dict[str, Any]) -> tuple:
        v = t["val_primary"]
        bad = v is None or math.isnan(v)
        return (bad, 0.0 if bad else (-v if higher else v), t["lr"])

    return min(trials, key=key)


def run_trials(spec: RunSpec, rd: RunDir, task: TaskProtocol, loader: Loader, *, accelerator, progress: bool = True,
               callbacks: Sequence[Callable] = (), echo: Callable[[str], None] = print,
               fsdp: bool = False, report_to: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Train (or read back, when already finished) one trial per candidate learning rate (``fsdp``: sharded with
    FSDP2 instead of DDP, see :mod:`asymlora.train.sharding`; ``report_to``: Accelerate trackers, logging under
    ``RUN/logs/lr-<lr>/``, see :mod:`asymlora.train.tracking`)."""
    method = spec.method_obj
    acc = accelerator
    lrs = spec.resolved_lrs()
    trials = []
    for i, lr in enumerate(lrs):
        td = RunDir(rd.path / "trials" / trial_dirname(lr))
        done = td.read_json(TRIAL)
        if done is not None:
            trials.append(done)
            continue
        loaded = loader.model(spec, task)
        data = loader.data(spec, task, loaded.preprocessor)
        if fsdp and getattr(data.validation, "generate", False):  # a SummaryDataset that generates (select_on ROUGE)
            raise ValueError("fsdp: this task validates by generating, and generation runs a different number of "
                             "forward passes in each process, which FSDP's collectives cannot follow; select on the "
                             "loss (the task's default) or train with DDP")
        targets = spec.targets or tuple(default_targets(loaded.model))
        base_params = sum(p.numel() for p in loaded.model.parameters())
        model = method.setup(loaded.model, rank=spec.rank, seed=spec.seed, targets=targets, head=loaded.head_modules,
                             dropout=spec.dropout, dropout_on=spec.dropout_on)
        if acc.is_main_process:
            td.write_config({"spec": spec.to_dict(), "lr": lr, "targets": list(targets),
                             "head_modules": list(loaded.head_modules),
                             "train": spec.train_config(lr).to_dict() if method.trains else None})
        tag = f"{spec.display} lr={lr:g}" + (f" [{i + 1}/{len(lrs)}]" if len(lrs) > 1 else "")
        ctx = EvalContext(acc, batch_size=spec.eval_batch_size, progress=progress, desc=f"{tag} validation")
        evaluate_fn = lambda m: task.evaluate(m, data.validation, ctx).metrics  # noqa: E731
        tracker = TrackerCallback(report_to, logging_dir=rd.path / "logs", run_name=trial_dirname(lr),
                                  config={**spec.to_dict(), "lr": lr}) if method.trains and report_to else None
        if method.trains:
            outcome = train(model, data.train, data.validation, spec.train_config(lr, progress=progress, fsdp=fsdp),
                            evaluate_fn=evaluate_fn, primary_metric=task.selection_metric,
                            higher_is_better=task.selection_higher_is_better, collate_fn=task.collator(data.train),
                            loss_fn=task.loss, run_dir=td, accelerator=acc,
                            callbacks=[*callbacks, *([tracker] if tracker else [])], desc=tag)
            if tracker:
                tracker.finish()
        else:
            outcome = evaluate_untrained(model, evaluate_fn, primary_metric=task.selection_metric, run_dir=td,
                                         accelerator=acc)
        record = {
            "lr": lr, "val": outcome.val_metrics, "val_primary": outcome.val_primary,
            "selected_epoch": outcome.selected_epoch, "best_epoch": outcome.best_epoch, "steps": outcome.steps,
            "train_seconds": outcome.train_seconds, "resumed_from_step": outcome.resumed_from_step,
            "train_throughput": outcome.throughput,
            "trainable_params": trainable_parameters(model), "total_params": base_params,
            "targets": list(targets),
        }
        if acc.is_main_process:
            weights = method.save(model, td.adapter, extra={"task": spec.task, "model": spec.model, "lr": lr,
                                                            "seed": spec.seed, "method": spec.method})
            record.update(adapter_file=weights.name, adapter_bytes=weights.stat().st_size,
                          adapter_files_bytes=dir_bytes(td.adapter))
            atomic_write_json(td.file(TRIAL), record)
            Checkpointer(td.checkpoint).clear()
        acc.wait_for_everyone()
        if not acc.is_main_process:
            record = td.read_json(TRIAL) or record
        trials.append(record)
        del model
    if len(trials) > 1:
        best = pick_lr(trials, higher=task.selection_higher_is_better)
        echo(f"{spec.display}: validation {task.selection_metric} by lr: "
             + ", ".join(f"{t['lr']:g} → {t['val_primary']:.4f}" for t in trials) + f"; chosen {best['lr']:g}")
    return trials
