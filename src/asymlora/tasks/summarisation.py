r"""Summarisation (the paper's Table 6): train on document → summary pairs, score generated summaries by ROUGE.

One task, two model families (the loader picks the first head the model takes, :attr:`SummarisationTask.heads`):

- **causal-lm** (decoder-only, e.g. SmolLM2): the example is ``prompt ‖ summary`` with the prompt = the task's
  instruction and the document (:mod:`asymlora.tasks.lm_format`: the chat template when the tokenizer has one,
  else Alpaca's) and labels −100 on the prompt, so training minimises the summary tokens' loss only,
  L = −Σ_t log p(s_t | prompt, s_<t) / |s| (the end-of-turn token included).
- **seq2seq-lm** (any ``AutoModelForSeq2SeqLM``, e.g. BART): encoder input = the document, labels = the summary
  (+ EOS); the model's own cross-entropy.

Truncation (long documents, ``max_length`` = L tokens, ``max_summary_tokens`` = S): for a causal LM the
document is cut to its first L − S − T tokens, T the prompt template's own tokens, and decoded back to text
before formatting (so the prompt, the summary's S tokens and the end token fit in L; a summary longer than its
room is cut at its end). For an encoder-decoder the document is cut to its first L tokens and the summary to
S. An example that still does not fit is dropped and counted (``dataset.dropped``).

Evaluation of a split: the summary loss (``loss``, ``perplexity``, ``token_accuracy``), and — on the test
sets, and on validation when ``select_on`` is a ROUGE score (never on train) — summaries generated from the prompts alone
(:mod:`asymlora.evaluation.generate`, settings :class:`~asymlora.evaluation.generate.GenerationSettings`),
scored against the references with ROUGE-1/2/L/Lsum F (:mod:`asymlora.evaluation.rouge`): their means, 95 %
bootstrap intervals (``rougeL_low`` / ``rougeL_high`` …), ``generation_docs_per_s``, and one record per document
``{id, reference, generated, rouge1, rouge2, rougeL, rougeLsum}`` (the run writes them to predictions.jsonl).
The headline metric is ``rougeL``; an epoch and a learning rate are chosen on validation ``loss`` (default,
cheap) or on a ROUGE score (``select_on``).

Built-in tasks: ``xsum`` (BIG-bench gem/xsum, 751 / 50 / 200) and ``cnn-dm`` (the CNN/DM references of
BIG-bench factuality_of_summary, 90 / 15 / 45; its report adds ROUGE-Lsum), and a user's file with
``task_kind=summarisation`` (:func:`summary_file_task`). Every option can be given with ``--task-option``.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asymlora.data.summaries import (
    CNN_DM_FRACTIONS,
    XSUM_FRACTIONS,
    SummaryPair,
    dedupe_pairs,
    load_cnn_dm,
    load_gem_xsum,
    load_summary_file,
    split_pairs,
)
from asymlora.data.task import DataError, require_splits, task_option
from asymlora.data.userfile import with_file_splits
from asymlora.evaluation.generate import GenerationSettings, generate_ids
from asymlora.evaluation.predict import lm_loss_and_accuracy
from asymlora.evaluation.rouge import ROUGE_TYPES, rouge_records, rouge_summary
from asymlora.tasks.causal_lm import LMDataset
from asymlora.tasks.lm_format import (
    IGNORE_INDEX,
    PromptParts,
    encode_prompt_response,
    pad_token_id_of,
    render_prompt,
    text_ids,
)
from asymlora.tasks.protocol import EvalContext, Evaluation, Limits, SplitsMixin, TaskProtocol, fingerprint_of, subset

__all__ = ["SummaryDataset", "SummarisationTask", "xsum_task", "cnn_dm_task", "summary_file_task"]

DEFAULT_MAX_LENGTH = 512
DEFAULT_SUMMARY_TOKENS = 64
XSUM_INSTRUCTION = "Summarize the following news article in one sentence."
CNN_DM_INSTRUCTION = "Summarize the following news article in a few short highlights, one per line."
FILE_INSTRUCTION = "Summarize the following document."
SELECT_ON = ("loss", *ROUGE_TYPES)


class SummaryDataset(LMDataset):
    """Training items (ids, mask, labels) and, per document, the generation prompt, the reference and its id;
    ``generate``: whether evaluating this split generates summaries."""

    def __init__(self, items: list[dict[str, list[int]]], prompts: list[list[int]], references: list[str],
                 uids: list[str], tokenizer: Any, *, generate: bool, dropped: int = 0) -> None:
        super().__init__(items, pad_token_id_of(tokenizer), dropped)
        self.prompts, self.references, self.uids = prompts, references, uids
        self.tokenizer = tokenizer
        self.generate = generate


@dataclass
class SummarisationTask(SplitsMixin, TaskProtocol):
    """Fixed splits of :class:`~asymlora.data.summaries.SummaryPair` (see the module doc)."""

    name: str
    splits: dict[str, list[SummaryPair]]
    instruction: str = XSUM_INSTRUCTION
    generation: GenerationSettings = field(default_factory=GenerationSettings)
    max_summary_tokens: int = DEFAULT_SUMMARY_TOKENS
    select_on: str = "loss"
    lsum: bool = False  # report ROUGE-Lsum too (multi-sentence summaries)
    head: str = "causal-lm"
    extra_test_sets: dict[str, list[SummaryPair]] = field(default_factory=dict)
    source: str = ""
    description: str = ""

    primary_metric = "rougeL"
    default_max_length = DEFAULT_MAX_LENGTH

    def __post_init__(self) -> None:
        self.check_splits()
        if self.select_on not in SELECT_ON:
            raise DataError(f"select_on={self.select_on!r}: choose one of {', '.join(SELECT_ON)}")
        if self.max_summary_tokens < 1:
            raise DataError(f"max_summary_tokens must be ≥ 1, got {self.max_summary_tokens}")

    # --- metrics and heads ----------------------------------------------------------------------------
    @property
    def selection_metric(self) -> str:
        return self.select_on

    @property
    def report_metrics(self) -> tuple[str, ...]:
        return ("rouge1", "rouge2", "rougeL") + (("rougeLsum",) if self.lsum else ())

    @property
    def heads(self) -> tuple[str, ...]:
        return ("causal-lm", "seq2seq-lm")

    def with_head(self, head: str) -> "SummarisationTask":
        if head not in self.heads:
            raise ValueError(f"task {self.name!r} works with the heads {', '.join(self.heads)}, not {head!r}")
        return self if head == self.head else dataclasses.replace(self, head=head)

    # --- encoding -------------------------------------------------------------------------------------
    def _generates(self, split: str) -> bool:
        """Summaries are generated for the test sets, and for validation when selection is on a ROUGE score;
        the train split is scored by its loss only (generating for every training document would cost more
        than the training)."""
        if split == "train":
            return False
        return split != "validation" or self.select_on != "loss"

    def encode(self, split: str, preprocessor: Any, limits: Limits) -> SummaryDataset:
        pairs = subset(self.part(split), limits.max_examples, limits.subset_seed)
        max_length = limits.max_length or self.default_max_length
        encode_one = self._encode_causal if self.head == "causal-lm" else self._encode_seq2seq
        items, prompts, refs, uids, dropped = [], [], [], [], 0
        for pair in pairs:
            enc = encode_one(preprocessor, pair, max_length)
            if enc is None:
                dropped += 1
                continue
            items.append(enc[0])
            prompts.append(enc[1])
            refs.append(pair.summary)
            uids.append(pair.uid)
        if not items:
            raise ValueError(f"task {self.name!r}: no example of split {split!r} fits in {max_length} tokens; "
                             f"raise --max-length or lower max_summary_tokens")
        return SummaryDataset(items, prompts, refs, uids, preprocessor, generate=self._generates(split),
                              dropped=dropped)

    def document_budget(self, tokenizer: Any, max_length: int) -> int:
        """Tokens of the document a causal-LM example keeps: L − S − T (see the module doc)."""
        template = len(text_ids(tokenizer, render_prompt(tokenizer, PromptParts(self.instruction, "."))))
        return max_length - self.max_summary_tokens - template

    def _encode_causal(self, tokenizer: Any, pair: SummaryPair, max_length: int):
        budget = self.document_budget(tokenizer, max_length)
        if budget < 1:
            return None
        doc_ids = text_ids(tokenizer, pair.document)
        document = pair.document if len(doc_ids) <= budget else tokenizer.decode(doc_ids[:budget]).strip()
        enc = encode_prompt_response(tokenizer, PromptParts(self.instruction, document), pair.summary,
                                     max_length=max_length)
        if enc is None:
            return None
        n_prompt = next((i for i, y in enumerate(enc["labels"]) if y != IGNORE_INDEX), len(enc["labels"]))
        return enc, enc["input_ids"][:n_prompt]

    def _encode_seq2seq(self, tokenizer: Any, pair: SummaryPair, max_length: int):
        source = list(tokenizer(pair.document, truncation=True, max_length=max_length)["input_ids"])
        target = list(tokenizer(text_target=pair.summary, truncation=True,
                                max_length=self.max_summary_tokens)["input_ids"])
        eos = tokenizer.eos_token_id
        if eos is not None and (not target or target[-1] != eos):
            target = target[:self.max_summary_tokens - 1] + [eos]
        item = {"input_ids": source, "attention_mask": [1] * len(source), "labels": target}
        return item, source

    # --- evaluation -----------------------------------------------------------------------------------
    def evaluate(self, model: Any, data: SummaryDataset, ctx: EvalContext) -> Evaluation:
        seq2seq = self.head == "seq2seq-lm"
        metrics = lm_loss_and_accuracy(model, data, ctx, collate=data.collate, shifted=not seq2seq,
                                       feed_labels=seq2seq)
        if not data.generate:
            return Evaluation(metrics)
        tok = data.tokenizer
        started = time.monotonic()
        ids = generate_ids(model, data.prompts, self.generation, pad_token_id=data.pad_token_id,
                           eos_token_id=tok.eos_token_id, encoder_decoder=seq2seq, accelerator=ctx.accelerator,
                           progress=ctx.progress and ctx.accelerator.is_local_main_process,
                           desc=f"{ctx.desc} generate")
        seconds = time.monotonic() - started
        generated = [tok.decode(row, skip_special_tokens=True).strip() for row in ids]
        scores = rouge_records(data.references, generated)
        records = [{"id": uid, "reference": ref, "generated": gen, **s}
                   for uid, ref, gen, s in zip(data.uids, data.references, generated, scores)]
        metrics.update(rouge_summary(scores))
        metrics["generation_docs_per_s"] = len(generated) / seconds if seconds > 0 else float("nan")
        return Evaluation(metrics, records)

    # --- provenance -----------------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        sets = {**self.splits, **self.extra_test_sets}
        return {"name": self.name, "head": self.head, "primary_metric": self.primary_metric,
                "selection_metric": self.selection_metric, "source": self.source,
                "instruction": self.instruction, "max_summary_tokens": self.max_summary_tokens,
                "generation": self.generation.to_dict(),
                "sizes": {k: len(v) for k, v in sets.items()},
                "fingerprint": fingerprint_of({k: [[p.document, p.summary] for p in v] for k, v in sets.items()})}


def _task(name: str, splits: dict[str, list[SummaryPair]], *, instruction: str, source: str, description: str,
          lsum: bool, max_summary_tokens: Any, max_new_tokens: Any, num_beams: Any, no_repeat_ngram_size: Any,
          length_penalty: Any, generation_batch_size: Any, select_on: str) -> SummarisationTask:
    generation = GenerationSettings(max_new_tokens=task_option(max_new_tokens, "max_new_tokens", int),
                                    num_beams=task_option(num_beams, "num_beams", int),
                                    no_repeat_ngram_size=task_option(no_repeat_ngram_size, "no_repeat_ngram_size", int),
                                    length_penalty=task_option(length_penalty, "length_penalty", float),
                                    batch_size=task_option(generation_batch_size, "generation_batch_size", int))
    return SummarisationTask(name=name, splits=splits, instruction=instruction, generation=generation,
                             max_summary_tokens=task_option(max_summary_tokens, "max_summary_tokens", int),
                             select_on=str(select_on), lsum=lsum, source=source, description=description)


def xsum_task(*, seed: Any = 0, instruction: str = XSUM_INSTRUCTION, max_summary_tokens: Any = DEFAULT_SUMMARY_TOKENS,
              max_new_tokens: Any = DEFAULT_SUMMARY_TOKENS, num_beams: Any = 1, no_repeat_ngram_size: Any = 0,
              length_penalty: Any = 1.0, generation_batch_size: Any = 8, select_on: str = "loss") -> SummarisationTask:
    """``xsum``: BIG-bench gem/xsum, split 751 / 50 / 200 by ``seed`` (see the module doc for the options)."""
    pairs = load_gem_xsum()
    return _task("xsum", split_pairs(pairs, XSUM_FRACTIONS, seed=task_option(seed, "seed", int)), instruction=instruction,
                 source=pairs[0].source, description="XSum: BBC article → one-sentence summary (BIG-bench gem/xsum)",
                 lsum=False, max_summary_tokens=max_summary_tokens, max_new_tokens=max_new_tokens, num_beams=num_beams,
                 no_repeat_ngram_size=no_repeat_ngram_size, length_penalty=length_penalty,
                 generation_batch_size=generation_batch_size, select_on=select_on)


def cnn_dm_task(*, seed: Any = 0, instruction: str = CNN_DM_INSTRUCTION, max_summary_tokens: Any = 128,
                max_new_tokens: Any = 128, num_beams: Any = 1, no_repeat_ngram_size: Any = 0, length_penalty: Any = 1.0,
                generation_batch_size: Any = 8, select_on: str = "loss") -> SummarisationTask:
    """``cnn-dm``: the 150 CNN/DM references of BIG-bench factuality_of_summary, split 90 / 15 / 45 by ``seed``."""
    pairs = load_cnn_dm()
    return _task("cnn-dm", split_pairs(pairs, CNN_DM_FRACTIONS, seed=task_option(seed, "seed", int)),
                 instruction=instruction, source=pairs[0].source,
                 description="CNN/DailyMail: article → highlights (BIG-bench factuality_of_summary references)",
                 lsum=True, max_summary_tokens=max_summary_tokens, max_new_tokens=max_new_tokens, num_beams=num_beams,
                 no_repeat_ngram_size=no_repeat_ngram_size, length_penalty=length_penalty,
                 generation_batch_size=generation_batch_size, select_on=select_on)


def summary_file_task(path: str | Path, *, document_column: str = "document", summary_column: str = "summary",
                      split_column: str = "split", seed: Any = 0, instruction: str = FILE_INSTRUCTION,
                      max_summary_tokens: Any = DEFAULT_SUMMARY_TOKENS, max_new_tokens: Any = DEFAULT_SUMMARY_TOKENS,
                      num_beams: Any = 1, no_repeat_ngram_size: Any = 0, length_penalty: Any = 1.0,
                      generation_batch_size: Any = 8, select_on: str = "loss", lsum: Any = False) -> SummarisationTask:
    """A user's .jsonl / .csv / .tsv of (document, summary) pairs (``--task-option task_kind=summarisation``): its
    ``split`` column's splits (a missing validation / test split carved out of train), else 80 / 10 / 10 by
    ``seed``; a repeated document keeps its first pair."""
    pairs, split_of = load_summary_file(path, document_column=document_column, summary_column=summary_column,
                                        split_column=split_column)
    kept, _ = dedupe_pairs(pairs)
    keep = {id(p) for p in kept}
    split_of = [s for p, s in zip(pairs, split_of) if id(p) in keep]
    seed = task_option(seed, "seed", int)
    fractions = (0.8, 0.1, 0.1)
    if any(s is not None for s in split_of):
        if any(s is None for s in split_of):
            raise DataError(f"the {split_column!r} column is empty on some rows: name a split on every row or none",
                            str(path))
        splits = with_file_splits(Path(path), kept, split_of, fractions, seed, False, split_column)
    else:
        splits = split_pairs(kept, fractions, seed=seed)
    require_splits(splits, str(path))
    return _task(Path(path).stem, splits, instruction=instruction, source=str(path),
                 description=f"summaries from {path}", lsum=str(lsum).lower() in ("1", "true", "yes"),
                 max_summary_tokens=max_summary_tokens, max_new_tokens=max_new_tokens, num_beams=num_beams,
                 no_repeat_ngram_size=no_repeat_ngram_size, length_penalty=length_penalty,
                 generation_batch_size=generation_batch_size, select_on=select_on)
