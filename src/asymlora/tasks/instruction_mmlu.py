r"""Instruction tuning scored zero-shot on MMLU: the paper's Table 8 as a task of the common pipeline.

Train and validation are prompt → response records (:class:`~asymlora.data.instructions.InstructionRecord`),
trained by the response-only loss; the learning rate and epoch are chosen on the validation **loss**, never on
MMLU. The test split is a fixed set of MMLU questions (:func:`asymlora.data.mmlu.subset`, the same questions
for every method and seed), scored by :func:`asymlora.evaluation.mmlu.score_mmlu` with each of ``scorers``.

Test metrics, per scorer ``s`` (fractions; reports show percentages)::

    s_accuracy                 every question pooled (Table 8's "Average")
    s_<category>_accuracy      humanities, stem, social_sciences, other
    s_subject_mean_accuracy    the unweighted mean over subjects
    s_accuracy_low / _high     the 95 % bootstrap interval of s_accuracy (resampled within subjects)

The headline (``primary_metric``) is the first scorer's average. Each run writes one record per question to
``predictions.jsonl`` (``subject``, ``index`` — the line in ``mmlu.jsonl`` —, ``answer`` and per scorer the
``choice`` and four ``logprobs``), so anyone can re-score it. The training split is evaluated by the
instruction loss (there is no MMLU accuracy of training data), so a run's train − test gap is empty here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from torch.utils.data import Dataset

from asymlora.data.instructions import (
    dedupe_records,
    load_instruction_file,
    load_natural_instructions,
    split_records,
    without_mmlu_overlap,
)
from asymlora.data.mmlu import CATEGORIES, MMLUQuestion, load_mmlu
from asymlora.data.mmlu import subset as mmlu_subset
from asymlora.data.task import DataError, task_option
from asymlora.evaluation.mmlu import SCORERS, category_key, flat_metrics, score_mmlu, summarise
from asymlora.sources.pins import FOLDERS
from asymlora.tasks.causal_lm import PromptResponseTask
from asymlora.tasks.protocol import EvalContext, Evaluation, Limits, fingerprint_of, subset

MMLU_BATCH = 8  # prompts per forward pass when scoring (their logits over the vocabulary are kept)


class MMLUQuestions(Dataset):
    """An encoded MMLU test split: the questions and the tokenizer that will build their prompts."""

    def __init__(self, questions: Sequence[MMLUQuestion], tokenizer: Any) -> None:
        self.questions = list(questions)
        self.tokenizer = tokenizer

    def __len__(self) -> int:
        return len(self.questions)

    def __getitem__(self, i: int) -> MMLUQuestion:
        return self.questions[i]


@dataclass
class InstructionMMLUTask(PromptResponseTask):
    """Prompt → response training and validation records; MMLU questions as the test split (module doc)."""

    scorers: tuple[str, ...] = ("letter", "cloze", "cloze_norm")

    def __post_init__(self) -> None:
        super().__post_init__()
        unknown = [s for s in self.scorers if s not in SCORERS]
        if unknown or not self.scorers:
            raise ValueError(f"task {self.name!r}: unknown scorer(s) {unknown or list(self.scorers)}; "
                             f"use some of {', '.join(SCORERS)}")
        if not all(isinstance(q, MMLUQuestion) for q in self.splits["test"]):
            raise TypeError(f"task {self.name!r}: the test split must hold MMLU questions")

    @property
    def primary_metric(self) -> str:  # type: ignore[override]
        return f"{self.scorers[0]}_accuracy"

    @property
    def selection_metric(self) -> str:
        return "loss"

    @property
    def report_metrics(self) -> tuple[str, ...]:
        cats = [category_key(c) for c in CATEGORIES]
        return tuple(f"{s}_{c}_accuracy" for s in self.scorers for c in cats) + tuple(
            f"{s}_accuracy" for s in self.scorers)

    def encode(self, split: str, preprocessor: Any, limits: Limits):
        if split != "test":
            return super().encode(split, preprocessor, limits)
        return MMLUQuestions(subset(self.part("test"), limits.max_examples, limits.subset_seed), preprocessor)

    def evaluate(self, model: Any, data: Dataset, ctx: EvalContext) -> Evaluation:
        if not isinstance(data, MMLUQuestions):
            return super().evaluate(model, data, ctx)
        records = score_mmlu(model, data.tokenizer, data.questions, scorers=self.scorers,
                             batch_size=min(ctx.batch_size, MMLU_BATCH))
        metrics: dict[str, float] = {}
        for s in self.scorers:
            metrics.update(flat_metrics(summarise(records, s)))
        return Evaluation(metrics, records)

    def summary(self) -> dict[str, Any]:
        train = {k: [[r.instruction, r.input, r.response] for r in v] for k, v in self.splits.items() if k != "test"}
        test = [q.index for q in self.splits["test"]]
        return {"name": self.name, "head": self.head, "primary_metric": self.primary_metric,
                "selection_metric": self.selection_metric, "source": self.source, "scorers": list(self.scorers),
                "sizes": {k: len(v) for k, v in self.splits.items()},
                "test_subjects": len({q.subject for q in self.splits["test"]}),
                "fingerprint": fingerprint_of({**train, "test": test})}


# --- loaders (the registry's ``natural-instructions`` and instruction files, task_kind=instructions) ------------

def _scorers(value: Any) -> tuple[str, ...]:
    names = tuple(s.strip() for s in value.split(",") if s.strip()) if isinstance(value, str) else tuple(value)
    unknown = [s for s in names if s not in SCORERS]
    if unknown or not names:
        raise DataError(f"task option scorers: unknown scorer(s) {unknown or value!r}; "
                        f"give a comma-separated list of {', '.join(SCORERS)}")
    return names


def instruction_mmlu_task(name: str, records: Sequence[Any], *, source: str, per_subject: Any = 10,
                          validation: Any = 0.05, seed: Any = 0, scorers: Any = "letter,cloze,cloze_norm",
                          description: str = "") -> InstructionMMLUTask:
    """The task from instruction records: repeats dropped, every record sharing a 13-gram with any MMLU question
    dropped (:func:`~asymlora.data.instructions.without_mmlu_overlap`), a seeded train / validation split, and
    ``per_subject`` MMLU questions of each subject as the test split (``all``: the 14,042)."""
    per_subject = task_option(per_subject, "per_subject", int, allow_none=True)
    validation, seed = task_option(validation, "validation", float), task_option(seed, "seed", int)
    questions = load_mmlu()
    kept, _repeats = dedupe_records(records)
    clean, hits = without_mmlu_overlap(kept, questions)
    parts = split_records(clean, validation=validation, seed=seed)
    if not parts["train"] or not parts["validation"]:
        raise DataError(f"task {name!r}: {len(clean)} instruction record(s) after dropping repeats and MMLU "
                        f"overlaps is too few for a train and a validation split; give more records")
    test = mmlu_subset(questions, per_subject, seed=0)
    return InstructionMMLUTask(
        name=name, source=source, scorers=_scorers(scorers),
        description=description or f"{name}: {len(parts['train'])} train / {len(parts['validation'])} validation "
                                   f"instructions ({len({u for u, _ in hits})} dropped for MMLU overlap); "
                                   f"MMLU test {len(test)} questions",
        splits={"train": parts["train"], "validation": parts["validation"],
                "test": test})


def load_natural_instructions_task(per_subtask: Any = 36, per_subject: Any = 10, validation: Any = 0.05,
                                   seed: Any = 0, scorers: Any = "letter,cloze,cloze_norm") -> InstructionMMLUTask:
    """``natural-instructions``: ``per_subtask`` examples of each of BIG-bench's 61 natural_instructions
    subtasks (36: 2,196 records, of which about 1,000 fit in 256 SmolLM2 tokens — many subtasks' definitions
    alone are longer; ``all``: every one), scored on MMLU (see :func:`instruction_mmlu_task`)."""
    per_subtask = task_option(per_subtask, "per_subtask", int, allow_none=True)
    records = load_natural_instructions(per_subtask=per_subtask, seed=task_option(seed, "seed", int))
    pin = FOLDERS["natural-instructions"]
    return instruction_mmlu_task("natural-instructions", records, source=f"{pin.package}=={pin.version}:{pin.folder}",
                                 per_subject=per_subject, validation=validation, seed=seed, scorers=scorers)


def load_instruction_file_task(path: str, per_subject: Any = 10, validation: Any = 0.05, seed: Any = 0,
                               scorers: Any = "letter,cloze,cloze_norm") -> InstructionMMLUTask:
    """A user's instruction JSONL (Alpaca fields or chat ``messages``), scored on MMLU; ``task_kind=instructions``."""
    records = load_instruction_file(path)
    return instruction_mmlu_task(Path(path).stem, records, source=str(path), per_subject=per_subject,
                                 validation=validation, seed=seed, scorers=scorers)
