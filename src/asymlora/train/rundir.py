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
      .lock           while a process works on the run: its pid and host (:meth:`RunDir.lock`)

Every file is written atomically (temporary file + ``os.replace``), so a killed run never leaves a
torn file; ``result.json`` is written last and marks the run as finished. The lock keeps two processes
(two grid workers sharing an output folder) from training the same run at once; a lock whose process is
gone is stale and taken over.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from pathlib import Path
from typing import Any, Iterable, Iterator

from asymlora.atomic import atomic_write_bytes, atomic_write_json
from asymlora.provenance import environment

CONFIG = "config.json"
ENV = "env.json"
METRICS = "metrics.jsonl"
RESULT = "result.json"
CHECKPOINT = "checkpoint"
ADAPTER = "adapter"
LOCK = ".lock"


class RunBusy(RuntimeError):
    """Another live process is working on this run folder (its ``.lock`` names it)."""


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

    # --- the lock ---------------------------------------------------------------------------------
    def lock_owner(self) -> dict[str, Any] | None:
        """The live process holding this folder's lock (pid, host), or None if it is free or stale."""
        try:
            info = json.loads((self.path / LOCK).read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(info, dict):
            return None
        if info.get("host") != socket.gethostname():
            return info  # another machine: cannot check it, so assume it is alive
        try:
            os.kill(int(info["pid"]), 0)
        except (ProcessLookupError, ValueError, KeyError, TypeError):
            return None
        except PermissionError:
            return info
        return info

    @contextlib.contextmanager
    def lock(self, enabled: bool = True) -> Iterator[None]:
        """Hold ``.lock`` for the duration of the block; :class:`RunBusy` if a live process holds it."""
        if not enabled:
            yield
            return
        self.path.mkdir(parents=True, exist_ok=True)
        me = {"pid": os.getpid(), "host": socket.gethostname()}
        for _ in range(2):
            try:
                fd = os.open(self.path / LOCK, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = self.lock_owner()
                if owner is not None:
                    raise RunBusy(f"{self.path} is being run by process {owner.get('pid')} on {owner.get('host')}; "
                                  f"wait for it, or delete {self.path / LOCK} if that process is gone") from None
                (self.path / LOCK).unlink(missing_ok=True)  # stale: its process died
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            break
        else:  # pragma: no cover - lost a race twice
            raise RunBusy(f"{self.path} is locked by another process")
        try:
            yield
        finally:
            (self.path / LOCK).unlink(missing_ok=True)

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
