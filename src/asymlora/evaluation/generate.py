r"""Batched text generation for causal and encoder-decoder language models (Hugging Face ``generate``).

Given token-id prompts p_1..p_n, :func:`generate_ids` returns the new token ids of each continuation, cut at
the first end-of-sequence token:

- **decoder-only** (``encoder_decoder=False``): prompts are **left**-padded, so every row's last prompt token
  sits in the last column and the new tokens start together; the attention mask hides the padding and
  ``generate`` derives position ids from it, so a padded row sees the same positions as it would alone.
  The continuation is everything after the padded prompt width.
- **encoder-decoder**: the prompt is the encoder input, right-padded (the encoder's positions start at 0 either
  way); the continuation is the decoder output after its start token.

Decoding is deterministic (``do_sample=False``): greedy for ``num_beams=1``, else beam search with
``length_penalty`` and early stopping; generation stops at the model's end tokens and ``eos_token_id`` (a
tokenizer's end-of-turn token); ``no_repeat_ngram_size`` > 0 forbids repeating any n-gram of the
continuation; the key/value cache is on. Settings not named in :class:`GenerationSettings` come from the model's
own generation config (e.g. BART's forced BOS token). Prompts are visited longest first in batches of
``batch_size`` (less padding) and the results returned in the input order. With several processes
(Accelerate), each generates every k-th prompt and the results are gathered, so every process returns all.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import torch
from accelerate.utils import gather_object
from tqdm.auto import tqdm

from asymlora.tasks.lm_format import pad_batch


@dataclass(frozen=True)
class GenerationSettings:
    """How summaries are decoded (see the module doc)."""

    max_new_tokens: int = 64
    num_beams: int = 1
    no_repeat_ngram_size: int = 0
    length_penalty: float = 1.0
    batch_size: int = 8

    def __post_init__(self) -> None:
        for name in ("max_new_tokens", "num_beams", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be ≥ 1, got {getattr(self, name)}")
        if int(self.no_repeat_ngram_size) < 0:
            raise ValueError(f"no_repeat_ngram_size must be ≥ 0, got {self.no_repeat_ngram_size}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _generation_config(model: Any, settings: GenerationSettings, pad_token_id: int, eos_token_id: Any):
    config = copy.deepcopy(model.generation_config)
    config.update(do_sample=False, temperature=None, top_p=None, top_k=None, max_length=None,
                  max_new_tokens=int(settings.max_new_tokens), num_beams=int(settings.num_beams),
                  num_return_sequences=1, no_repeat_ngram_size=int(settings.no_repeat_ngram_size),
                  length_penalty=float(settings.length_penalty), early_stopping=settings.num_beams > 1,
                  use_cache=True, pad_token_id=pad_token_id)
    stops = [t for t in _as_list(config.eos_token_id) + _as_list(eos_token_id) if t is not None]
    config.eos_token_id = list(dict.fromkeys(stops)) or None  # the model's end tokens and the tokenizer's
    return config


def _as_list(ids: Any) -> list[Any]:
    return list(ids) if isinstance(ids, (list, tuple)) else [ids]


def _cut(ids: list[int], stop: set[int]) -> list[int]:
    for i, t in enumerate(ids):
        if t in stop:
            return ids[:i]
    return ids


def _batch(prompts: Sequence[Sequence[int]], pad_token_id: int, left: bool, device: Any) -> dict[str, torch.Tensor]:
    items = [{"input_ids": p, "attention_mask": [1] * len(p)} for p in prompts]
    return {k: v.to(device) for k, v in pad_batch(items, pad_token_id, side="left" if left else "right").items()}


def generate_ids(model: Any, prompts: Sequence[Sequence[int]], settings: GenerationSettings, *, pad_token_id: int,
                 eos_token_id: int | Sequence[int] | None = None, encoder_decoder: bool = False,
                 accelerator: Any = None, progress: bool = False, desc: str = "generate") -> list[list[int]]:
    """The new token ids for each prompt, in input order (see the module doc)."""
    if any(len(p) == 0 for p in prompts):
        raise ValueError("every prompt needs at least one token")
    device = accelerator.device if accelerator is not None else next(model.parameters()).device
    rank, world = (accelerator.process_index, accelerator.num_processes) if accelerator is not None else (0, 1)
    config = _generation_config(model, settings, pad_token_id, eos_token_id)
    stop = {t for t in _as_list(config.eos_token_id) if t is not None}
    mine = [i for i in sorted(range(len(prompts)), key=lambda i: (-len(prompts[i]), i)) if i % world == rank]
    bs = int(settings.batch_size)
    was_training = model.training
    model.eval()
    found: list[tuple[int, list[int]]] = []
    bar = tqdm(total=len(mine), desc=desc, disable=not progress, leave=False, dynamic_ncols=True, unit="doc")
    try:
        with torch.no_grad():
            for start in range(0, len(mine), bs):
                idx = mine[start:start + bs]
                batch = _batch([prompts[i] for i in idx], pad_token_id, not encoder_decoder, device)
                out = model.generate(**batch, generation_config=config)
                new = out[:, 1:] if encoder_decoder else out[:, batch["input_ids"].shape[1]:]
                found += [(i, _cut(row, stop)) for i, row in zip(idx, new.tolist())]
                bar.update(len(idx))
    finally:
        bar.close()
        model.train(was_training)
    if world > 1:
        found = gather_object(found)
    by_index = dict(found)
    return [by_index[i] for i in range(len(prompts))]
