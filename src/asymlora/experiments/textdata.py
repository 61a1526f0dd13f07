"""Text tasks as tensors: tokenised once, padded per batch (to the longest example in the batch).

``encode_split(task, "train", tokenizer, max_length=64, limit=2000)`` tokenises a split (optionally a
fixed random subset of it: the first ``limit`` examples of a permutation seeded by ``subset_seed``,
kept in their original order, the same for every method and seed so that runs compare on the same
data). :func:`collate` pads a list of examples into a batch.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch.utils.data import Dataset

from asymlora.data.encoding import encode_examples

PAD_FIELDS = {"input_ids": None, "attention_mask": 0, "token_type_ids": 0}


class TextDataset(Dataset):
    """Tokenised examples: each item a dict of int lists plus a ``labels`` number."""

    def __init__(self, features: dict[str, list[Any]], kind: str, pad_token_id: int) -> None:
        self.features = features
        self.kind = kind
        self.pad_token_id = pad_token_id
        self.n = len(features["labels"])
        self._lengths = [len(x) for x in features["input_ids"]]

    def __len__(self) -> int:
        return self.n

    @property
    def lengths(self) -> list[int]:
        """Tokens per example (the loop groups batches by it, which saves padding)."""
        return self._lengths

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {k: v[i] for k, v in self.features.items()}

    def collate(self, items: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        return collate(items, pad_token_id=self.pad_token_id, kind=self.kind)


def collate(items: Sequence[dict[str, Any]], *, pad_token_id: int = 0, kind: str = "classification") -> dict[str, torch.Tensor]:
    """Pad token fields to the longest item; labels as int64 (classification) or float32 (regression)."""
    width = max(len(it["input_ids"]) for it in items)
    batch: dict[str, torch.Tensor] = {}
    for key in items[0]:
        if key == "labels":
            continue
        pad = pad_token_id if PAD_FIELDS.get(key, 0) is None else PAD_FIELDS.get(key, 0)
        rows = [list(it[key]) + [pad] * (width - len(it[key])) for it in items]
        batch[key] = torch.tensor(rows, dtype=torch.long)
    dtype = torch.float32 if kind == "regression" else torch.long
    batch["labels"] = torch.tensor([it["labels"] for it in items], dtype=dtype)
    return batch


def subset(examples: Sequence[Any], limit: int | None, seed: int = 0) -> list[Any]:
    """The first ``limit`` of a seeded permutation, in original order (all when ``limit`` is None)."""
    if limit is None or limit >= len(examples):
        return list(examples)
    if limit < 1:
        raise ValueError(f"a subset needs at least one example, got limit={limit}")
    g = torch.Generator().manual_seed(seed)
    keep = sorted(torch.randperm(len(examples), generator=g)[:limit].tolist())
    return [examples[i] for i in keep]


def encode_split(task: Any, split: str, tokenizer: Any, *, max_length: int = 128, limit: int | None = None,
                 subset_seed: int = 0) -> TextDataset:
    examples = subset(task._split(split), limit, subset_seed)
    if not examples:
        raise ValueError(f"task {task.name!r}: split {split!r} is empty")
    enc = encode_examples(examples, tokenizer, kind=task.kind, max_length=max_length, padding=False)
    features = {k: list(v) for k, v in enc.items()}
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return TextDataset(features, task.kind, pad)
