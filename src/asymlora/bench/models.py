"""The models the benchmark runs on, and how to make a batch and a loss for each.

* ``tiny``: a 2-layer Llama-architecture causal LM with random weights (hidden 64, MLP 256, so the
  down-projection input is 4× the hidden size as in SmolLM2), adapters on every linear layer, 64
  tokens. Builds in milliseconds: for tests and for checking the suite.
* ``minilm``: all-MiniLM-L6-v2 (BERT, 6 layers, hidden 384) with a 2-label classification head,
  adapters on the attention query and value projections, 128 tokens.
* ``smollm2-shaped``: a Llama with SmolLM2-135M's layer shapes (hidden 576, MLP 1536, 9 query and 3
  key/value heads) but 4 layers, a 2048-token vocabulary and random weights, adapters on every linear
  layer, 512 tokens. Builds in a second, no download; a step costs about a seventh of SmolLM2's, and
  the output head is small, so the ratios measure the adapted layers as in the real model.
* ``smollm2``: SmolLM2-135M-Instruct (Llama, 30 layers, hidden 576, MLP 1536) as a causal LM,
  adapters on every linear layer except the output head, 512 tokens.

Inputs are random token ids from a seeded generator (the cost of a step does not depend on the text).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn as nn

from asymlora.models import load_model
from asymlora.models.causal_lm import load_causal_lm

__all__ = ["BenchModel", "BENCH_MODELS", "get_bench_model", "make_batch"]


@dataclass(frozen=True)
class BenchModel:
    name: str
    description: str
    kind: str  # "causal-lm" or "classification"
    targets: Any  # asymlora/PEFT target list, or "all-linear"
    seq_len: int
    batch: int
    quick_seq_len: int
    quick_batch: int
    loader: Callable[[], nn.Module]
    # batched multi-adapter serving: rows per batch and tokens per row
    serve_batch: int = 16
    serve_seq_len: int = 64
    # inference timing of merged adapters: rows and tokens per row
    infer_batch: int = 8
    infer_seq_len: int = 128


def _tiny() -> nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        config = LlamaConfig(vocab_size=256, hidden_size=64, intermediate_size=256, num_hidden_layers=2,
                             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                             tie_word_embeddings=True)
        return LlamaForCausalLM(config).eval()


def _smollm2_shaped() -> nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        config = LlamaConfig(vocab_size=2048, hidden_size=576, intermediate_size=1536, num_hidden_layers=4,
                             num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=2048,
                             tie_word_embeddings=True)
        return LlamaForCausalLM(config).eval()


def _minilm() -> nn.Module:
    model, _ = load_model("minilm", num_labels=2, seed=0)
    return model.eval()


def _smollm2() -> nn.Module:
    model, _ = load_causal_lm("smollm2", tokenizer=False)
    return model.eval()


BENCH_MODELS: dict[str, BenchModel] = {
    "tiny": BenchModel("tiny", "random 2-layer Llama (hidden 64, MLP 256), all linear layers",
                       "causal-lm", "all-linear", 64, 4, 32, 2, _tiny, serve_batch=16, serve_seq_len=32,
                       infer_batch=4, infer_seq_len=32),
    "minilm": BenchModel("minilm", "all-MiniLM-L6-v2 (BERT, 6 layers, hidden 384), query/value adapters",
                         "classification", ["query", "value"], 128, 8, 128, 4, _minilm,
                         serve_batch=16, serve_seq_len=128, infer_batch=8, infer_seq_len=128),
    "smollm2-shaped": BenchModel("smollm2-shaped", "random Llama with SmolLM2-135M's layer shapes (4 layers, "
                                 "hidden 576, MLP 1536, vocabulary 2048), all linear layers", "causal-lm",
                                 "all-linear", 512, 1, 256, 1, _smollm2_shaped, serve_batch=16, serve_seq_len=16,
                                 infer_batch=4, infer_seq_len=64),
    "smollm2": BenchModel("smollm2", "SmolLM2-135M-Instruct (Llama, 30 layers, hidden 576, MLP 1536), "
                          "all linear layers", "causal-lm", "all-linear", 512, 1, 256, 1, _smollm2,
                          serve_batch=16, serve_seq_len=16, infer_batch=4, infer_seq_len=64),
}


def get_bench_model(name: str) -> BenchModel:
    if name not in BENCH_MODELS:
        raise ValueError(f"unknown benchmark model {name!r}; choose one of {', '.join(BENCH_MODELS)}")
    return BENCH_MODELS[name]


def vocab_size(model: nn.Module) -> int:
    return int(model.config.vocab_size)


def make_batch(spec: BenchModel, model: nn.Module, batch: int, seq_len: int, device: Any,
               seed: int = 0, labels: bool = True) -> dict[str, torch.Tensor]:
    """Random token ids (avoiding the first 5 ids, which hold special tokens), an all-ones attention
    mask and, with ``labels``, the labels the model's own loss needs."""
    g = torch.Generator().manual_seed(seed)
    vocab = vocab_size(model)
    ids = torch.randint(5, vocab, (batch, seq_len), generator=g)
    out = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    if labels:
        if spec.kind == "causal-lm":
            out["labels"] = ids.clone()
        else:
            out["labels"] = torch.randint(0, int(model.config.num_labels), (batch,), generator=g)
    return {k: v.to(device) for k, v in out.items()}
