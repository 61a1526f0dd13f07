"""Prompt → response tasks for a causal LM (instruction tuning, and the base of other generation tasks).

Records are :class:`~asymlora.data.instructions.InstructionRecord` (an instruction, an optional input, the
response). A split is encoded
with :func:`asymlora.tasks.lm_format.encode_prompt_response` — the tokenizer's chat template when it has one,
else the Alpaca template; labels −100 on the prompt, so training minimises

    L = − Σ_t log p(response_t | prompt, response_<t) / (number of response tokens)

Examples whose prompt leaves no room under ``max_length`` are dropped and counted (``dataset.dropped``).
Evaluation is the same loss over a whole split (selection: lower is better), with its perplexity and the
share of response tokens predicted exactly (``token_accuracy``). Tasks that score the tuned model on
something else at test time (MMLU questions, generated summaries) subclass this and override
:meth:`PromptResponseTask.encode` / :meth:`PromptResponseTask.evaluate` for those splits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from torch.utils.data import Dataset

from asymlora.data.instructions import InstructionRecord
from asymlora.evaluation.predict import lm_loss_and_accuracy
from asymlora.tasks.lm_format import PromptParts, encode_prompt_response, pad_batch, pad_token_id_of
from asymlora.tasks.protocol import EvalContext, Evaluation, Limits, SplitsMixin, TaskProtocol, fingerprint_of, subset

DEFAULT_MAX_LENGTH = 256


class LMDataset(Dataset):
    """Token ids and labels (ragged lists), padded per batch on the right; ``dropped`` examples did not fit."""

    def __init__(self, items: list[dict[str, list[int]]], pad_token_id: int, dropped: int = 0) -> None:
        self.items = items
        self.pad_token_id = pad_token_id
        self.dropped = dropped
        self.lengths = [len(it["input_ids"]) for it in items]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, list[int]]:
        return self.items[i]

    def collate(self, items: Sequence[dict[str, list[int]]]):
        return pad_batch(items, self.pad_token_id)


def encode_records(records: Sequence[InstructionRecord], tokenizer: Any, max_length: int) -> LMDataset:
    """Encode prompt → response records (see the module doc)."""
    items, dropped = [], 0
    for rec in records:
        enc = encode_prompt_response(tokenizer, PromptParts(rec.instruction, rec.input), rec.response, max_length=max_length)
        if enc is None:
            dropped += 1
        else:
            items.append(enc)
    return LMDataset(items, pad_token_id_of(tokenizer), dropped)


@dataclass
class PromptResponseTask(SplitsMixin, TaskProtocol):
    """Fixed splits of :class:`~asymlora.data.instructions.InstructionRecord` records, trained and scored by the response-only LM loss."""

    name: str
    splits: dict[str, list[InstructionRecord]]
    extra_test_sets: dict[str, list[InstructionRecord]] = field(default_factory=dict)
    source: str = ""
    description: str = ""

    head = "causal-lm"
    primary_metric = "loss"
    default_max_length = DEFAULT_MAX_LENGTH

    def __post_init__(self) -> None:
        self.check_splits()

    @property
    def report_metrics(self) -> tuple[str, ...]:
        return ("perplexity", "token_accuracy")

    def encode(self, split: str, preprocessor: Any, limits: Limits) -> LMDataset:
        records = subset(self.part(split), limits.max_examples, limits.subset_seed)
        data = encode_records(records, preprocessor, limits.max_length or self.default_max_length)
        if not len(data):
            raise ValueError(f"task {self.name!r}: no example of split {split!r} fits in "
                             f"{limits.max_length or self.default_max_length} tokens; raise --max-length")
        return data

    def evaluate(self, model: Any, data: LMDataset, ctx: EvalContext) -> Evaluation:
        return Evaluation(lm_loss_and_accuracy(model, data, ctx, collate=data.collate, shifted=True))

    def summary(self) -> dict[str, Any]:
        sets = {**self.splits, **self.extra_test_sets}
        return {"name": self.name, "head": self.head, "primary_metric": self.primary_metric,
                "selection_metric": self.selection_metric, "source": self.source,
                "sizes": {k: len(v) for k, v in sets.items()},
                "fingerprint": fingerprint_of({k: [[r.instruction, r.input, r.response] for r in v]
                                               for k, v in sets.items()})}
