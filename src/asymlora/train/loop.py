"""One training loop for every method, on Hugging Face Accelerate.

Single process on CPU by default; unchanged under ``torchrun`` / ``accelerate launch`` (DDP, several CPU processes,
GPUs or nodes: docs/DISTRIBUTED.md) and on a GPU (``mixed_precision="bf16"`` etc.); with ``fsdp=True`` the model is
sharded with FSDP2 instead of wrapped in DDP (:mod:`asymlora.train.sharding`; checkpoints hold whole tensors, and the
model is left whole at the end). What it does, in order:

* AdamW over the parameters with ``requires_grad`` only (adapters' trainable factors, the head, or the
  whole model for full fine-tuning); a frozen factor is a buffer and never reaches the optimizer;
* a linear schedule: warm-up over ``warmup_ratio`` of all steps, then linear decay to zero
  (``transformers.get_linear_schedule_with_warmup``);
* gradient clipping to ``max_grad_norm`` (global L2 norm);
* one evaluation on the validation set after each epoch;
* selection: ``select="best"`` keeps the epoch with the best validation primary metric (the first
  one on ties; NaN counts as worst), ``"last"`` keeps the last epoch. The model is left holding the
  selected parameters. The test set is never seen here.
* a checkpoint every ``checkpoint_every`` optimizer steps and after every epoch (see
  :mod:`asymlora.train.state`). Given the same ``run_dir``, a killed run resumes at the step of its
  latest checkpoint: parameters, optimizer moments, schedule, random states (dropout), the data
  order of the epoch (a function of ``(seed, epoch)`` only) and the metrics so far are restored, so
  on the same machine it ends bit-for-bit where an uninterrupted run would.

Nothing here is specific to a modality: ``loss_fn(model, batch)`` defaults to ``model(**batch).loss``;
validation is ``evaluate_fn(model) -> metrics`` (a task's :meth:`~asymlora.tasks.protocol.TaskProtocol.evaluate`
on its validation split, as the experiment runner passes it), or, for a plain classifier, the gathered
``predict_fn(model, batch)`` (default ``(model(**batch).logits, batch["labels"])``) scored by ``metrics_fn``.
``callbacks`` see every step and epoch (``cb(event, info)``); a callback that raises stops training, and the
checkpoint already written is where a re-run resumes.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from asymlora.evaluation.predict import gathered_predictions, logits_and_labels
from asymlora.tasks.protocol import LOWER_IS_BETTER, EvalContext, is_lower_better
from asymlora.train.launch import make_accelerator
from asymlora.train.rundir import RunDir
from asymlora.train.sharding import (
    full_optimizer_state,
    full_tensor,
    load_full,
    load_optimizer_state,
    shard_model,
    unshard_in_place,
)
from asymlora.train.state import Checkpointer, ResumeError, set_rng_state

__all__ = ["TrainConfig", "TrainOutcome", "EpochSampler", "train", "evaluate", "default_loss", "default_predict",
           "is_lower_better", "LOWER_IS_BETTER", "make_accelerator", "trainable_state", "load_trainable_state",
           "iter_history"]

SELECT = ("best", "last")
MIXED_PRECISION = ("no", "fp16", "bf16")
default_predict = logits_and_labels


@dataclass
class TrainConfig:
    """Optimisation settings. Defaults follow the paper's and LoRA's GLUE recipe where they fit
    (AdamW, linear schedule, 6% warm-up, no weight decay, clipping at 1.0)."""

    lr: float = 5e-4
    epochs: int = 3
    batch_size: int = 32
    eval_batch_size: int = 128
    warmup_ratio: float = 0.06
    weight_decay: float = 0.0
    max_grad_norm: float | None = 1.0
    adam_betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-8
    seed: int = 0
    select: str = "best"
    checkpoint_every: int = 100
    mixed_precision: str = "no"
    group_by_length: bool = True  # batch examples of similar length (when the dataset has ``lengths``)
    progress: bool = True
    fsdp: bool = False  # shard the model with FSDP2 instead of DDP (≥ 2 processes; see asymlora.train.sharding)

    def __post_init__(self) -> None:
        self.adam_betas = tuple(self.adam_betas)  # type: ignore[assignment]
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a positive number, got {self.lr}")
        for name in ("epochs", "batch_size", "eval_batch_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an integer ≥ 1, got {v!r}")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ValueError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be ≥ 0, got {self.weight_decay}")
        if self.max_grad_norm is not None and not self.max_grad_norm > 0:
            raise ValueError(f"max_grad_norm must be > 0 (or None to disable clipping), got {self.max_grad_norm}")
        if self.select not in SELECT:
            raise ValueError(f"select must be one of {SELECT}, got {self.select!r}")
        if self.checkpoint_every < 0:
            raise ValueError(f"checkpoint_every must be ≥ 0 (0: only at epoch ends), got {self.checkpoint_every}")
        if self.mixed_precision not in MIXED_PRECISION:
            raise ValueError(f"mixed_precision must be one of {MIXED_PRECISION}, got {self.mixed_precision!r}")
        if self.fsdp and self.mixed_precision != "no":
            raise ValueError("fsdp=True trains in the model's own dtype (mixed_precision='no'); mixed precision under "
                             "FSDP is not supported yet")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["adam_betas"] = list(self.adam_betas)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown training settings {sorted(unknown)}; known: {sorted(known)}")
        return cls(**d)


@dataclass
class TrainOutcome:
    """What :func:`train` returns; the model itself holds the selected parameters."""

    history: list[dict[str, Any]]
    selected_epoch: int  # 1-based
    best_epoch: int  # 1-based
    val_metrics: dict[str, float]  # of the selected epoch
    primary_metric: str
    steps: int
    train_seconds: float  # training + per-epoch validation, summed over interrupted parts
    resumed_from_step: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def val_primary(self) -> float:
        return float(self.val_metrics.get(self.primary_metric, math.nan))

    @property
    def throughput(self) -> dict[str, float]:
        """Training throughput over the epochs run (see :func:`train_throughput`)."""
        return train_throughput(self.history)


def train_throughput(history: Sequence[dict[str, Any]]) -> dict[str, float]:
    """``examples_per_s`` and ``tokens_per_s`` (attention-mask tokens, padding excluded; 0 for inputs without a
    mask) of the training steps alone — forward, backward, optimiser — summed over the epochs' records, not
    counting validation, checkpoints or the time before a resume; ``{}`` when no record has the counts."""
    timed = [r for r in history if r.get("train_step_s")]
    seconds = sum(r["train_step_s"] for r in timed)
    if not seconds:
        return {}
    return {"examples_per_s": sum(r["train_examples"] for r in timed) / seconds,
            "tokens_per_s": sum(r["train_tokens"] for r in timed) / seconds}


def _examples_and_tokens(batch: Any) -> tuple[int, int]:
    """(rows, attention-mask tokens) of a dict batch; (0, 0) for anything else."""
    if not isinstance(batch, dict):
        return 0, 0
    mask = batch.get("attention_mask")
    first = next((v for v in batch.values() if isinstance(v, torch.Tensor)), None)
    rows = int(first.shape[0]) if first is not None and first.dim() else 0
    return rows, int(mask.sum()) if isinstance(mask, torch.Tensor) else 0


class EpochSampler(Sampler[int]):
    """A random order that depends on ``(seed, epoch)`` only, so that a resumed run sees the same order.

    With ``lengths`` (one per example, e.g. token counts) and ``batch_size``, examples are grouped by
    length: the permutation is cut into chunks of ``GROUP`` batches, each chunk is sorted by length and
    cut into batches, and the full batches are shuffled (the one short batch, if any, comes last). Each
    batch then pads to a similar length, which halves the cost of padded text batches, while the order
    of batches stays random. (Deliberately no ``set_epoch`` method: the loop sets :attr:`epoch` itself.)
    """

    GROUP = 50

    def __init__(self, n: int, seed: int, shuffle: bool = True, lengths: Sequence[int] | None = None,
                 batch_size: int | None = None) -> None:
        self.n, self.seed, self.shuffle, self.epoch = n, seed, shuffle, 0
        if lengths is not None and len(lengths) != n:
            raise ValueError(f"{len(lengths)} lengths for {n} examples")
        self.lengths = list(lengths) if lengths is not None and batch_size else None
        self.batch_size = batch_size

    def __iter__(self):
        if not self.shuffle:
            return iter(range(self.n))
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.n, generator=g).tolist()
        if self.lengths is None:
            return iter(order)
        bs = self.batch_size
        chunk = bs * self.GROUP
        batches: list[list[int]] = []
        for start in range(0, self.n, chunk):
            group = sorted(order[start:start + chunk], key=lambda i: -self.lengths[i])
            batches += [group[j:j + bs] for j in range(0, len(group), bs)]
        full = [b for b in batches if len(b) == bs]
        short = [b for b in batches if len(b) != bs]
        perm = torch.randperm(len(full), generator=g).tolist()
        return iter([i for k in perm for i in full[k]] + [i for b in short for i in b])

    def __len__(self) -> int:
        return self.n


def default_loss(model: torch.nn.Module, batch: Mapping[str, Any]) -> torch.Tensor:
    out = model(**batch)
    if getattr(out, "loss", None) is None:
        raise ValueError("the model returned no loss: pass labels in the batch, or give train() a loss_fn")
    return out.loss


def trainable_named_parameters(model: torch.nn.Module) -> list[tuple[str, torch.nn.Parameter]]:
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """CPU copies of the trainable parameters, by name; whole tensors of a sharded model (collective then)."""
    return {n: full_tensor(p.detach()).to("cpu", copy=True) for n, p in trainable_named_parameters(model)}


def load_trainable_state(model: torch.nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    params = dict(trainable_named_parameters(model))
    if set(params) != set(state):
        missing, extra = sorted(set(params) - set(state)), sorted(set(state) - set(params))
        raise ResumeError(f"the saved trainable parameters do not match this model (missing {missing[:3]}, "
                          f"unexpected {extra[:3]}): was the run's method or model changed? Delete the run "
                          "folder to start afresh")
    for n, p in params.items():
        if p.shape != state[n].shape:
            raise ResumeError(f"{n}: saved shape {tuple(state[n].shape)} ≠ model shape {tuple(p.shape)}")
        load_full(p, state[n])


def _progress(total: int, initial: int, desc: str, enabled: bool, leave: bool = True):
    return tqdm(total=total, initial=initial, desc=desc, disable=not enabled, leave=leave, dynamic_ncols=True,
                unit="step")


def evaluate(model: torch.nn.Module, data: Dataset, *, metrics_fn: Callable[[Any, Any], dict[str, float]],
             collate_fn: Callable | None = None, batch_size: int = 128,
             predict_fn: Callable = default_predict, accelerator=None, progress: bool = True,
             desc: str = "eval") -> dict[str, float]:
    """Predictions of ``model`` on ``data`` (sharded across processes, then gathered) scored by
    ``metrics_fn(predictions, labels)``."""
    ctx = EvalContext(accelerator or make_accelerator(), batch_size=batch_size, progress=progress, desc=desc)
    predictions, labels = gathered_predictions(model, data, ctx, collate=collate_fn, predict=predict_fn)
    return metrics_fn(predictions, labels)


def train(model: torch.nn.Module, train_data: Dataset, val_data: Dataset, config: TrainConfig, *,
          primary_metric: str, metrics_fn: Callable[[Any, Any], dict[str, float]] | None = None,
          evaluate_fn: Callable[[torch.nn.Module], dict[str, float]] | None = None,
          higher_is_better: bool | None = None, collate_fn: Callable | None = None,
          loss_fn: Callable = default_loss, predict_fn: Callable = default_predict,
          run_dir: str | os.PathLike | RunDir | None = None, accelerator=None,
          callbacks: Sequence[Callable[[str, dict[str, Any]], None]] = (), desc: str = "train") -> TrainOutcome:
    """Train ``model`` (in place) on ``train_data``, validating after each epoch; see the module doc.

    Validation is ``evaluate_fn(model)`` when given, else ``predict_fn`` over ``val_data`` scored by
    ``metrics_fn``; ``primary_metric`` of its result keeps the best epoch. ``run_dir`` enables checkpoints
    (``RUN_DIR/checkpoint``) and ``metrics.jsonl``; an existing checkpoint there is resumed. ``callbacks``
    are called as ``cb(event, info)`` with event ``"step"`` (after each optimizer step and its checkpoint;
    ``info`` has ``step``, ``epoch``, ``loss``, ``lr`` and ``resumed_from_step``) or ``"epoch"`` (after
    validation).
    """
    if evaluate_fn is None and metrics_fn is None:
        raise ValueError("train() needs evaluate_fn (model -> validation metrics) or metrics_fn")
    if len(train_data) == 0:
        raise ValueError("the training set is empty")
    if len(val_data) == 0:
        raise ValueError("the validation set is empty: the loop selects epochs (and the sweep learning rates) on it")
    higher = (not is_lower_better(primary_metric)) if higher_is_better is None else higher_is_better
    acc = accelerator or make_accelerator(config.mixed_precision)
    rd = RunDir(run_dir) if run_dir is not None and not isinstance(run_dir, RunDir) else run_dir
    ckpt = (Checkpointer(rd.checkpoint, process_index=acc.process_index, num_processes=acc.num_processes,
                         is_main=acc.is_main_process) if rd is not None else None)
    show = config.progress and acc.is_local_main_process
    if config.fsdp:
        if acc.num_processes < 2:
            raise ValueError("fsdp=True shards the model across processes: launch with torchrun --nproc_per_node N "
                             "(or accelerate launch --multi_gpu --num_processes N), N ≥ 2")
        shard_model(model, acc.device)

    named = trainable_named_parameters(model)
    if not named:
        raise ValueError("the model has no trainable parameters: inject adapters or unfreeze something first")
    params = [p for _, p in named]
    if config.weight_decay > 0:
        decay = [p for n, p in named if p.ndim >= 2]
        no_decay = [p for n, p in named if p.ndim < 2]  # biases and norm scales
        groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    else:
        groups = [{"params": params, "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(groups, lr=config.lr, betas=config.adam_betas, eps=config.adam_eps)

    lengths = getattr(train_data, "lengths", None) if config.group_by_length else None
    sampler = EpochSampler(len(train_data), config.seed, lengths=lengths, batch_size=config.batch_size)
    train_loader = DataLoader(train_data, batch_size=config.batch_size, sampler=sampler, collate_fn=collate_fn,
                              generator=torch.Generator().manual_seed(config.seed))
    if config.fsdp:  # already sharded: Accelerate must not wrap it in DDP as well
        model_p = model
        optimizer, train_loader = acc.prepare(optimizer, train_loader)
    else:
        model_p, optimizer, train_loader = acc.prepare(model, optimizer, train_loader)
    steps_per_epoch = len(train_loader)
    total_steps = steps_per_epoch * config.epochs
    scheduler = get_linear_schedule_with_warmup(optimizer, math.ceil(config.warmup_ratio * total_steps), total_steps)

    # ---- fresh start or resume ------------------------------------------------------------------
    history: list[dict[str, Any]] = []
    epoch, batches_done, step = 0, 0, 0
    loss_sum, loss_count, elapsed_before = 0.0, 0, 0.0
    best: dict[str, Any] = {"value": None, "epoch": 0, "state": None}
    resumed = None
    loaded = ckpt.load() if ckpt is not None else None
    if loaded is not None:
        state, proc = loaded
        if state["steps_per_epoch"] != steps_per_epoch or state["epochs"] != config.epochs:
            raise ResumeError(f"the checkpoint in {ckpt.folder} is for {state['epochs']} epochs of "
                              f"{state['steps_per_epoch']} steps, this run has {config.epochs} × {steps_per_epoch}: "
                              "the data or settings changed. Delete the run folder to start afresh")
        if bool(state.get("fsdp", False)) != config.fsdp:
            raise ResumeError(f"the checkpoint in {ckpt.folder} was written with fsdp={state.get('fsdp', False)}, this "
                              f"run has fsdp={config.fsdp}: resume it as it was started, or delete the run folder")
        load_trainable_state(acc.unwrap_model(model_p), state["model"])
        if config.fsdp:
            load_optimizer_state(model_p, optimizer.optimizer, state["optimizer"])
        else:
            optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        epoch, batches_done, step = state["epoch"], state["batches_done"], state["step"]
        loss_sum, loss_count, elapsed_before = proc["loss_sum"], proc["loss_count"], state["elapsed"]
        history = list(state["history"])
        best = {"value": state["best_value"], "epoch": state["best_epoch"], "state": state.get("best_state")}
        set_rng_state(proc["rng"])
        resumed = step
        if show:
            print(f"{desc}: resuming from the checkpoint at step {step} (epoch {epoch + 1}, batch {batches_done})")
    else:
        torch.manual_seed(config.seed)

    start = time.monotonic()

    def elapsed() -> float:
        return elapsed_before + time.monotonic() - start

    def save(at_epoch_end: bool) -> None:
        if ckpt is None:
            return
        ckpt.save_process(step, {"loss_sum": 0.0 if at_epoch_end else loss_sum,
                                 "loss_count": 0 if at_epoch_end else loss_count})
        acc.wait_for_everyone()
        ckpt.save_main(step, {
            "model": trainable_state(acc.unwrap_model(model_p)), "fsdp": config.fsdp,
            "optimizer": full_optimizer_state(model_p, optimizer.optimizer) if config.fsdp else optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "epoch": epoch + (1 if at_epoch_end else 0),
            "batches_done": 0 if at_epoch_end else batches_done, "steps_per_epoch": steps_per_epoch,
            "epochs": config.epochs, "elapsed": elapsed(), "history": history,
            "best_value": best["value"], "best_epoch": best["epoch"], "best_state": best["state"],
            "config": config.to_dict(),
        })
        acc.wait_for_everyone()

    def notify(event: str, info: dict[str, Any]) -> None:
        for cb in callbacks:
            cb(event, info)

    # ---- the loop -------------------------------------------------------------------------------
    while epoch < config.epochs:
        sampler.epoch = epoch
        loader = acc.skip_first_batches(train_loader, batches_done) if batches_done else train_loader
        model_p.train()
        bar = _progress(steps_per_epoch, batches_done, f"{desc} epoch {epoch + 1}/{config.epochs}", show)
        counted, step_seconds = [0, 0], 0.0  # (examples, tokens) and seconds of this epoch's steps, this process
        for batch in loader:
            step_started = time.monotonic()
            rows, tokens = _examples_and_tokens(batch)
            loss = loss_fn(model_p, batch)
            acc.backward(loss)
            if config.max_grad_norm is not None:
                acc.clip_grad_norm_(params, config.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step_seconds += time.monotonic() - step_started
            counted[0] += rows
            counted[1] += tokens
            step += 1
            batches_done += 1
            loss_sum += float(loss.detach().float().item())
            loss_count += 1
            bar.update(1)
            if show and (batches_done % 5 == 0 or batches_done == steps_per_epoch):
                bar.set_postfix(loss=f"{loss_sum / loss_count:.4f}", lr=f"{scheduler.get_last_lr()[0]:.2e}")
            if config.checkpoint_every and step % config.checkpoint_every == 0 and batches_done < steps_per_epoch:
                save(at_epoch_end=False)
            notify("step", {"step": step, "epoch": epoch + 1, "loss": float(loss.detach().item()),
                            "lr": scheduler.get_last_lr()[0], "resumed_from_step": resumed})
        bar.close()

        mean_loss = torch.tensor([loss_sum, float(loss_count), *map(float, counted)], device=acc.device)
        mean_loss = acc.reduce(mean_loss, reduction="sum")
        train_loss = float(mean_loss[0] / mean_loss[1]) if float(mean_loss[1]) else math.nan
        step_seconds = float(acc.reduce(torch.tensor([step_seconds], device=acc.device), reduction="max"))
        if evaluate_fn is not None:
            val = evaluate_fn(model_p)
        else:
            val = evaluate(model_p, val_data, metrics_fn=metrics_fn, collate_fn=collate_fn,
                           batch_size=config.eval_batch_size, predict_fn=predict_fn, accelerator=acc,
                           progress=config.progress, desc=f"{desc} validation")
        value = float(val.get(primary_metric, math.nan))
        improved = _better(value, best["value"], higher)
        if improved:
            best = {"value": value, "epoch": epoch + 1,
                    "state": trainable_state(acc.unwrap_model(model_p)) if config.select == "best" else None}
        record = {"epoch": epoch + 1, "step": step, "train_loss": train_loss, "lr": scheduler.get_last_lr()[0],
                  "elapsed_s": round(elapsed(), 3), "val": val, "val_primary": value,
                  "best": bool(improved), "train_step_s": round(step_seconds, 3),
                  "train_examples": int(mean_loss[2]), "train_tokens": int(mean_loss[3])}
        history.append(record)
        if show:
            tqdm.write(f"{desc} epoch {epoch + 1}/{config.epochs}: train loss {train_loss:.4f}, "
                       f"val {primary_metric} {value:.4f}{' (best so far)' if improved else ''}")
        if rd is not None and acc.is_main_process:
            rd.write_metrics(history)
        save(at_epoch_end=True)
        notify("epoch", dict(record))
        epoch += 1
        batches_done, loss_sum, loss_count = 0, 0.0, 0

    # ---- selection ------------------------------------------------------------------------------
    unwrapped = acc.unwrap_model(model_p)
    if config.select == "best" and best["state"] is not None:
        load_trainable_state(unwrapped, best["state"])
        selected = best["epoch"]
    else:
        selected = len(history)
    if config.fsdp:
        unshard_in_place(unwrapped)  # whole parameters again: the main process alone may save or run the model
    val_metrics = dict(history[selected - 1]["val"]) if history else {}
    outcome = TrainOutcome(history=history, selected_epoch=selected, best_epoch=best["epoch"] or selected,
                           val_metrics=val_metrics, primary_metric=primary_metric, steps=step,
                           train_seconds=round(elapsed(), 3), resumed_from_step=resumed)
    acc.free_memory()  # drop the accelerator's references to the model / optimizer / loaders
    return outcome


def evaluate_untrained(model: torch.nn.Module, evaluate_fn: Callable[[torch.nn.Module], dict[str, float]], *,
                       primary_metric: str, run_dir: str | os.PathLike | RunDir | None = None,
                       accelerator=None) -> TrainOutcome:
    """What :func:`train` returns for a method that trains nothing: the validation metrics of ``model`` as it
    is (epoch 0, no steps); ``metrics.jsonl`` holds that one record."""
    acc = accelerator or make_accelerator("no")
    start = time.monotonic()
    model.to(acc.device)
    val = evaluate_fn(model)
    record = {"epoch": 0, "step": 0, "val": val, "elapsed_seconds": round(time.monotonic() - start, 3)}
    if run_dir is not None and acc.is_main_process:
        rd = run_dir if isinstance(run_dir, RunDir) else RunDir(Path(run_dir))
        rd.path.mkdir(parents=True, exist_ok=True)
        rd.write_metrics([record])
    return TrainOutcome(history=[record], selected_epoch=0, best_epoch=0, val_metrics=dict(val),
                        primary_metric=primary_metric, steps=0, train_seconds=record["elapsed_seconds"])


def _better(value: float, best: float | None, higher: bool) -> bool:
    if best is None:
        return True
    if math.isnan(value):
        return False
    if math.isnan(best):
        return True
    return value > best if higher else value < best


def iter_history(run_dir: str | os.PathLike) -> Iterable[dict[str, Any]]:
    """The per-epoch records of a run folder's ``metrics.jsonl``."""
    return RunDir(Path(run_dir)).read_metrics()
