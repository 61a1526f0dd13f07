"""Learning-rate selection on the validation split.

Each candidate learning rate trains one model (``trials/lr-<lr>/``): the training split for the
weights, the validation split for choosing the epoch (best or last, see :mod:`asymlora.train.loop`).
:func:`pick_lr` then takes the learning rate whose selected epoch has the best validation primary
metric (ties: the smaller learning rate; NaN: never chosen unless every candidate is NaN). No test
data is read here; :func:`asymlora.experiments.run.run` evaluates the test split once, afterwards,
on the chosen trial's saved adapter.

The choice is made per run (task × method × rank × seed), so it never uses another seed's data
order or initialisation; the report lists the chosen values.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

from asymlora.atomic import atomic_write_json
from asymlora.train.rundir import RunDir, dir_bytes

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


def run_trials(spec, rd: RunDir, task: Any, model_loader: Callable, *, accelerator, progress: bool = True,
               callbacks: Sequence[Callable] = (), echo: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Train (or read back, when already finished) one trial per candidate learning rate."""
    from asymlora.experiments.run import lr_dirname, prepare_data
    from asymlora.summary import trainable_parameters
    from asymlora.train import Checkpointer, train

    method = spec.method_obj
    acc = accelerator
    lrs = spec.resolved_lrs()
    trials = []
    for i, lr in enumerate(lrs):
        td = RunDir(rd.path / "trials" / lr_dirname(lr))
        done = td.read_json(TRIAL)
        if done is not None:
            trials.append(done)
            continue
        model, tokenizer = model_loader(spec, task)
        data = prepare_data(spec, task, tokenizer)
        targets = spec.targets or _default_targets(model)
        base_params = sum(p.numel() for p in model.parameters())
        model = method.setup(model, rank=spec.rank, seed=spec.seed, targets=targets)
        if acc.is_main_process:
            td.write_config({"spec": spec.to_dict(), "lr": lr, "targets": list(targets),
                             "train": spec.train_config(lr).to_dict()})
        tag = f"{spec.display} lr={lr:g}" + (f" [{i + 1}/{len(lrs)}]" if len(lrs) > 1 else "")
        outcome = train(model, data.train, data.validation, spec.train_config(lr, progress=progress),
                        metrics_fn=task.metrics, primary_metric=task.primary_metric, collate_fn=data.collate,
                        run_dir=td, accelerator=acc, callbacks=callbacks, desc=tag)
        record = {
            "lr": lr, "val": outcome.val_metrics, "val_primary": outcome.val_primary,
            "selected_epoch": outcome.selected_epoch, "best_epoch": outcome.best_epoch, "steps": outcome.steps,
            "train_seconds": outcome.train_seconds, "resumed_from_step": outcome.resumed_from_step,
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
        best = pick_lr(trials, higher=_higher(task))
        echo(f"{spec.display}: validation {task.primary_metric} by lr: "
             + ", ".join(f"{t['lr']:g} → {t['val_primary']:.4f}" for t in trials) + f"; chosen {best['lr']:g}")
    return trials


def _default_targets(model) -> tuple[str, ...]:
    from asymlora.models import default_targets

    return tuple(default_targets(model))


def _higher(task: Any) -> bool:
    from asymlora.train import is_lower_better

    return not is_lower_better(task.primary_metric)
