"""A model converted once from a pinned source file into a cached Hugging Face folder (GGUF, ONNX, .pth, ...).

:func:`converted_folder` hands out ``folder`` after checking it: a ``source.json`` that records the cache
format, where the source came from, the sha256 of the source file (under ``source_key``) and the sha256 of
``model.safetensors``; both hashes must match (a few seconds for a 1 GB file). A folder that is damaged, made by
another cache format or from another source file is rebuilt, never used silently. ``write(tmp)`` writes the
model files into a temporary sibling folder, which is moved into place under a lock: parallel processes build
it once, and an interrupted build leaves nothing half-written.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Callable

from asymlora.atomic import file_lock, sha256_file

__all__ = ["converted_folder", "folder_is_valid", "build_atomically"]


def folder_is_valid(folder: Path, source_key: str, source_sha256: str, fmt: int) -> bool:
    """True if ``folder`` was built by cache format ``fmt`` from the source with ``source_sha256`` and is intact."""
    marker = folder / "source.json"
    if not marker.is_file() or not (folder / "model.safetensors").is_file():
        return False
    try:
        meta = json.loads(marker.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    if meta.get("format") != fmt or meta.get(source_key) != source_sha256:
        return False
    if sha256_file(folder / "model.safetensors") != meta.get("model_sha256"):
        print(f"asymlora: {folder / 'model.safetensors'} does not match its recorded sha256; rebuilding it",
              file=sys.stderr)
        return False
    return True


def build_atomically(folder: Path, write: Callable[[Path], None], meta: dict) -> None:
    """``write(tmp)`` into a temporary sibling of ``folder``, add ``source.json`` (``meta`` + the model's sha256),
    and move it into place."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}-"))
    try:
        write(tmp)
        meta = {**meta, "model_sha256": sha256_file(tmp / "model.safetensors")}
        (tmp / "source.json").write_text(json.dumps(meta, indent=2, sort_keys=True))
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def converted_folder(folder: Path, source_sha256: str, write: Callable[[Path], None], origin: str, *,
                     source_key: str = "source_sha256", origin_key: str = "source", fmt: int = 1) -> Path:
    """The verified folder at ``folder``, built by ``write(tmp)`` when it is missing or stale (see the module doc)."""
    with file_lock(folder.parent / f".{folder.name}.lock"):  # one process builds the cache, the others wait
        if not folder_is_valid(folder, source_key, source_sha256, fmt):
            build_atomically(folder, write, {"format": fmt, origin_key: origin, source_key: source_sha256})
    return folder
