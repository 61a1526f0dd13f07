"""Toy tasks and tiny models built locally in a second, one per modality, for the tests.

- Text: ``toy_task()`` is a synthetic sentiment task — sentences of 4–10 words from a small vocabulary of
  positive, negative and neutral words, with one to three sentiment words of one polarity; label 1 for
  positive (``kind="regression"``: the score is +count or −count). ``toy_model`` is a 2-layer BERT (hidden 32)
  with a planted "pretrained" sentiment direction; ``write_toy_model(folder)`` / ``write_toy_csv(path)`` write
  them as a Hugging Face folder and a CSV file, so every command accepts ``--model FOLDER`` / ``--task PATH``.
- Causal LM: ``toy_instruction_task()`` — instructions "opposite of W" / "repeat W" answered with one word;
  ``tiny_llama()`` a 2-layer LlamaConfig model over a word-level tokenizer with a chat template.
- Summaries: ``toy_summary_task()`` — documents of 5–9 content words, the summary their first two;
  ``seq2seq_tokenizer()`` (the causal-LM words, EOS appended) and ``tiny_bart()`` a 1+1-layer BART over it,
  ``write_tiny_bart(folder)`` as a Hugging Face folder (``--model FOLDER`` takes the seq2seq head).
- Images: ``toy_image_task()`` — 8×8 grey images of a bright horizontal or vertical bar (2 classes), the
  training environment clean and an extra "noisy" environment with pixel noise (out of domain);
  ``tiny_vit()`` a 2-layer ViT classifier and ``TinyConvNet`` a conv net with the Hugging Face interface.
- ``toy_loader(task, build)`` — an :class:`asymlora.experiments.Loader` holding the task under its name.
"""

from __future__ import annotations

import csv
import random
import tempfile
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import (
    BartConfig,
    BartForConditionalGeneration,
    BertConfig,
    BertForSequenceClassification,
    BertTokenizerFast,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
    ViTConfig,
    ViTForImageClassification,
)
from transformers.modeling_outputs import ImageClassifierOutput

from asymlora.data import Example, Task
from asymlora.data.instructions import InstructionRecord
from asymlora.data.summaries import SummaryPair, split_pairs
from asymlora.evaluation.generate import GenerationSettings
from asymlora.experiments import Loader
from asymlora.models.heads import LoadedModel
from asymlora.models.image_transform import ImageTransform
from asymlora.tasks.causal_lm import PromptResponseTask
from asymlora.tasks.image import ImageSet, ImageTask
from asymlora.tasks.summarisation import SummarisationTask

POSITIVE = ("good", "great", "fine", "superb", "lovely", "bright", "warm", "fun", "nice", "clever")
NEGATIVE = ("bad", "awful", "dull", "poor", "ugly", "weak", "cold", "sad", "boring", "messy")
NEUTRAL = ("the", "a", "film", "plot", "actor", "scene", "story", "music", "and", "was", "it", "is", "very",
           "quite", "this", "movie", "ending", "cast")
SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


# --- text ----------------------------------------------------------------------------------------------
def toy_examples(n: int, seed: int = 0, kind: str = "classification") -> list[Any]:
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
             extra_test: bool = False) -> Task:
    """The toy task with fixed splits (and, with ``extra_test``, an out-of-domain-style extra set)."""
    exs = toy_examples(n_train + n_val + n_test + (n_test if extra_test else 0), seed, kind)
    splits = {"train": exs[:n_train], "validation": exs[n_train:n_train + n_val],
              "test": exs[n_train + n_val:n_train + n_val + n_test]}
    extra = {"shifted": exs[n_train + n_val + n_test:]} if extra_test else {}
    return Task(name="toy" if kind == "classification" else "toy-score", kind=kind, splits=splits,
                label_names=("negative", "positive") if kind == "classification" else (),
                primary_metric="accuracy" if kind == "classification" else "pearson",
                extra_test_sets=extra, source="tests/toy.py", description="synthetic toy sentiment")


def toy_tokenizer(folder: str | Path | None = None):
    """A WordPiece tokenizer over the toy vocabulary (no files left behind unless ``folder`` is given)."""
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


def toy_text_build():
    """``build(spec, task)`` for a :class:`Loader`: a fresh tiny BERT per call, its head seeded by the run seed."""
    tok = toy_tokenizer()

    def build(spec, task):
        model = toy_model(num_labels=getattr(task, "num_labels", 2), seed=spec.seed, kind=task.kind)
        return LoadedModel(model, tok, ("classifier",))

    return build


def toy_loader(task, build=None) -> Loader:
    """A loader that knows ``task`` under its name and builds models with ``build`` (default: the tiny BERT)."""
    return Loader(tasks={task.name: task}, build=build or toy_text_build())


# --- causal LM ------------------------------------------------------------------------------------------
LM_WORDS = ("<pad>", "<eos>", "<|user|>", "<|assistant|>", "<|end|>", "opposite", "of", "repeat", "up", "down",
            "left", "right", "hot", "cold", "big", "small", "fast", "slow", "yes", "no", "in", "out")
OPPOSITES = (("up", "down"), ("left", "right"), ("hot", "cold"), ("big", "small"), ("fast", "slow"),
             ("yes", "no"), ("in", "out"))
CHAT_TEMPLATE = ("{% for m in messages %}{{ '<|' + m['role'] + '|> ' + m['content'] + ' <|end|> ' }}{% endfor %}"
                 "{% if add_generation_prompt %}{{ '<|assistant|> ' }}{% endif %}")


def lm_tokenizer() -> PreTrainedTokenizerFast:
    """A word-level tokenizer over :data:`LM_WORDS` with a chat template (pad and EOS are their own tokens)."""
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(LM_WORDS)}, unk_token="<pad>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    t = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>")
    t.chat_template = CHAT_TEMPLATE
    return t


def instruction_records() -> list[InstructionRecord]:
    """"opposite of W" → its opposite and "repeat W" → W, for each of the 14 words, in both directions."""
    recs = []
    for a, b in OPPOSITES:
        for w, o in ((a, b), (b, a)):
            recs.append(InstructionRecord(f"opposite of {w}", "", o, uid=f"opp-{w}"))
            recs.append(InstructionRecord(f"repeat {w}", "", w, uid=f"rep-{w}"))
    return recs


def toy_instruction_task() -> PromptResponseTask:
    recs = instruction_records()  # 28 records
    rng = random.Random(0)
    rng.shuffle(recs)
    return PromptResponseTask(name="toy-instruct", splits={"train": recs[:20], "validation": recs[20:24],
                                                           "test": recs[24:]},
                              source="tests/toy.py", description="toy instructions")


def tiny_llama(seed: int = 0) -> LlamaForCausalLM:
    cfg = LlamaConfig(vocab_size=len(LM_WORDS), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                      pad_token_id=0, eos_token_id=1, bos_token_id=1, tie_word_embeddings=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return LlamaForCausalLM(cfg).eval()


def tiny_llama_build(spec, task) -> LoadedModel:
    return LoadedModel(tiny_llama(0), lm_tokenizer(), ())


# --- summaries ------------------------------------------------------------------------------------------
CONTENT_WORDS = LM_WORDS[8:]  # up ... out


def summary_pairs(n: int = 40, seed: int = 0) -> list[SummaryPair]:
    """``n`` documents of 5–9 content words; each summary is the document's first two words."""
    rng = random.Random(seed)
    docs = [" ".join(rng.choice(CONTENT_WORDS) for _ in range(rng.randint(5, 9))) for _ in range(n)]
    return [SummaryPair(d, " ".join(d.split()[:2]), f"toy:{i}", "tests/toy.py") for i, d in enumerate(docs)]


def toy_summary_task(**kw: Any) -> SummarisationTask:
    """40 toy pairs split 30 / 5 / 5; the instruction is the one in-vocabulary word "repeat"."""
    kw.setdefault("generation", GenerationSettings(max_new_tokens=4, batch_size=3))
    return SummarisationTask(name="toy-summaries", splits=split_pairs(summary_pairs(), (0.75, 0.125, 0.125)),
                             instruction="repeat", max_summary_tokens=4, source="tests/toy.py", **kw)


def seq2seq_tokenizer() -> PreTrainedTokenizerFast:
    """The word-level tokenizer of :data:`LM_WORDS` that appends EOS to every encoded text (as BART's does)."""
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(LM_WORDS)}, unk_token="<pad>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(single="$A <eos>", special_tokens=[("<eos>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>")


def tiny_bart(seed: int = 0) -> BartForConditionalGeneration:
    """The decoder starts from <|assistant|> (from EOS, as BART-large does, a random tied model only repeats it)."""
    cfg = BartConfig(vocab_size=len(LM_WORDS), d_model=32, encoder_layers=1, decoder_layers=1,
                     encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
                     max_position_embeddings=64, pad_token_id=0, bos_token_id=3, eos_token_id=1,
                     decoder_start_token_id=3, forced_bos_token_id=None, forced_eos_token_id=None)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return BartForConditionalGeneration(cfg).eval()


def write_tiny_bart(folder: str | Path) -> Path:
    folder = Path(folder)
    tiny_bart(0).save_pretrained(folder)
    seq2seq_tokenizer().save_pretrained(folder)
    return folder


# --- images ---------------------------------------------------------------------------------------------
def bar_images(n: int, seed: int, noise: float = 0.0) -> ImageSet:
    """8×8 grey images with one bright horizontal (label 0) or vertical (label 1) bar at a random place."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 2, (n,), generator=g)
    where = torch.randint(1, 7, (n,), generator=g)
    img = torch.full((n, 1, 8, 8), 30.0)
    for i in range(n):
        if labels[i] == 0:
            img[i, 0, where[i], :] = 220.0
        else:
            img[i, 0, :, where[i]] = 220.0
    if noise:
        img += noise * torch.randn(img.shape, generator=g)
    return ImageSet(img.clamp(0, 255).to(torch.uint8), labels)


def toy_image_task(n_train: int = 48, n_val: int = 16, n_test: int = 16) -> ImageTask:
    return ImageTask(name="toy-images", label_names=("horizontal", "vertical"),
                     splits={"train": bar_images(n_train, 1), "validation": bar_images(n_val, 2),
                             "test": bar_images(n_test, 3)},
                     extra_test_sets={"noisy": bar_images(n_test, 4, noise=60.0)}, source="tests/toy.py")


TINY_TRANSFORM = ImageTransform(size=8, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))


def tiny_vit(num_labels: int = 2, seed: int = 0) -> ViTForImageClassification:
    cfg = ViTConfig(image_size=8, patch_size=4, num_channels=3, hidden_size=32, num_hidden_layers=2,
                    num_attention_heads=4, intermediate_size=64, num_labels=num_labels)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return ViTForImageClassification(cfg).eval()


class TinyConvNet(nn.Module):
    """Two 3×3 convolutions and a pooled linear classifier, called like a Hugging Face image classifier."""

    def __init__(self, num_labels: int = 2) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.mix = nn.Conv2d(8, 8, 3, padding=1)
        self.classifier = nn.Linear(8, num_labels)

    def forward(self, pixel_values: torch.Tensor, labels: torch.Tensor | None = None) -> ImageClassifierOutput:
        h = F.relu(self.mix(F.relu(self.stem(pixel_values))))
        logits = self.classifier(h.mean(dim=(2, 3)))
        loss = F.cross_entropy(logits, labels) if labels is not None else None
        return ImageClassifierOutput(loss=loss, logits=logits)


def tiny_vision_build(kind: str = "vit"):
    """``build(spec, task)``: the same "pretrained" body for every run, the new head seeded by the run seed."""
    def build(spec, task):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = tiny_vit(len(task.label_names)) if kind == "vit" else TinyConvNet(len(task.label_names))
            torch.manual_seed(spec.seed)
            model.classifier.reset_parameters()
        return LoadedModel(model, TINY_TRANSFORM, ("classifier",))

    return build
