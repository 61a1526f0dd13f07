"""GLUE tasks by their ``datasets`` names (``glue/sst2``, ``glue/stsb``, ...), for users online.

Needs the ``datasets`` package and access to the Hugging Face hub; neither is needed anywhere
else. GLUE's test labels are hidden, so the official validation set (the set papers usually
report GLUE results on) is the ``test`` split here, and ``validation`` is 10% of the official train set
(seed 0, stratified), so that model selection never sees the reported set. MNLI uses
``validation_matched`` as its test split.
"""

from __future__ import annotations

from typing import Any

from asymlora.data.task import DataError, Example, Task, split_examples

# name: (text field, pair field, label names (empty: regression), primary metric, test split)
GLUE: dict[str, tuple[str, str | None, tuple[str, ...], str, str]] = {
    "cola": ("sentence", None, ("unacceptable", "acceptable"), "mcc", "validation"),
    "sst2": ("sentence", None, ("negative", "positive"), "accuracy", "validation"),
    "mrpc": ("sentence1", "sentence2", ("not_equivalent", "equivalent"), "accuracy", "validation"),
    "qqp": ("question1", "question2", ("not_duplicate", "duplicate"), "accuracy", "validation"),
    "stsb": ("sentence1", "sentence2", (), "pearson", "validation"),
    "mnli": ("premise", "hypothesis", ("entailment", "neutral", "contradiction"), "accuracy", "validation_matched"),
    "qnli": ("question", "sentence", ("entailment", "not_entailment"), "accuracy", "validation"),
    "rte": ("sentence1", "sentence2", ("entailment", "not_entailment"), "accuracy", "validation"),
    "wnli": ("sentence1", "sentence2", ("not_entailment", "entailment"), "accuracy", "validation"),
}
SEED = 0


def _load_dataset(name: str) -> Any:  # separated so that tests can replace it
    try:
        import datasets
    except ImportError:
        raise DataError(f"glue/{name} needs the 'datasets' package and internet access: pip install datasets. "
                        f"Offline, use a built-in task (sentiment, sentiment-score, trec, sms-spam, sarcasm) "
                        f"or your own .csv/.tsv/.jsonl file.") from None
    try:
        return datasets.load_dataset("glue", name)
    except Exception as err:  # network, hub, cache: say what failed and what to do
        raise DataError(f"could not load glue/{name} with datasets.load_dataset ({type(err).__name__}: {err}). "
                        f"Offline, use a built-in task or your own data file.") from err


def load_glue(name: str) -> Task:
    name = name.lower().replace("-", "")
    if name not in GLUE:
        raise DataError(f"unknown GLUE task {name!r}; known: {', '.join(GLUE)}")
    text_f, pair_f, label_names, primary, test_split = GLUE[name]
    ds = _load_dataset(name)
    regression = not label_names

    def convert(split: str) -> list[Example]:
        return [Example(row[text_f], float(row["label"]) if regression else int(row["label"]),
                        row[pair_f] if pair_f else None, uid=f"{split}:{row.get('idx', i)}")
                for i, row in enumerate(ds[split])]

    parts = split_examples(convert("train"), (0.9, 0.1), seed=SEED, stratify=not regression,
                           names=("train", "validation"))
    return Task(
        name=f"glue/{name}", kind="regression" if regression else "classification",
        splits={**parts, "test": convert(test_split)}, label_names=label_names, primary_metric=primary,
        text_fields=("text", "text_pair") if pair_f else ("text",),
        source=f"datasets.load_dataset('glue', '{name}')", description=f"GLUE {name}",
    )
