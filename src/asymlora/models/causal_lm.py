"""Causal language models by built-in name, local folder or hub name → ``(model, tokenizer)``.

:func:`load_causal_lm` goes through the model registry (:func:`asymlora.models.registry.build_model` with the
``causal-lm`` head), so names, folders, hub names and the offline rules are resolved in one place: with
``ASYMLORA_OFFLINE=1`` or ``HF_HUB_OFFLINE=1`` a hub name that is not in the local Hugging Face cache is a
:class:`~asymlora.models.registry.ModelError` at once, not ~50 s of retries. Built-in causal LMs resolve to
a cached Hugging Face folder made once from a pinned GGUF file (:mod:`asymlora.models.gguf`):

- ``smollm2``: SmolLM2-135M-Instruct (Llama, 134.5M parameters; :mod:`asymlora.models.smollm2`).
- ``gemma3-270m``: Gemma-3-270M base (Gemma3, 268M parameters; :mod:`asymlora.models.gemma3`).

:func:`apply_adapter` adds an adapter folder to a loaded model: asymlora's own format
(``adapter.safetensors``) through :func:`asymlora.load_adapter`, a PEFT LoRA folder
(``adapter_model.safetensors``, ``peft_type`` in its config) through :func:`asymlora.import_peft`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from asymlora.checkpoint import CONFIG_NAME, load_adapter
from asymlora.models.registry import MODELS, ModelError, build_model, resolve_model
from asymlora.peft_interop import import_peft

__all__ = ["causal_lm_names", "causal_lm_folder", "load_causal_lm", "adapter_format", "apply_adapter"]

def causal_lm_names() -> list[str]:
    """Every built-in name that loads as a causal LM."""
    return [n for n, spec in MODELS.items() if "causal-lm" in spec.heads]


def causal_lm_folder(name_or_path: str | os.PathLike) -> str:
    """What ``from_pretrained`` gets for a name: a built-in model's verified folder, else the name itself."""
    return resolve_model(str(name_or_path))[0]


def load_causal_lm(name_or_path: str | os.PathLike, *, dtype: Any = None, device: Any = "cpu",
                   tokenizer: bool = True, **kwargs: Any) -> tuple[Any, Any]:
    """``(model, tokenizer)``: an ``AutoModelForCausalLM`` in eval mode (``dtype`` default float32) on
    ``device``; ``tokenizer=False`` gives ``(model, None)``. Extra keyword arguments go to ``from_pretrained``."""
    name = str(name_or_path)
    if name in MODELS and "causal-lm" not in MODELS[name].heads:
        raise ModelError(f"{name!r} is not a causal language model; use one of {', '.join(causal_lm_names())}, "
                         f"a folder or a hub name")
    try:
        with torch.random.fork_rng(devices=[]):
            loaded = build_model(name, head="causal-lm", dtype=dtype or torch.float32, **kwargs)
    except ValueError as err:  # e.g. a folder whose config is not a causal LM
        raise ModelError(f"could not load {name} as a causal language model: {err}") from err
    return loaded.model.to(device).eval(), (loaded.preprocessor if tokenizer else None)


def adapter_format(path: str | os.PathLike) -> str:
    """``"asymlora"`` or ``"peft"``: the format of an adapter folder (a ModelError if it is neither)."""
    path = Path(path)
    cfg = path / CONFIG_NAME
    if not cfg.is_file():
        raise ModelError(f"{path} has no {CONFIG_NAME}: not an adapter folder (asymlora's or PEFT's)")
    try:
        meta = json.loads(cfg.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ModelError(f"{cfg} is not readable JSON ({err})") from err
    return "peft" if isinstance(meta, dict) and "peft_type" in meta else "asymlora"


def apply_adapter(model: Any, path: str | os.PathLike) -> Any:
    """``model`` with the adapter in ``path`` (asymlora or PEFT format) added, in eval mode."""
    if adapter_format(path) == "peft":
        model = import_peft(model, path)
    else:
        model = load_adapter(model, path)
    return model.eval()
