"""What produced a file: package versions, the git commit of the asymlora checkout, the machine.

Every results file the project writes (run folders' ``env.json``, benchmark and theory JSON, similarity
records) embeds :func:`environment`, so a number can be traced to the code and machine that made it.
"""

from __future__ import annotations

import importlib.metadata as md
import os
import platform
import socket
import subprocess
from pathlib import Path
from typing import Any

import torch

from asymlora.version import __version__

PACKAGES = ("torch", "transformers", "peft", "accelerate", "safetensors", "numpy", "scikit-learn", "scipy")


def versions() -> dict[str, str | None]:
    """Versions of the packages that decide a run's numbers (None for one not installed)."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for pkg in PACKAGES:
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = None
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
    info: dict[str, Any] = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                            "hostname": socket.gethostname()}
    if torch.cuda.is_available():
        info["cuda"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return info


def environment(seed: int, **extra: Any) -> dict[str, Any]:
    return {"seed": seed, "versions": versions(), "git": git_commit(), "machine": machine(), **extra}
