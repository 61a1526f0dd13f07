"""Resumable training state, written atomically and read without unpickling arbitrary objects.

A checkpoint folder holds, for the step ``S`` it was taken at:

* ``state-S.pt``: the trainable parameters (by name), the optimizer and scheduler state dicts, the
  loop's progress (epoch, batches done in the epoch, global step, running loss, elapsed time), the
  metrics history so far and, when the loop keeps the best epoch, that epoch's trainable tensors;
* ``rng-S-P.pt`` for each process ``P``: its torch (and CUDA), Python and NumPy random states and its
  own running sums (e.g. of the training loss over its shard of the data);
* ``latest.json``: which step is the current checkpoint. It is replaced last, with ``os.replace``, so
  a run killed at any instant leaves either the previous complete checkpoint or the new one, never a
  torn mix. Older files are deleted only after the pointer moved.

Everything is loaded with ``torch.load(weights_only=True)``: tensors, numbers, strings, lists, dicts
and tuples only, so a tampered checkpoint cannot execute code.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import torch

from asymlora.atomic import atomic_write, atomic_write_json

POINTER = "latest.json"
FORMAT = "asymlora-train-state"
FORMAT_VERSION = 1


class ResumeError(RuntimeError):
    """A checkpoint that cannot be resumed (corrupt, or from a different set-up); says what to do."""


def rng_state() -> dict[str, Any]:
    """This process's random states, in types that ``weights_only`` loading accepts."""
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": _py_state(random.getstate())}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    try:
        import numpy as np

        kind, keys, pos, has_gauss, cached = np.random.get_state()
        state["numpy"] = [kind, torch.from_numpy(keys.astype("int64")), int(pos), int(has_gauss), float(cached)]
    except ImportError:  # pragma: no cover - numpy is a dependency of the experiments extra
        pass
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(_py_unstate(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if "numpy" in state:
        import numpy as np

        kind, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((kind, keys.numpy().astype("uint32"), pos, has_gauss, cached))


def _py_state(s: tuple) -> list:
    version, internal, gauss = s
    return [version, list(internal), gauss]


def _py_unstate(s: list) -> tuple:
    version, internal, gauss = s
    return (version, tuple(internal), gauss)


class Checkpointer:
    """Save and load the loop's state under ``folder`` (one checkpoint kept: the latest)."""

    def __init__(self, folder: str | Path, *, process_index: int = 0, num_processes: int = 1,
                 is_main: bool = True) -> None:
        self.folder = Path(folder)
        self.process_index = process_index
        self.num_processes = num_processes
        self.is_main = is_main

    # --- writing ----------------------------------------------------------------------------------
    def save_process(self, step: int, extra: dict[str, Any] | None = None) -> None:
        """Every process writes its random state and ``extra`` (call before :meth:`save_main`)."""
        state = {"rng": rng_state(), **(extra or {})}
        atomic_write(self.folder / f"rng-{step}-{self.process_index}.pt", lambda tmp: torch.save(state, tmp))

    def save_main(self, step: int, state: dict[str, Any]) -> None:
        """The main process writes the shared state, then moves the pointer, then prunes old files."""
        if not self.is_main:
            return
        payload = {"format": FORMAT, "format_version": FORMAT_VERSION, "step": step,
                   "num_processes": self.num_processes, **state}
        atomic_write(self.folder / f"state-{step}.pt", lambda tmp: torch.save(payload, tmp))
        atomic_write_json(self.folder / POINTER, {"format": FORMAT, "step": step,
                                                  "num_processes": self.num_processes,
                                                  "state": f"state-{step}.pt"})
        self._prune(keep=step)

    def _prune(self, keep: int) -> None:
        for f in self.folder.glob("*.pt"):
            parts = f.stem.split("-")
            if len(parts) >= 2 and parts[1].isdigit() and int(parts[1]) != keep:
                f.unlink(missing_ok=True)

    # --- reading ----------------------------------------------------------------------------------
    def exists(self) -> bool:
        return (self.folder / POINTER).is_file()

    def load(self) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """``(state, process_state)`` of the latest checkpoint (``process_state["rng"]`` holds this
        process's random states), or ``None`` if there is none."""
        pointer = self.folder / POINTER
        if not pointer.is_file():
            return None
        try:
            info = json.loads(pointer.read_text())
            step = int(info["step"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
            raise ResumeError(f"{pointer} is corrupt ({err}); delete {self.folder} to start the run afresh") from None
        if int(info.get("num_processes", 1)) != self.num_processes:
            raise ResumeError(f"the checkpoint in {self.folder} was written by {info.get('num_processes')} "
                              f"process(es) but this run has {self.num_processes}; resume with the same number "
                              "of processes, or delete the folder to start afresh")
        state = self._load_file(self.folder / f"state-{step}.pt")
        if state.get("format") != FORMAT or state.get("format_version", 0) > FORMAT_VERSION:
            raise ResumeError(f"{self.folder}/state-{step}.pt is not a training state this asymlora can read")
        proc = self._load_file(self.folder / f"rng-{step}-{self.process_index}.pt")
        if "rng" not in proc:
            raise ResumeError(f"{self.folder}/rng-{step}-{self.process_index}.pt holds no random state; "
                              f"delete {self.folder} to start afresh")
        return state, proc

    def _load_file(self, path: Path) -> dict[str, Any]:
        if not path.is_file():
            raise ResumeError(f"{path} is missing: the checkpoint is incomplete; delete {self.folder} to start afresh")
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - any unpickling failure means the same to the user
            raise ResumeError(f"{path} cannot be read safely ({type(err).__name__}: {err}); "
                              f"delete {self.folder} to start the run afresh") from None

    def clear(self) -> None:
        """Remove the checkpoint (after the run finished and its results are written)."""
        if not self.is_main or not self.folder.is_dir():
            return
        (self.folder / POINTER).unlink(missing_ok=True)
        for f in self.folder.glob("*.pt"):
            f.unlink(missing_ok=True)
        for f in self.folder.glob(".*.tmp"):
            f.unlink(missing_ok=True)
        try:
            self.folder.rmdir()
        except OSError:
            pass
