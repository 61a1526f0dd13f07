"""Measurements: bytes kept for backward, step time, peak memory, on CPU and CUDA.

*Bytes kept for backward* are counted with ``torch.autograd.graph.saved_tensors_hooks``: every
tensor autograd saves during a forward is attributed to the innermost adapted layer running at that
moment — to its *branch* (the adapter) or to its ``base_layer`` — and counted once per storage (a
view keeps its whole storage alive). Parameters and buffers (weights, frozen factors) are not
activations and are left out.

*Peak memory* of a step is the highest amount of memory allocated during the step above what was
allocated just before it (base weights, adapter weights, optimizer state, with gradients released),
plus the resting adapter state (trainable and frozen adapter tensors, optimizer state). On CUDA it
comes from ``torch.cuda.max_memory_allocated``; on the CPU from the allocation and free events of
torch's profiler (``profile_memory=True``), summed in order.

*Time* is wall-clock on CUDA (``torch.cuda.synchronize`` around each call) and the process's CPU time
on the CPU (``time.process_time``): on a machine shared with other jobs, wall-clock on the CPU
measures the other jobs as much as ours, CPU time measures the work we do (run with one torch
thread, so that no idle-spinning worker is counted). Configurations are interleaved (the order
rotates every round) after warm-up calls, and the median is reported.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import torch
import torch.nn as nn

__all__ = ["SavedTensorTracer", "LayerSaved", "time_interleaved", "peak_memory", "model_state_bytes",
           "optimizer_state_bytes", "synchronize", "clock_name"]


def synchronize(device: Any) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def _storage(t: torch.Tensor) -> tuple[int, int]:
    s = t.untyped_storage()
    return s.data_ptr(), s.nbytes()


def model_state_bytes(model: nn.Module) -> int:
    """Bytes of every distinct parameter and buffer storage of ``model``."""
    seen: dict[int, int] = {}
    for t in list(model.parameters()) + list(model.buffers()):
        ptr, n = _storage(t)
        seen[ptr] = n
    return sum(seen.values())


def optimizer_state_bytes(optimizer: torch.optim.Optimizer | None) -> int:
    if optimizer is None:
        return 0
    total = 0
    for state in optimizer.state.values():
        for v in state.values():
            if isinstance(v, torch.Tensor):
                total += v.numel() * v.element_size()
    return total


@dataclass
class LayerSaved:
    """What one adapted layer keeps for backward (distinct storages)."""

    name: str
    d_in: int
    d_out: int
    branch: dict[int, tuple[int, tuple[int, ...], str]] = field(default_factory=dict)  # ptr -> (bytes, shape, dtype)
    base: dict[int, tuple[int, tuple[int, ...], str]] = field(default_factory=dict)

    @property
    def branch_bytes(self) -> int:
        return sum(v[0] for v in self.branch.values())

    @property
    def base_bytes(self) -> int:
        return sum(v[0] for v in self.base.values())

    def branch_widths(self) -> list[int]:
        return [v[1][-1] if v[1] else 1 for v in self.branch.values()]

    def keeps_d_in_sized(self, tokens: int) -> bool:
        """Whether the branch keeps any tensor with at least tokens × d_in elements."""
        for nbytes, shape, _ in self.branch.values():
            numel = 1
            for s in shape:
                numel *= s
            if numel >= tokens * self.d_in:
                return True
        return False


def _dims(layer: nn.Module) -> tuple[int, int]:
    base = getattr(layer, "base_layer", layer)
    if hasattr(layer, "d_in") and not callable(layer.d_in):
        return int(layer.d_in), int(layer.d_out)
    if isinstance(base, nn.Linear):
        return base.in_features, base.out_features
    w = base.weight
    return int(w.shape[1]), int(w.shape[0])


class SavedTensorTracer:
    """Attribute the tensors autograd saves during a forward to adapted layers' branches and bases.

    ``layers`` maps names to adapted layers (each with a ``base_layer``). Use as a context manager
    around one forward; then read ``per_layer`` and ``total_bytes`` (all distinct non-parameter
    storages saved anywhere in the model, adapters or not).
    """

    def __init__(self, model: nn.Module, layers: dict[str, nn.Module]) -> None:
        self.model = model
        self.layers = layers
        self.per_layer = {name: LayerSaved(name, *_dims(m)) for name, m in layers.items()}
        self._owner: dict[int, tuple[str, str]] = {}
        for name, m in layers.items():
            self._owner[id(m)] = (name, "branch")
            self._owner[id(m.base_layer)] = (name, "base")
        self._stack: list[tuple[str, str]] = []
        self._weights = {_storage(t)[0] for t in list(model.parameters()) + list(model.buffers())}
        self.all_saved: dict[int, int] = {}
        self._keep: list[torch.Tensor] = []
        self._handles: list = []
        self._ctx = None

    # module hooks keep a stack of (layer name, role) for the modules now running
    def _pre(self, module, _inputs):
        self._stack.append(self._owner[id(module)])

    def _post(self, module, _inputs, _output):
        if self._stack:
            self._stack.pop()

    def _pack(self, t: torch.Tensor) -> torch.Tensor:
        ptr, nbytes = _storage(t)
        if ptr in self._weights or nbytes == 0:
            return t
        self._keep.append(t)  # keeps the storage (and so its address) alive while we trace
        self.all_saved[ptr] = nbytes
        if self._stack:
            name, role = self._stack[-1]
            target = self.per_layer[name].branch if role == "branch" else self.per_layer[name].base
            target[ptr] = (nbytes, tuple(t.shape), str(t.dtype).replace("torch.", ""))
        return t

    def __enter__(self) -> "SavedTensorTracer":
        seen = set()
        for m in self.layers.values():
            for mod in (m, m.base_layer):
                if id(mod) in seen:
                    continue
                seen.add(id(mod))
                self._handles.append(mod.register_forward_pre_hook(self._pre))
                self._handles.append(mod.register_forward_hook(self._post, always_call=True))
        self._ctx = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)
        self._ctx.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._ctx.__exit__(*exc)
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self._keep.clear()

    @property
    def total_bytes(self) -> int:
        return sum(self.all_saved.values())


def time_interleaved(fns: dict[str, Callable[[], Any]], *, warmup: int, repeats: int, device: Any,
                     progress: Callable[[str], None] | None = None, clock: str = "auto") -> dict[str, list[float]]:
    """Seconds per call of each function: ``warmup`` untimed rounds, then ``repeats`` timed rounds,
    each round calling every function once, in an order that rotates from round to round.

    ``clock``: ``"wall"`` (``time.perf_counter``, with CUDA synchronisation), ``"cpu"`` (the
    process's CPU time, ``time.process_time``: what the work costs, insensitive to other processes
    taking the CPU between our instructions on a shared machine), or ``"auto"``: wall on CUDA, CPU
    time on the CPU. Use CPU time with one torch thread: idle-spinning worker threads count as CPU time.
    """
    clock = resolve_clock(device, clock)
    if clock not in ("wall", "cpu"):
        raise ValueError(f"clock must be 'wall', 'cpu' or 'auto', got {clock!r}")
    now = time.perf_counter if clock == "wall" else time.process_time
    names = list(fns)
    for i in range(warmup):
        for n in names:
            fns[n]()
        if progress:
            progress(f"warm-up {i + 1}/{warmup}")
    times: dict[str, list[float]] = {n: [] for n in names}
    for i in range(repeats):
        order = names[i % len(names):] + names[:i % len(names)]
        for n in order:
            synchronize(device)
            t0 = now()
            fns[n]()
            synchronize(device)
            times[n].append(now() - t0)
        if progress:
            progress(f"round {i + 1}/{repeats}")
    return times


def resolve_clock(device: Any, clock: str = "auto") -> str:
    if clock == "auto":
        return "wall" if torch.device(device).type == "cuda" else "cpu"
    return clock


def clock_name(device: Any, clock: str = "auto") -> str:
    return "wall-clock time" if resolve_clock(device, clock) == "wall" else "CPU time of the process"


def median(xs: list[float]) -> float:
    return float(statistics.median(xs)) if xs else float("nan")


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence C-level chatter of the profiler (kineto prints to the process's stderr)."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(fd)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), fd)
            yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)


def peak_memory(fn: Callable[[], Any], device: Any) -> int:
    """Peak bytes allocated while ``fn()`` runs, above what was allocated when it started."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        start = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize(device)
        return int(torch.cuda.max_memory_allocated(device) - start)
    if device.type != "cpu":
        raise ValueError(f"peak memory is measured on cpu and cuda, not {device.type}")
    from torch.profiler import ProfilerActivity, profile

    with _quiet_stderr():
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            fn()
        events = prof.profiler.kineto_results.events()
    mem = [(e.start_ns(), i, e.nbytes()) for i, e in enumerate(events)
           if e.name() == "[memory]" and e.device_type() == torch.autograd.DeviceType.CPU]
    mem.sort()
    level = peak = 0
    for _, _, n in mem:
        level += n
        peak = max(peak, level)
    return int(peak)
