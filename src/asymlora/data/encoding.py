"""Text examples as token ids for a Hugging Face tokenizer: the one text encoder.

``encode_examples`` tokenises texts (and text pairs) with truncation to ``max_length`` and returns
``input_ids``, ``attention_mask`` (and ``token_type_ids`` when the tokenizer makes them) and ``labels``
(int64 for classification, float32 for regression). With ``padding="longest"`` the result is tensors padded
to the longest example; with ``padding=False`` the lists stay ragged, and :class:`TextDataset` holds them and
pads per batch (:func:`collate`: to the longest item of the batch), which is what training uses.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch.utils.data import Dataset

PAD_FIELDS = {"input_ids": None, "attention_mask": 0, "token_type_ids": 0}  # None: the tokenizer's pad id


def encode_examples(examples: Sequence[Any], tokenizer: Any, *, kind: str = "classification",
                    max_length: int = 128, padding: str | bool = "longest") -> dict[str, Any]:
    if not examples:
        raise ValueError("no examples to encode")
    texts = [ex.text for ex in examples]
    pairs = [ex.text_pair for ex in examples]
    has_pair = [p is not None for p in pairs]
    if any(has_pair) and not all(has_pair):
        raise ValueError("some examples have a text pair and some do not")
    tensors = "pt" if padding else None
    enc = tokenizer(texts, pairs if all(has_pair) else None, truncation=True, max_length=max_length,
                    padding=padding, return_tensors=tensors)
    out = dict(enc)
    dtype = torch.float32 if kind == "regression" else torch.long
    labels = [ex.label for ex in examples]
    out["labels"] = torch.tensor(labels, dtype=dtype) if padding else labels
    return out


def encode(task: Any, split: str, tokenizer: Any, *, max_length: int = 128,
           padding: str | bool = "longest") -> dict[str, Any]:
    """Encode one split (or extra test set) of a text ``task``."""
    return encode_examples(task.examples(split), tokenizer, kind=task.kind, max_length=max_length, padding=padding)


class EncodedDataset(Dataset):
    """A map-style dataset over the output of :func:`encode` (one dict of tensors per example)."""

    def __init__(self, encoded: dict[str, Any]):
        self.encoded = encoded
        self.n = len(encoded["labels"])
        if any(len(v) != self.n for v in encoded.values()):
            raise ValueError("encoded fields differ in length")

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {k: v[i] for k, v in self.encoded.items()}


class TextDataset(Dataset):
    """Tokenised examples, ragged: each item a dict of int lists plus a ``labels`` number; padded per batch."""

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
        """Tokens per example (batches are grouped by it, which saves padding)."""
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


def text_dataset(examples: Sequence[Any], tokenizer: Any, *, kind: str, max_length: int) -> TextDataset:
    """Ragged token ids of ``examples`` (truncated to ``max_length``), padded per batch by the dataset's collate."""
    enc = encode_examples(examples, tokenizer, kind=kind, max_length=max_length, padding=False)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return TextDataset({k: list(v) for k, v in enc.items()}, kind, pad)
