"""Running a model over an encoded split: gathered predictions, and the loss averaged over target tokens.

Both shard the split across processes (Accelerate), run without gradients in eval mode (dropout off; the
model's mode is restored afterwards) and visit examples longest first when the dataset exposes ``lengths``,
which keeps padding small.

``lm_loss_and_accuracy`` is the loss of the whole split, not a mean of batch means:
L = Σ_t −log p(y_t | y_<t) / N over the N target tokens of the split (labels ≠ −100; for a causal LM the
label of position t is predicted by the logits at t − 1, so each row's first position predicts nothing).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm.auto import tqdm

from asymlora.tasks.protocol import EvalContext

IGNORE_INDEX = -100


class LongestFirst(Sampler[int]):
    """Evaluation order: longest first (less padding); gathered predictions keep their labels beside them."""

    def __init__(self, lengths: Sequence[int]) -> None:
        self.order = sorted(range(len(lengths)), key=lambda i: -lengths[i])

    def __iter__(self):
        return iter(self.order)

    def __len__(self) -> int:
        return len(self.order)


def eval_loader(data: Dataset, collate: Callable | None, ctx: EvalContext):
    """A prepared (sharded) DataLoader over ``data`` for evaluation."""
    lengths = getattr(data, "lengths", None)
    loader = DataLoader(data, batch_size=ctx.batch_size, collate_fn=collate,
                        sampler=LongestFirst(lengths) if lengths is not None else None)
    return ctx.accelerator.prepare_data_loader(loader)


def _progress(total: int, desc: str, enabled: bool):
    return tqdm(total=total, desc=desc, disable=not enabled, leave=False, dynamic_ncols=True, unit="batch")


def logits_and_labels(model: torch.nn.Module, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """The default prediction: the model's logits on the batch without its labels, and the labels."""
    labels = batch["labels"]
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    return model(**inputs).logits, labels


def gathered_predictions(model: torch.nn.Module, data: Dataset, ctx: EvalContext, *, collate: Callable | None = None,
                         predict: Callable = logits_and_labels) -> tuple[torch.Tensor, torch.Tensor]:
    """(predictions, labels) of the whole split, gathered from every process, as CPU tensors."""
    acc = ctx.accelerator
    loader = eval_loader(data, collate, ctx)
    model.to(acc.device)
    was_training = model.training
    model.eval()
    preds, labels = [], []
    bar = _progress(len(loader), ctx.desc, ctx.progress and acc.is_local_main_process)
    try:
        with torch.no_grad(), acc.autocast():
            for batch in loader:
                p, y = predict(model, batch)
                p, y = acc.gather_for_metrics((p.contiguous(), y.contiguous()))
                preds.append(p.float().cpu())
                labels.append(y.cpu())
                bar.update(1)
    finally:
        bar.close()
        model.train(was_training)
    return torch.cat(preds), torch.cat(labels)


def target_tokens(labels: torch.Tensor, *, shifted: bool) -> int:
    """Tokens that carry a loss: labels ≠ −100 (``shifted``: a causal LM, whose first position predicts none)."""
    y = labels[:, 1:] if shifted else labels
    return int((y != IGNORE_INDEX).sum())


def _row_chunks(batch: dict[str, torch.Tensor], token_budget: int):
    """The batch cut into consecutive row blocks of at most ``token_budget`` tokens (at least one row each)."""
    rows, width = batch["input_ids"].shape
    step = max(1, token_budget // max(1, width))
    for start in range(0, rows, step):
        yield {k: v[start:start + step] for k, v in batch.items()}


def lm_loss_and_accuracy(model: torch.nn.Module, data: Dataset, ctx: EvalContext, *, collate: Callable | None = None,
                         shifted: bool = True, feed_labels: bool = False, token_budget: int = 4096) -> dict[str, float]:
    """``loss`` (mean negative log-likelihood per target token over the split, see the module doc),
    ``perplexity`` = exp(loss), ``token_accuracy`` (share of target tokens whose arg-max prediction is right)
    and ``tokens``. Batches are cut into blocks of ≤ ``token_budget`` tokens so the (tokens × vocabulary)
    logits stay small. ``feed_labels``: the model gets the labels too (an encoder-decoder builds its decoder
    inputs from them; its logits at t then predict label t, so ``shifted=False``)."""
    acc = ctx.accelerator
    loader = eval_loader(data, collate, ctx)
    model.to(acc.device)
    was_training = model.training
    model.eval()
    total = torch.zeros(3, dtype=torch.float64, device=acc.device)  # Σ nll, Σ correct, Σ tokens
    bar = _progress(len(loader), ctx.desc, ctx.progress and acc.is_local_main_process)
    try:
        with torch.no_grad(), acc.autocast():
            for batch in loader:
                for part in _row_chunks(batch, token_budget):
                    labels = part["labels"]
                    logits = model(**{k: v for k, v in part.items() if feed_labels or k != "labels"}).logits
                    if shifted:
                        logits, labels = logits[:, :-1], labels[:, 1:]
                    keep = labels != IGNORE_INDEX
                    if not keep.any():
                        continue
                    picked, gold = logits[keep].float(), labels[keep]
                    nll = torch.nn.functional.cross_entropy(picked, gold, reduction="sum")
                    right = (picked.argmax(dim=-1) == gold).sum()
                    total += torch.stack([nll.double(), right.double(), torch.tensor(float(gold.numel()), dtype=torch.float64,
                                                                                      device=acc.device)])
                bar.update(1)
    finally:
        bar.close()
        model.train(was_training)
    total = acc.reduce(total, reduction="sum")
    n = float(total[2])
    if not n:
        return {"loss": math.nan, "perplexity": math.nan, "token_accuracy": math.nan, "tokens": 0.0}
    loss = float(total[0]) / n
    return {"loss": loss, "perplexity": math.exp(min(loss, 700.0)), "token_accuracy": float(total[1]) / n, "tokens": n}
