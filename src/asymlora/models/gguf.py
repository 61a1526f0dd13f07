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
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import save_model

from asymlora.atomic import file_lock, sha256_file

__all__ = ["CACHE_FORMAT", "hf_folder", "cache_is_valid", "build_folder"]

CACHE_FORMAT = 1


def cache_is_valid(folder: Path, gguf_sha256: str) -> bool:
    """True if ``folder`` was built by this cache format from the GGUF with ``gguf_sha256`` and is intact."""
    marker = folder / "source.json"
    if not marker.is_file() or not (folder / "model.safetensors").is_file():
        return False
    try:
        meta = json.loads(marker.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    if meta.get("format") != CACHE_FORMAT or meta.get("gguf_sha256") != gguf_sha256:
        return False
    if sha256_file(folder / "model.safetensors") != meta.get("model_sha256"):
        print(f"asymlora: {folder / 'model.safetensors'} does not match its recorded sha256; rebuilding it",
              file=sys.stderr)
        return False
    return True


def build_folder(folder: Path, gguf: Path, gguf_sha256: str, origin: str) -> None:
    """Dequantise ``gguf`` to float32 and write the model and tokenizer to ``folder`` atomically."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    print(f"asymlora: dequantising {gguf.name} to float32 (once; a minute or more) ...", file=sys.stderr)
    with torch.random.fork_rng(devices=[]):
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}-"))
    try:
        config = model.config.to_dict()
        config.pop("quantization_config", None)
        (tmp / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
        save_model(model, str(tmp / "model.safetensors"))
        tokenizer.save_pretrained(str(tmp))
        meta = {"format": CACHE_FORMAT, "gguf": origin, "gguf_sha256": gguf_sha256,
                "model_sha256": sha256_file(tmp / "model.safetensors")}
        (tmp / "source.json").write_text(json.dumps(meta, indent=2, sort_keys=True))
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def hf_folder(folder: Path, gguf: Callable[[], Path], gguf_sha256: str, origin: str) -> Path:
    """The verified Hugging Face folder at ``folder``, built from ``gguf()`` (the verified GGUF path) if needed."""
    with file_lock(folder.parent / f".{folder.name}.lock"):  # one process builds the cache, the others wait
        if not cache_is_valid(folder, gguf_sha256):
            build_folder(folder, gguf(), gguf_sha256, origin)
    return folder
