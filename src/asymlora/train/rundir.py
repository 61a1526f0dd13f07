"""The folder of one training run: what produced it, how it went, what came out.

::

    RUN_DIR/
      config.json     the full run configuration (everything needed to run it again)
      env.json        seed, versions (python, torch, transformers, peft, accelerate, asymlora),
                      git commit of the asymlora checkout (if any), machine
      metrics.jsonl   one line per epoch: train loss, validation metrics, learning rate, elapsed seconds
      checkpoint/     the resumable state while the run is in progress (removed when it finishes)
      adapter/        the final adapter (asymlora format: trained factors + head, frozen A as a seed)
      result.json     final metrics, chosen learning rate, parameter counts, adapter bytes, wall time

Every file is written atomically (temporary file + ``os.replace``), so a killed run never leaves a
torn file; ``result.json`` is written last and marks the run as finished.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
from pathlib import Path
from typing import Any, Iterable

from asymlora.atomic import atomic_write_bytes, atomic_write_json

CONFIG = "config.json"
ENV = "env.json"
METRICS = "metrics.jsonl"
RESULT = "result.json"
CHECKPOINT = "checkpoint"
ADAPTER = "adapter"


def versions() -> dict[str, str | None]:
    """Versions of the packages that decide a run's numbers (None for one not installed)."""
    import importlib.metadata as md

    out: dict[str, str | None] = {"python": platform.python_version()}
    for pkg in ("torch", "transformers", "peft", "accelerate", "safetensors", "numpy", "scikit-learn", "scipy"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = None
    from asymlora import __version__

    out["asymlora"] = __version__
    return out


def git_commit() -> dict[str, Any] | None:
    """The commit of the asymlora source tree this process runs from, and whether it has local changes."""
    src = Path(__file__).resolve().parent.parent  # the asymlora package folder
    try:
        top = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=src, capture_output=True, text=True,
                             timeout=10)
        if top.returncode != 0:
            return None
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=src, capture_output=True, text=True, timeout=10)
        # untracked files inside the package count: a run from new, uncommitted modules is not clean
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "."], cwd=src,
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if commit.returncode != 0:
        return None
    return {"commit": commit.stdout.strip(), "dirty": bool(dirty.stdout.strip())}


def machine() -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                            "hostname": socket.gethostname()}
    if torch.cuda.is_available():
        info["cuda"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return info


def environment(seed: int, **extra: Any) -> dict[str, Any]:
    return {"seed": seed, "versions": versions(), "git": git_commit(), "machine": machine(), **extra}


class RunDir:
    """Paths and atomic writers for one run folder."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    @property
    def checkpoint(self) -> Path:
        return self.path / CHECKPOINT

    @property
    def adapter(self) -> Path:
        return self.path / ADAPTER

    def file(self, name: str) -> Path:
        return self.path / name

    # --- status -----------------------------------------------------------------------------------
    def is_done(self) -> bool:
        return (self.path / RESULT).is_file()

    def read_json(self, name: str) -> dict[str, Any] | None:
        f = self.path / name
        if not f.is_file():
            return None
        try:
            return json.loads(f.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{f} is corrupt ({err}); delete it to redo this part of the run") from None

    def read_result(self) -> dict[str, Any] | None:
        return self.read_json(RESULT)

    def read_config(self) -> dict[str, Any] | None:
        return self.read_json(CONFIG)

    def read_metrics(self) -> list[dict[str, Any]]:
        f = self.path / METRICS
        if not f.is_file():
            return []
        return [json.loads(line) for line in f.read_text().splitlines() if line.strip()]

    # --- writing ----------------------------------------------------------------------------------
    def write_config(self, config: dict[str, Any]) -> None:
        atomic_write_json(self.path / CONFIG, config)

    def write_env(self, seed: int, **extra: Any) -> None:
        atomic_write_json(self.path / ENV, environment(seed, **extra))

    def write_metrics(self, records: Iterable[dict[str, Any]]) -> None:
        """Rewrite ``metrics.jsonl`` from the whole history (so a resumed run never duplicates lines)."""
        text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in records)
        atomic_write_bytes(self.path / METRICS, text.encode())

    def write_result(self, result: dict[str, Any]) -> None:
        atomic_write_json(self.path / RESULT, result)


def dir_bytes(path: str | os.PathLike, pattern: str = "*") -> int:
    """Total size of the files matching ``pattern`` directly inside ``path``."""
    return sum(f.stat().st_size for f in Path(path).glob(pattern) if f.is_file())
