"""A GGUF checkpoint dequantised once into a cached Hugging Face folder (one home for SmolLM2, Gemma-3, ...).

transformers reads a GGUF file with ``from_pretrained(folder, gguf_file=...)`` (needs the ``gguf`` package)
and dequantises it to float32; the quantisation rounding stays in the weights. That takes a minute or
more on 2 cores, so :func:`hf_folder` does it once and writes a plain Hugging Face folder:
``model.safetensors``, ``config.json``, the tokenizer files and ``source.json``, which records where the
GGUF came from, its sha256 and the sha256 of ``model.safetensors``. Every later call checks both hashes
before handing the folder out (a few seconds for a 1 GB file) and rebuilds a folder that is damaged, made
by another cache format or from another GGUF file, never using it silently. The folder is written under a
temporary name and moved into place, under a lock, so parallel processes build it once and an interrupted
build leaves nothing half-written. ``save_pretrained`` refuses models loaded from GGUF, hence
``safetensors.torch.save_model`` (which also handles tied embeddings).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import save_model

from asymlora.models.converted import build_atomically, converted_folder, folder_is_valid

__all__ = ["CACHE_FORMAT", "hf_folder", "cache_is_valid", "build_folder"]

CACHE_FORMAT = 2  # 2: config.json names the architecture (folders of format 1 are rebuilt)
_KEYS = {"source_key": "gguf_sha256", "origin_key": "gguf"}


def cache_is_valid(folder: Path, gguf_sha256: str) -> bool:
    """True if ``folder`` was built by this cache format from the GGUF with ``gguf_sha256`` and is intact."""
    return folder_is_valid(folder, _KEYS["source_key"], gguf_sha256, CACHE_FORMAT)


def _writer(gguf: Path) -> Callable[[Path], None]:
    def write(tmp: Path) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        print(f"asymlora: dequantising {gguf.name} to float32 (once; a minute or more) ...", file=sys.stderr)
        with torch.random.fork_rng(devices=[]):
            model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
            tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        config = model.config.to_dict()
        config.pop("quantization_config", None)
        config["architectures"] = [type(model).__name__]  # as a Hub folder has it (tools such as llama.cpp's read it)
        (tmp / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
        save_model(model, str(tmp / "model.safetensors"))
        tokenizer.save_pretrained(str(tmp))
    return write


def build_folder(folder: Path, gguf: Path, gguf_sha256: str, origin: str) -> None:
    """Dequantise ``gguf`` to float32 and write the model and tokenizer to ``folder`` atomically."""
    build_atomically(folder, _writer(gguf), {"format": CACHE_FORMAT, "gguf": origin, "gguf_sha256": gguf_sha256})


def hf_folder(folder: Path, gguf: Callable[[], Path], gguf_sha256: str, origin: str) -> Path:
    """The verified Hugging Face folder at ``folder``, built from ``gguf()`` (the verified GGUF path) if needed."""
    return converted_folder(folder, gguf_sha256, lambda tmp: _writer(gguf())(tmp), origin, fmt=CACHE_FORMAT, **_KEYS)
