"""Model heads: from a Hugging Face folder (or hub name) to the model a task's head needs.

A task names its head (``task.head``, one of :data:`asymlora.tasks.protocol.HEADS`); the builder here makes
the model, its preprocessor and the list of **new head modules** — modules initialised fresh for the task,
which every method trains in full (a sequence classifier's ``classifier``/``score``, an image classifier's
``classifier``). Language-model heads reuse the pretrained output layer: none is new, nothing extra trains.

======================== ============================================= ======================== =========
head                     model class                                   preprocessor             new head
======================== ============================================= ======================== =========
sequence-classification  AutoModelForSequenceClassification, or the    tokenizer                classifier
                         mean-pooling head (``pooling="mean"``)
causal-lm                AutoModelForCausalLM                          tokenizer (pad = EOS     —
                                                                       when it has none)
seq2seq-lm               AutoModelForSeq2SeqLM                         tokenizer                —
image-classification     AutoModelForImageClassification               ImageTransform           classifier
======================== ============================================= ======================== =========

A new head's initialisation is seeded by the run seed (inside ``torch.random.fork_rng``, so the global
generator is untouched).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import torch
import torch.nn as nn

from asymlora.models.image_transform import IMAGENET_MEAN, IMAGENET_STD, ImageTransform
from asymlora.models.pooling import POOLINGS, MeanPoolingClassifier

# Leaf names of freshly initialised task heads on Hugging Face classifiers (the first one present is used).
NEW_HEAD_NAMES = ("classifier", "score", "head")


@dataclass
class LoadedModel:
    """A model with its task head, the preprocessor its inputs go through, and its new head modules."""

    model: nn.Module
    preprocessor: Any
    head_modules: tuple[str, ...] = ()


def new_head_modules(model: nn.Module) -> tuple[str, ...]:
    """The freshly initialised head of a Hugging Face classifier: a top-level child called classifier / score / head."""
    children = dict(model.named_children())
    return next(((name,) for name in NEW_HEAD_NAMES if name in children), ())


@contextlib.contextmanager
def seeded(seed: int | None):
    """Run the block with the global torch generator seeded by ``seed`` and restored afterwards."""
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def sequence_classifier(source: str, options: Mapping[str, Any], *, seed: int | None, pooling: str,
                        **kwargs: Any) -> LoadedModel:
    from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer

    if pooling not in POOLINGS:
        raise ValueError(f"unknown pooling {pooling!r}; use one of {', '.join(POOLINGS)}")
    regression = options.get("kind") == "regression"
    problem_type = "regression" if regression else "single_label_classification"
    labels = tuple(options.get("label_names") or ())
    num_labels = 1 if regression else int(options.get("num_labels") or len(labels) or 2)
    head: dict[str, Any] = {"problem_type": problem_type, "num_labels": num_labels}
    if labels and not regression:
        head["id2label"] = dict(enumerate(labels))
        head["label2id"] = {n: i for i, n in enumerate(labels)}
    tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=kwargs.get("local_files_only", False))
    with seeded(seed):
        if pooling == "mean":
            model = MeanPoolingClassifier(AutoModel.from_pretrained(source, **kwargs), num_labels, problem_type)
        else:
            model = AutoModelForSequenceClassification.from_pretrained(source, **head, **kwargs)
    return LoadedModel(model, tokenizer, new_head_modules(model))


def language_model_tokenizer(source: str, *, local_files_only: bool = False) -> Any:
    """The tokenizer of a language model at ``source``, padding with EOS when it has no pad token
    (padding is masked by the attention mask and labels −100 anyway)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local_files_only)
    if tokenizer.pad_token_id is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _language_model(auto_class: Callable, source: str, **kwargs: Any) -> LoadedModel:
    tokenizer = language_model_tokenizer(source, local_files_only=kwargs.get("local_files_only", False))
    kwargs.setdefault("dtype", torch.float32)
    return LoadedModel(auto_class.from_pretrained(source, **kwargs), tokenizer, ())


def causal_lm(source: str, options: Mapping[str, Any], *, seed: int | None, pooling: str, **kwargs: Any) -> LoadedModel:
    from transformers import AutoModelForCausalLM

    return _language_model(AutoModelForCausalLM, source, **kwargs)


def seq2seq_lm(source: str, options: Mapping[str, Any], *, seed: int | None, pooling: str, **kwargs: Any) -> LoadedModel:
    from transformers import AutoModelForSeq2SeqLM

    return _language_model(AutoModelForSeq2SeqLM, source, **kwargs)


def image_transform_of(source: str, local_files_only: bool = False) -> ImageTransform:
    """The model's own image size, mean and std (its ``preprocessor_config.json``), ImageNet's where it has none."""
    from transformers import AutoImageProcessor

    try:
        proc = AutoImageProcessor.from_pretrained(source, local_files_only=local_files_only)
    except (OSError, ValueError):
        return ImageTransform()
    return ImageTransform(_side(getattr(proc, "crop_size", None) or getattr(proc, "size", None) or {}), tuple(getattr(proc, "image_mean", None) or IMAGENET_MEAN),
                          tuple(getattr(proc, "image_std", None) or IMAGENET_STD))


def _side(size: Any) -> int:
    """The side of an image processor's size: a number, a dict, or transformers 5's ``SizeDict`` (attributes)."""
    if isinstance(size, (int, float)):
        return int(size)
    get = size.get if isinstance(size, Mapping) else (lambda key: getattr(size, key, None))
    return int(get("height") or get("shortest_edge") or 224)


def image_classifier(source: str, options: Mapping[str, Any], *, seed: int | None, pooling: str,
                     **kwargs: Any) -> LoadedModel:
    from transformers import AutoModelForImageClassification

    labels = tuple(options.get("label_names") or ())
    num_labels = int(options.get("num_labels") or len(labels))
    head: dict[str, Any] = {"num_labels": num_labels, "ignore_mismatched_sizes": True}
    if labels:
        head["id2label"] = dict(enumerate(labels))
        head["label2id"] = {n: i for i, n in enumerate(labels)}
    with seeded(seed):
        model = AutoModelForImageClassification.from_pretrained(source, **head, **kwargs)
    transform = image_transform_of(source, kwargs.get("local_files_only", False))
    return LoadedModel(model, transform, new_head_modules(model))


HEAD_BUILDERS: dict[str, Callable[..., LoadedModel]] = {
    "sequence-classification": sequence_classifier,
    "causal-lm": causal_lm,
    "seq2seq-lm": seq2seq_lm,
    "image-classification": image_classifier,
}
