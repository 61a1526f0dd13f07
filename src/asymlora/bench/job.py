"""The ``job`` section: training throughput on the instruction-tuning job of the MMLU experiment, on its real
batches (issue 17: B-only ≥ 1.15 × PEFT LoRA's training tokens/s, reported beside the frozen floor's).

The job (``asymlora run --task natural-instructions --model smollm2``, ``scripts/table8.sh``) adapts the
attention query / value projections at r = 32 (alpha = 2r, dropout 0) and trains on length-bucketed batches of
8 prompt → response examples of at most 256 tokens (labels −100 on the prompt), the training split of the
``natural-instructions`` task in the job's epoch-0 order (:class:`~asymlora.train.loop.EpochSampler`, seed 0).
This section encodes that split the same way, takes ``--job-batches`` of those batches evenly spaced through
the epoch (default 3, 1 with ``--quick``) and times one optimizer step on each, interleaved, for the frozen floor, PEFT LoRA,
asymlora LoRA and asymlora B-only, and a second copy of the floor whose ratio to the first is the run's
noise (the configurations of :mod:`asymlora.bench.methods`, at the job's rank,
targets and dropout rather than the ``--rank`` / ``--dropout`` of the other sections). Throughput is

    tokens/s = (Σ over the timed batches of the attention mask) / (median seconds for one step on each)

so padding is not counted. The check models (``tiny``, ``smollm2-shaped``) have smaller vocabularies than
SmolLM2's tokenizer: there the token ids are taken modulo the vocabulary (lengths and padding are the job's,
the ids are not); with ``--model smollm2`` the batches are exactly the job's.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import torch
import torch.nn as nn

from asymlora.data.registry import get_task
from asymlora.models.heads import language_model_tokenizer
from asymlora.models.smollm2 import smollm2_folder
from asymlora.tasks.protocol import Limits
from asymlora.train.loop import EpochSampler

from .measure import clock_name, median, time_interleaved
from .methods import LABELS, prepare
from .models import vocab_size
from .report import Row

__all__ = ["JOB_CONFIGS", "step_mac_bound", "JOB_RANK", "JOB_TARGETS", "job_batches", "job_section", "time_job_steps"]

JOB_TASK = "natural-instructions"
JOB_RANK = 32
JOB_TARGETS = ("q_proj", "v_proj")
JOB_DROPOUT = 0.0
JOB_BATCH_SIZE = 8
JOB_MAX_LENGTH = 256
JOB_SEED = 0
JOB_CONFIGS = ("floor", "peft-lora", "asym-lora", "asym-b-only")
TOKENS_PER_S_TARGET = 1.15  # issue 17: B-only / PEFT LoRA training tokens/s


def _job_tokenizer() -> Any:
    return language_model_tokenizer(smollm2_folder(), local_files_only=True)


def job_batches(count: int, *, tokenizer: Any = None, vocab: int | None = None) -> list[dict[str, torch.Tensor]]:
    """``count`` batches of the job's first epoch, evenly spaced (batch ``i · n_batches // count``), padded as
    the job pads them; with ``vocab``, token ids (and the labels that are
    not −100) are taken modulo it (for a model with a smaller vocabulary)."""
    if count < 1:
        raise ValueError(f"count must be ≥ 1, got {count}")
    tokenizer = tokenizer or _job_tokenizer()
    data = get_task(JOB_TASK).encode("train", tokenizer, Limits(max_length=JOB_MAX_LENGTH))
    order = list(EpochSampler(len(data), JOB_SEED, lengths=data.lengths, batch_size=JOB_BATCH_SIZE))
    n_full = len(order) // JOB_BATCH_SIZE
    if n_full < count:
        raise ValueError(f"the job has {n_full} full batches, fewer than the {count} asked for")
    picks = [i * n_full // count for i in range(count)]
    batches = []
    for b in picks:
        batch = data.collate([data[i] for i in order[b * JOB_BATCH_SIZE:(b + 1) * JOB_BATCH_SIZE]])
        if vocab is not None:
            batch["input_ids"] = batch["input_ids"] % vocab
            labels = batch["labels"]
            batch["labels"] = torch.where(labels >= 0, labels % vocab, labels)
        batches.append(batch)
    return batches


def _steps(model: nn.Module, optimizer: torch.optim.Optimizer | None, batches: Sequence[dict]):
    def run() -> None:
        for batch in batches:
            if optimizer is not None:
                optimizer.zero_grad(set_to_none=True)
            model(**batch).loss.backward()
            if optimizer is not None:
                optimizer.step()
    return run


def time_job_steps(s: Any, base: nn.Module, batches: Sequence[dict[str, torch.Tensor]]) -> dict[str, Any]:
    """Seconds for one step on each of ``batches`` (interleaved rounds, ``s.warmup`` + ``s.repeats``) for every
    configuration of :data:`JOB_CONFIGS` at the job's rank, targets and dropout; tokens/s from the masks."""
    spec = dataclasses.replace(s.spec, targets=list(JOB_TARGETS))
    batches = [{k: v.to(s.device) for k, v in b.items()} for b in batches]
    preps = {m: prepare(m, base, spec, rank=JOB_RANK, dropout=JOB_DROPOUT, seed=s.seed) for m in JOB_CONFIGS}
    control = prepare("floor", base, spec, rank=JOB_RANK, dropout=JOB_DROPOUT, seed=s.seed)  # this run's noise
    fns = {m: _steps(p.model, p.optimizer, batches) for m, p in preps.items()}
    fns["floor-control"] = _steps(control.model, control.optimizer, batches)
    times = time_interleaved(fns, warmup=s.warmup, repeats=s.repeats, device=s.device, clock=s.clock,
                             progress=lambda msg: s.progress(f"job: {msg}"))
    for p in [*preps.values(), control]:
        p.remove_hooks()
    tokens = int(sum(int(b["attention_mask"].sum()) for b in batches))
    padded = int(sum(b["attention_mask"].numel() for b in batches))
    step_s = {m: median(t) for m, t in times.items()}
    return {"tokens": tokens, "padded_tokens": padded, "trainable": {m: p.trainable for m, p in preps.items()},
            "seconds": times, "median_s": step_s, "tokens_per_s": {m: tokens / t for m, t in step_s.items()}}


def step_mac_bound(base: nn.Module, rank: int = JOB_RANK, targets: Sequence[str] = JOB_TARGETS) -> float:
    """The most any adapter can gain over LoRA on a training step, counted in multiply-adds per token.

    Every ``nn.Linear`` of ``base`` (d_in × d_out, the output head included) costs D = Σ d_in·d_out forward;
    the frozen model's step is the forward and the input gradients, 2D. A LoRA branch on each target costs
    a = Σ_targets r·(d_in + d_out) in each of the forward, the input gradient and the factor gradients, so
    LoRA's step is 2D + 3a and the floor's 2D. No variant (B-only included) trains faster than the floor, so

        tokens/s(any variant) / tokens/s(LoRA) ≤ (2D + 3a) / 2D = 1 + 1.5 · a / D.

    Attention scores and elementwise work are left out (they would lower the bound)."""
    linears = [(name, m) for name, m in base.named_modules() if isinstance(m, nn.Linear)]
    dense = sum(m.in_features * m.out_features for _, m in linears)
    adapter = sum(rank * (m.in_features + m.out_features) for name, m in linears if name.rsplit(".", 1)[-1] in targets)
    return 1.0 + 1.5 * adapter / dense


def job_section(s: Any, base: nn.Module) -> tuple[list[Row], dict[str, Any]]:
    """The rows of the ``job`` section (see the module doc); ``base`` is a causal LM (checked by ``run_suite``)."""
    count = s.job_batches
    vocab = vocab_size(base)
    tokenizer = _job_tokenizer()
    modulo = vocab < len(tokenizer)
    s.progress(f"job: encoding the {JOB_TASK} training split, {count} of its batches")
    batches = job_batches(count, tokenizer=tokenizer, vocab=vocab if modulo else None)
    out = time_job_steps(s, base, batches)
    tps = out["tokens_per_s"]
    bound = step_mac_bound(base)
    metric = f"training tokens/s (r={JOB_RANK} q/v, {count} real batch{'es' if count > 1 else ''}, " \
             f"{clock_name(s.device, s.clock)})"
    rows = [Row("job", metric, LABELS["asym-b-only"], LABELS["peft-lora"], tps["asym-b-only"], tps["peft-lora"],
                "tok/s", lower=TOKENS_PER_S_TARGET, target=f"≥ {TOKENS_PER_S_TARGET:.2f} (issue 17)"),
            Row("job", metric, LABELS["asym-b-only"], LABELS["floor"], tps["asym-b-only"], tps["floor"], "tok/s",
                note="the frozen model's throughput is the ceiling"),
            Row("job", metric, LABELS["peft-lora"], LABELS["floor"], tps["peft-lora"], tps["floor"], "tok/s"),
            Row("job", metric, LABELS["asym-lora"], LABELS["peft-lora"], tps["asym-lora"], tps["peft-lora"], "tok/s"),
            Row("job", metric, "floor, second copy (noise control)", LABELS["floor"], tps["floor-control"], tps["floor"],
                "tok/s", note="identical configurations: this run's noise")]
    details = {**out, "task": JOB_TASK, "rank": JOB_RANK, "alpha": 2 * JOB_RANK, "targets": list(JOB_TARGETS),
               "dropout": JOB_DROPOUT, "batch_size": JOB_BATCH_SIZE, "max_length": JOB_MAX_LENGTH,
               "batch_shapes": [list(b["input_ids"].shape) for b in batches],
               "ids_modulo_vocab": modulo, "mac_bound": bound}
    return rows, details
