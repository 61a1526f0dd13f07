"""Prompt → response encoding for causal LMs: response-only loss masking, templates, truncation."""

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from asymlora.tasks.lm_format import IGNORE_INDEX, PromptParts, encode_prompt_response, pad_batch, render_prompt

WORDS = ["<pad>", "<eos>", "<|user|>", "<|assistant|>", "<|end|>", "Below", "is", "an", "instruction", "that",
         "describes", "a", "task.", "Write", "response", "appropriately", "completes", "the", "request.", "###",
         "Instruction:", "Response:", "Input:", "add", "two", "and", "three", "five", "paired", "with", "input",
         "provides", "further", "context.", "task,", "numbers"]


def word_tokenizer(chat: bool):
    vocab = {w: i for i, w in enumerate(WORDS)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    t = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>")
    if chat:
        t.chat_template = ("{% for m in messages %}{{ '<|' + m['role'] + '|> ' + m['content'] + ' <|end|> ' }}"
                           "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|> ' }}{% endif %}")
    return t


def test_chat_template_prompt_tokens_get_label_minus_100():
    tok = word_tokenizer(chat=True)
    enc = encode_prompt_response(tok, PromptParts("add two and three"), "five", max_length=32)
    ids = lambda s: tok(s, add_special_tokens=False)["input_ids"]  # noqa: E731
    prompt = ids("<|user|> add two and three <|end|> <|assistant|>")
    assert enc["input_ids"] == prompt + ids("five <|end|>")
    # the loss falls on the response and the template's end-of-turn marker only
    assert enc["labels"] == [IGNORE_INDEX] * len(prompt) + ids("five <|end|>")
    assert enc["attention_mask"] == [1] * len(enc["input_ids"])


def test_alpaca_template_without_chat_template_ends_with_eos():
    tok = word_tokenizer(chat=False)
    parts = PromptParts("add two numbers", input="two and three")
    text = render_prompt(tok, parts)
    assert text.startswith("Below is an instruction that describes a task, paired with an input")
    assert "### Input:\ntwo and three\n\n### Response:\n" in text
    enc = encode_prompt_response(tok, parts, "five", max_length=64)
    n_prompt = len(tok(text, add_special_tokens=False)["input_ids"])
    assert enc["labels"][:n_prompt] == [IGNORE_INDEX] * n_prompt
    assert enc["labels"][n_prompt:] == [WORDS.index("five"), tok.eos_token_id]
    assert "### Input" not in render_prompt(tok, PromptParts("add two numbers"))


def test_truncation_cuts_the_response_end_and_drops_examples_that_do_not_fit():
    tok = word_tokenizer(chat=True)
    full = encode_prompt_response(tok, PromptParts("add two and three"), "five five five", max_length=64)
    n = len(full["input_ids"])
    cut = encode_prompt_response(tok, PromptParts("add two and three"), "five five five", max_length=n - 2)
    assert cut["input_ids"] == full["input_ids"][:n - 2] and cut["labels"] == full["labels"][:n - 2]
    prompt_len = full["labels"].count(IGNORE_INDEX)
    assert encode_prompt_response(tok, PromptParts("add two and three"), "five", max_length=prompt_len) is None
    assert encode_prompt_response(tok, PromptParts("add two and three"), "five five five",
                                  max_length=prompt_len + 1, min_response_tokens=2) is None


def test_pad_batch_right_and_left():
    items = [{"input_ids": [5, 6, 7], "attention_mask": [1, 1, 1], "labels": [-100, 6, 7]},
             {"input_ids": [5], "attention_mask": [1], "labels": [5]}]
    right = pad_batch(items, pad_token_id=0)
    assert right["input_ids"].tolist() == [[5, 6, 7], [5, 0, 0]]
    assert right["labels"].tolist() == [[-100, 6, 7], [5, -100, -100]]
    assert right["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    left = pad_batch(items, pad_token_id=0, side="left")
    assert left["input_ids"].tolist() == [[5, 6, 7], [0, 0, 5]] and left["input_ids"].dtype == torch.long
    with pytest.raises(ValueError, match="side"):
        pad_batch(items, 0, side="middle")
