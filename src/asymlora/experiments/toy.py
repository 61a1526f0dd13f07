"""A toy text task and a tiny BERT, built locally in a second: for tests, examples and dry runs.

``toy_task()`` is a synthetic sentiment task: sentences of 4–10 words drawn from a small vocabulary of
positive, negative and neutral words, with one to three sentiment words of one polarity; the label is
1 for positive (``kind="regression"``: the score is +count or −count). ``write_toy_model(folder)`` writes a randomly
initialised 2-layer BERT (hidden 32) and its word-level tokenizer as a Hugging Face folder, so that
every command accepts ``--model FOLDER`` with it; ``write_toy_csv(path)`` writes the task as a CSV
file usable as ``--task PATH``.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path
from typing import Any

POSITIVE = ("good", "great", "fine", "superb", "lovely", "bright", "warm", "fun", "nice", "clever")
NEGATIVE = ("bad", "awful", "dull", "poor", "ugly", "weak", "cold", "sad", "boring", "messy")
NEUTRAL = ("the", "a", "film", "plot", "actor", "scene", "story", "music", "and", "was", "it", "is", "very",
           "quite", "this", "movie", "ending", "cast")
SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def toy_examples(n: int, seed: int = 0, kind: str = "classification") -> list[Any]:
    from asymlora.data import Example

    rng = random.Random(seed)
    out, seen = [], set()
    while len(out) < n:
        words = [rng.choice(NEUTRAL) for _ in range(rng.randint(2, 6))]
        positive = rng.random() < 0.5
        pos, neg = (rng.randint(1, 3), 0) if positive else (0, rng.randint(1, 3))
        words += [rng.choice(POSITIVE) for _ in range(pos)] + [rng.choice(NEGATIVE) for _ in range(neg)]
        rng.shuffle(words)
        text = " ".join(words)
        if text in seen:
            continue
        seen.add(text)
        label: int | float = int(pos > neg) if kind == "classification" else float(pos - neg)
        out.append(Example(text, label, uid=f"toy-{len(out)}"))
    return out


def toy_task(n_train: int = 256, n_val: int = 64, n_test: int = 64, seed: int = 0, kind: str = "classification",
             extra_test: bool = False):
    """The toy task with fixed splits (and, with ``extra_test``, an out-of-domain-style extra set)."""
    from asymlora.data import Task

    exs = toy_examples(n_train + n_val + n_test + (n_test if extra_test else 0), seed, kind)
    splits = {"train": exs[:n_train], "validation": exs[n_train:n_train + n_val],
              "test": exs[n_train + n_val:n_train + n_val + n_test]}
    extra = {"shifted": exs[n_train + n_val + n_test:]} if extra_test else {}
    return Task(name="toy" if kind == "classification" else "toy-score", kind=kind, splits=splits,
                label_names=("negative", "positive") if kind == "classification" else (),
                primary_metric="accuracy" if kind == "classification" else "pearson",
                extra_test_sets=extra, source="asymlora.experiments.toy", description="synthetic toy sentiment")


def toy_tokenizer(folder: str | Path | None = None):
    """A WordPiece tokenizer over the toy vocabulary (no files left behind unless ``folder`` is given)."""
    import tempfile

    from transformers import BertTokenizerFast

    words = SPECIALS + POSITIVE + NEGATIVE + NEUTRAL
    if folder is not None:
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / "vocab.txt").write_text("\n".join(words) + "\n")
    try:  # transformers >= 5 takes the vocabulary itself
        return BertTokenizerFast(vocab={w: i for i, w in enumerate(words)}, do_lower_case=True)
    except TypeError:  # transformers 4.x: a vocabulary file, read at construction
        with tempfile.TemporaryDirectory(prefix="asymlora-toy-tok-") as tmp:
            (Path(tmp) / "vocab.txt").write_text("\n".join(words) + "\n")
            return BertTokenizerFast(vocab_file=str(Path(tmp) / "vocab.txt"), do_lower_case=True)


def toy_model(num_labels: int = 2, seed: int = 0, kind: str = "classification"):
    """A tiny BERT classifier (2 layers, hidden 32) over the toy vocabulary, random except for one planted
    "pretrained" feature: the word embeddings of positive and negative words lean in opposite
    directions, so that there is something for adapters to pick up in a few steps."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    words = SPECIALS + POSITIVE + NEGATIVE + NEUTRAL
    cfg = BertConfig(vocab_size=len(words), hidden_size=32, num_hidden_layers=2,
                     num_attention_heads=4, intermediate_size=64, max_position_embeddings=64,
                     num_labels=1 if kind == "regression" else num_labels,
                     problem_type="regression" if kind == "regression" else "single_label_classification")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = BertForSequenceClassification(cfg)
        direction = torch.randn(cfg.hidden_size)
        direction = direction / direction.norm()
        with torch.no_grad():
            emb = model.bert.embeddings.word_embeddings.weight
            for i, w in enumerate(words):
                sign = 1.0 if w in POSITIVE else -1.0 if w in NEGATIVE else 0.0
                emb[i] += 0.5 * sign * direction
    return model


def write_toy_model(folder: str | Path) -> Path:
    """Write the tiny BERT (with a 2-class head, which ``load_model`` replaces per task) and its tokenizer."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    toy_model().save_pretrained(str(folder))
    toy_tokenizer(folder).save_pretrained(str(folder))
    return folder


def write_toy_csv(path: str | Path, n: int = 384, seed: int = 0, kind: str = "classification") -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        for ex in toy_examples(n, seed, kind):
            w.writerow([ex.text, ex.label])
    return path


def toy_loader(kind: str = "classification"):
    """A model loader for :func:`asymlora.experiments.run.run`: a fresh tiny BERT per call."""
    tok = toy_tokenizer()

    def load(spec, task):
        return toy_model(num_labels=getattr(task, "num_labels", 2), seed=spec.seed, kind=task.kind), tok

    return load
