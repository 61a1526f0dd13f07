r"""Prompt → response examples for a causal LM: the text the model sees and which tokens carry the loss.

A record (instruction, optional input, response) becomes one token sequence ``prompt ‖ response`` with

    labels_t = −100            for every prompt token (and padding): no loss there,
    labels_t = input_ids_t     for every response token, the end-of-turn / EOS token included,

so the training loss (Hugging Face's shifted cross-entropy over positions whose label is not −100) is the
negative log-likelihood of the response given the prompt only.

Formatting. When the tokenizer has a chat template, the prompt is the user turn rendered with
``add_generation_prompt=True`` and the full sequence is the conversation with the assistant turn added; the
response tokens are what the full rendering adds after the prompt's (so the template's end-of-turn marker is
learned too). Without a chat template the Alpaca template is used and the EOS token ends the response::

    Below is an instruction that describes a task[, paired with an input that provides further context].
    Write a response that appropriately completes the request.

    ### Instruction:
    {instruction}

    [### Input:
    {input}

    ]### Response:
    {response}<eos>

Rendered text is tokenised with ``add_special_tokens=False`` (templates write their own BOS).

Truncation to ``max_length`` tokens: the response is cut at its end first; if fewer than
``min_response_tokens`` response tokens would remain, the example does not fit and
:func:`encode_prompt_response` returns ``None`` (callers count and report such drops). Tasks with long
inputs (documents to summarise) shorten the input *before* formatting, so that the prompt fits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch

IGNORE_INDEX = -100

ALPACA_WITH_INPUT = ("Below is an instruction that describes a task, paired with an input that provides further "
                     "context. Write a response that appropriately completes the request.\n\n"
                     "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n")
ALPACA_NO_INPUT = ("Below is an instruction that describes a task. Write a response that appropriately completes "
                   "the request.\n\n### Instruction:\n{instruction}\n\n### Response:\n")


@dataclass(frozen=True)
class PromptParts:
    """What a prompt is made of: the instruction and an optional input (context)."""

    instruction: str
    input: str = ""

    def user_message(self) -> str:
        """The user turn of a chat: instruction, then the input after a blank line."""
        return self.instruction if not self.input else f"{self.instruction}\n\n{self.input}"


def has_chat_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def render_prompt(tokenizer: Any, parts: PromptParts) -> str:
    """The prompt text the model continues (chat template with the generation prompt, or Alpaca's)."""
    if has_chat_template(tokenizer):
        return tokenizer.apply_chat_template([{"role": "user", "content": parts.user_message()}],
                                             tokenize=False, add_generation_prompt=True)
    template = ALPACA_WITH_INPUT if parts.input else ALPACA_NO_INPUT
    return template.format(instruction=parts.instruction, input=parts.input)


def text_ids(tokenizer: Any, text: str) -> list[int]:
    """The token ids of ``text`` as it stands (no special tokens added)."""
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def pad_token_id_of(tokenizer: Any) -> int:
    """The id batches are padded with: the tokenizer's pad token, else its EOS (padding is masked anyway)."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)


def prompt_and_response_ids(tokenizer: Any, parts: PromptParts, response: str) -> tuple[list[int], list[int]]:
    """(prompt token ids, response token ids incl. the end-of-turn / EOS token), untruncated."""
    prompt_text = render_prompt(tokenizer, parts)
    prompt = text_ids(tokenizer, prompt_text)
    if has_chat_template(tokenizer):
        full_text = tokenizer.apply_chat_template(
            [{"role": "user", "content": parts.user_message()}, {"role": "assistant", "content": response}],
            tokenize=False)
        full = text_ids(tokenizer, full_text)
        if full[:len(prompt)] == prompt and len(full) > len(prompt):
            return prompt, full[len(prompt):]
        # a template whose rendering of the prompt is not a prefix of the conversation: tokenise the parts
    eos = tokenizer.eos_token_id
    response_ids = text_ids(tokenizer, response) + ([eos] if eos is not None else [])
    return prompt, response_ids


def encode_prompt_response(tokenizer: Any, parts: PromptParts, response: str, *, max_length: int,
                           min_response_tokens: int = 1) -> dict[str, list[int]] | None:
    """``{"input_ids", "attention_mask", "labels"}`` for one example (see the module doc), or ``None`` when the
    prompt leaves fewer than ``min_response_tokens`` of the ``max_length`` budget for the response."""
    if max_length < 2:
        raise ValueError(f"max_length must be ≥ 2, got {max_length}")
    prompt, resp = prompt_and_response_ids(tokenizer, parts, response)
    room = max_length - len(prompt)
    if room < max(1, min_response_tokens):
        return None
    resp = resp[:room]
    ids = prompt + resp
    return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": [IGNORE_INDEX] * len(prompt) + resp}


def pad_batch(items: Sequence[dict[str, Sequence[int]]], pad_token_id: int, *, side: str = "right") -> dict[str, Any]:
    """Pad ``input_ids`` / ``attention_mask`` / ``labels`` lists to the longest item, as int64 tensors
    (``labels`` padded with −100, ``attention_mask`` with 0). ``side="left"`` pads in front (generation).
    ``labels`` get their own width: an encoder-decoder's summary is shorter than its document (for a causal
    LM the two widths are the same)."""
    if side not in ("left", "right"):
        raise ValueError(f"side must be 'left' or 'right', got {side!r}")
    fill = {"input_ids": pad_token_id, "attention_mask": 0, "labels": IGNORE_INDEX}
    batch = {}
    for key in ("input_ids", "attention_mask", "labels"):
        if key not in items[0]:
            continue
        rows = []
        width = max(len(it["labels" if key == "labels" else "input_ids"]) for it in items)
        for it in items:
            row, pad = list(it[key]), [fill[key]] * (width - len(it[key]))
            rows.append(pad + row if side == "left" else row + pad)
        batch[key] = torch.tensor(rows, dtype=torch.long)
    return batch
