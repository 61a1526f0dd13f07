"""Edit a saved adapter or PEFT folder the way a clumsy user or an attacker would.

Only json, hashlib and safetensors are used (no asymlora internals), so that the same edits can be
made on folders written by any asymlora version.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Callable

from safetensors import safe_open
from safetensors.torch import save_file

CONFIG = "adapter_config.json"
WEIGHTS = {"asymlora": "adapter.safetensors", "peft": "adapter_model.safetensors"}


def flavour(folder: Path) -> str:
    return "asymlora" if (Path(folder) / WEIGHTS["asymlora"]).exists() else "peft"


def read_config(folder: Path) -> Any:
    return json.loads((Path(folder) / CONFIG).read_text())


def write_config(folder: Path, meta: Any, *, compact: bool = True) -> None:
    text = json.dumps(meta, separators=(",", ":")) if compact else json.dumps(meta, indent=2)
    (Path(folder) / CONFIG).write_text(text)


def edit_config(folder: Path, edit: Callable[[Any], Any]) -> None:
    """``edit(meta)`` changes the parsed config in place (or returns a replacement)."""
    meta = read_config(folder)
    out = edit(meta)
    write_config(folder, meta if out is None else out)


def read_tensors(folder: Path) -> tuple[dict, dict]:
    """``(tensors, header metadata)`` of the folder's tensor file."""
    path = Path(folder) / WEIGHTS[flavour(folder)]
    with safe_open(str(path), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})


def write_tensors(folder: Path, tensors: dict, metadata: dict, *, update_sha: bool = True) -> None:
    """Write the tensor file; for an asymlora folder also put its new sha256 into the config, as a
    user who 'fixes' a checksum error would."""
    kind = flavour(folder)
    path = Path(folder) / WEIGHTS[kind]
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata=metadata or None)
    if kind == "asymlora" and update_sha:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        edit_config(folder, lambda meta: meta.__setitem__("weights_sha256", digest))


def rewrite_tensors(folder: Path, edit: Callable[[dict], Any]) -> None:
    """``edit(tensors)`` changes the tensor dict in place; the file is re-written with its metadata
    and (asymlora) a matching sha256 in the config."""
    tensors, metadata = read_tensors(folder)
    edit(tensors)
    write_tensors(folder, tensors, metadata)


def config_digest(meta: dict) -> str:
    """The sha256 that binds a format-3 config to its tensor file (everything but the file's own
    sha256 and the free-form ``extra``, as canonical JSON)."""
    covered = {k: v for k, v in meta.items() if k not in ("weights_sha256", "extra")}
    text = json.dumps(covered, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


def resign(folder: Path) -> None:
    """Make an edited format-3 folder self-consistent again: the config digest into the tensor
    file's metadata, the tensor file's sha256 into the config. What is left to catch an edit are the
    loader's cross-checks of fields against each other and against the tensors."""
    meta = read_config(folder)
    tensors, metadata = read_tensors(folder)
    metadata["asymlora_config_sha256"] = config_digest(meta)
    write_tensors(folder, tensors, metadata)


def as_peft_native(folder: Path) -> None:
    """Drop what asymlora's export adds to a PEFT tensor file's header (the config digest), so the folder
    looks like one PEFT itself wrote."""
    tensors, metadata = read_tensors(folder)
    write_tensors(folder, tensors, {"format": metadata.get("format", "pt")})
