r"""Multiple-choice scoring with a causal LM: next-token log-probabilities and continuation log-likelihoods.

For a prompt p (token ids p_1..p_n) and a causal LM with next-token distribution P(· | prefix):

- **next token**: ``log P(t | p)`` for a few candidate tokens t (e.g. " A" … " D"): one forward pass over p,
  the log-softmax of the last position's logits over the whole vocabulary (not renormalised over the
  candidates).
- **continuation**: for a continuation c (tokens c_1..c_m), ``log P(c | p) = Σ_j log P(c_j | p, c_<j)``.
  c's tokens are those the tokenizer gives ``p + c`` after p's own tokens (``enc(p + c)[len(enc(p)):]``),
  the rule lm-evaluation-harness uses, so both tokenise a continuation the same way.

Prefix sharing: the prompt runs once; its key/value cache is repeated for the k continuations and only the
continuation tokens run again (cost ≈ |p| + k·|c| tokens instead of k·(|p| + |c|)). Prompts of a batch are
left-padded, so the last position is every prompt's last real token; position ids count real tokens only
(``cumsum(mask) − 1``), so padding changes nothing but rounding. Batches are formed from prompts sorted by
length (longest first), which keeps padding small; results come back in input order.
``share_prefix=False`` runs every ``p + c`` in full instead (the reference the cached path is tested
against).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Sequence

import torch

__all__ = ["ChoiceScores", "score_choices", "single_token_ids"]


@dataclass
class ChoiceScores:
    """Per prompt: log P(candidate token | prompt), and per continuation log P(c | p) with its token count."""

    next_token: list[list[float]] | None  # [prompt][candidate]
    continuation: list[list[float]] | None  # [prompt][continuation]
    continuation_tokens: list[list[int]] | None  # [prompt][continuation]


def single_token_ids(tokenizer: Any, texts: Sequence[str]) -> list[int]:
    """The token id of each text, which must be exactly one token (e.g. " A"); else a ValueError."""
    out = []
    for t in texts:
        ids = list(tokenizer(t, add_special_tokens=False)["input_ids"])
        if len(ids) != 1:
            raise ValueError(f"{t!r} is {len(ids)} tokens for this tokenizer ({ids}); the letter scorer needs "
                             f"one token per answer letter")
        out.append(ids[0])
    return out


def _encode(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text)["input_ids"])


def _pad_id(tokenizer: Any) -> int:
    for name in ("pad_token_id", "eos_token_id"):
        value = getattr(tokenizer, name, None)
        if value is not None:
            return int(value)
    return 0


def _left_pad(rows: Sequence[Sequence[int]], pad: int, device: Any) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        if r:
            ids[i, width - len(r):] = torch.tensor(r, dtype=torch.long)
            mask[i, width - len(r):] = 1
    return ids.to(device), mask.to(device)


def _positions(mask: torch.Tensor, start: torch.Tensor | None = None) -> torch.Tensor:
    pos = mask.cumsum(-1) - 1
    if start is not None:
        pos = pos + start[:, None]
    return pos.clamp(min=0)


def _forward(model: Any, keep_last: bool, **kw: Any) -> Any:
    if keep_last:
        try:
            return model(logits_to_keep=1, **kw)
        except TypeError:  # a model without logits_to_keep: compute every position, keep the last
            out = model(**kw)
            out.logits = out.logits[:, -1:]
            return out
    return model(**kw)


def _cache_argument(model: Any) -> str:
    """The name under which ``forward`` takes a KV cache (transformers ≥ 5.2x: ``cache``, before: ``past_key_values``)."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _token_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log-softmax(logits)[targets] along the last axis, in float32, without materialising the log-softmax."""
    logits = logits.float()
    return logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)


@torch.no_grad()
def _score_batch(model: Any, prompts: list[list[int]], conts: list[list[list[int]]] | None,
                 candidates: Sequence[int] | None, pad: int, share_prefix: bool) -> tuple[list, list]:
    device = next(model.parameters()).device
    ids, mask = _left_pad(prompts, pad, device)
    need_cache = conts is not None and share_prefix
    out = _forward(model, True, input_ids=ids, attention_mask=mask, position_ids=_positions(mask),
                   use_cache=need_cache)
    last = out.logits[:, -1].float()  # (B, V): P(· | prompt)
    next_tok = None
    if candidates is not None:
        cand = torch.tensor(list(candidates), device=device)
        next_tok = (last.gather(-1, cand.expand(len(prompts), -1)) - torch.logsumexp(last, -1, keepdim=True)).tolist()
    if conts is None:
        return next_tok, []
    k = len(conts[0])
    if any(len(c) != k for c in conts):
        raise ValueError("every prompt of a batch needs the same number of continuations")
    flat = [c for cs in conts for c in cs]
    if any(not c for c in flat):
        raise ValueError("an empty continuation has no tokens to score")
    if share_prefix:
        cache = getattr(out, "cache", None) or out.past_key_values
        cache.batch_repeat_interleave(k)
        width = max(len(c) for c in flat)
        c_ids = torch.full((len(flat), width), pad, dtype=torch.long)
        c_mask = torch.zeros((len(flat), width), dtype=torch.long)
        for i, c in enumerate(flat):  # right-padded: real tokens never see the padding after them
            c_ids[i, :len(c)] = torch.tensor(c)
            c_mask[i, :len(c)] = 1
        c_ids, c_mask = c_ids.to(device), c_mask.to(device)
        p_mask = mask.repeat_interleave(k, dim=0)
        start = p_mask.sum(-1)
        pos = (start[:, None] + torch.arange(width, device=device)[None, :])
        logits = model(input_ids=c_ids, attention_mask=torch.cat([p_mask, c_mask], dim=1), position_ids=pos,
                       use_cache=True, **{_cache_argument(model): cache}).logits
        first = _token_logprobs(last.repeat_interleave(k, dim=0), c_ids[:, 0])
        rest = _token_logprobs(logits[:, :-1], c_ids[:, 1:]) * c_mask[:, 1:]
        totals = first + rest.sum(-1)
    else:
        rows = [p + c for p, cs in zip(prompts, conts) for c in cs]
        f_ids, f_mask = _left_pad(rows, pad, device)
        logits = model(input_ids=f_ids, attention_mask=f_mask, position_ids=_positions(f_mask)).logits
        lp = _token_logprobs(logits[:, :-1], f_ids[:, 1:])  # lp[:, t] = log P(token t+1 | tokens ≤ t)
        totals = torch.stack([lp[i, lp.shape[1] - len(c):].sum() for i, c in enumerate(flat)])
    t = totals.tolist()
    return next_tok, [t[i * k:(i + 1) * k] for i in range(len(prompts))]


def score_choices(model: Any, tokenizer: Any, prompts: Sequence[str], *,
                  continuations: Sequence[Sequence[str]] | None = None, candidates: Sequence[int] | None = None,
                  batch_size: int = 8, share_prefix: bool = True, progress: Any = None) -> ChoiceScores:
    """Score ``candidates`` (token ids) as the next token and/or ``continuations`` (texts) after each prompt.

    Prompts are tokenised with the tokenizer's special tokens (a BOS where it adds one). ``progress``, if
    given, is called with the number of prompts finished after each batch. See the module doc for the math.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
    if continuations is not None and len(continuations) != len(prompts):
        raise ValueError(f"{len(continuations)} continuation lists for {len(prompts)} prompts")
    if candidates is None and continuations is None:
        raise ValueError("nothing to score: give candidates, continuations or both")
    p_ids = [_encode(tokenizer, p) for p in prompts]
    c_ids = None
    if continuations is not None:
        c_ids = [[_encode(tokenizer, p + c)[len(ids):] for c in cs]
                 for p, ids, cs in zip(prompts, p_ids, continuations)]
    pad = _pad_id(tokenizer)
    order = sorted(range(len(prompts)), key=lambda i: -len(p_ids[i]))
    next_tok: list[Any] = [None] * len(prompts)
    conts: list[Any] = [None] * len(prompts)
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        nt, ct = _score_batch(model, [p_ids[i] for i in idx], [c_ids[i] for i in idx] if c_ids else None,
                              candidates, pad, share_prefix)
        for j, i in enumerate(idx):
            if nt is not None:
                next_tok[i] = nt[j]
            if c_ids is not None:
                conts[i] = ct[j]
        if progress is not None:
            progress(len(idx))
    return ChoiceScores(next_tok if candidates is not None else None, conts if c_ids is not None else None,
                        [[len(c) for c in cs] for cs in c_ids] if c_ids is not None else None)
