"""Turn a text task's examples into tensors for a Hugging Face tokenizer.

``encode_examples`` tokenises texts (and text pairs) with truncation to ``max_length`` and returns
``input_ids``, ``attention_mask`` (and ``token_type_ids`` when the tokenizer makes them) and
``labels`` (int64 for classification, float32 for regression). ``padding="longest"`` pads to the
longest example (at most ``max_length``); with ``padding=False`` the lists are left ragged for a
collator that pads per batch (``tokenizer.pad``).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from asymlora.data.task import Task


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


def encode(task: Task, split: str, tokenizer: Any, *, max_length: int = 128,
           padding: str | bool = "longest") -> dict[str, Any]:
    """Encode one split (or extra test set) of ``task``."""
    return encode_examples(task._split(split), tokenizer, kind=task.kind, max_length=max_length, padding=padding)


class EncodedDataset(torch.utils.data.Dataset):
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
