r"""Serve many adapters on one base model in one batch: each row picks its adapter.

For a batch whose row i uses adapter kᵢ, an adapted layer computes

    yᵢ = W0 xᵢ + s_{kᵢ} · B_{kᵢ} · (A_{kᵢ} xᵢ)

B-only adapters made with the same seed on the same base share their frozen A, so h = A·x is then
computed **once** for the whole batch (r numbers per token) and only the r → d_out expansion is done per
adapter. Adapters with different A's (other seeds, or LoRA adapters that trained A) are served too: the
layer keeps each *distinct* A once (adapters that share one point to it) and, in a mixed batch, computes
every row's hᵢ = A_{kᵢ} xᵢ in one batched product with each row's A gathered (S-LoRA / Punica style), then
every row's B_{kᵢ} hᵢ in a second one. PEFT's mixed-adapter batches (``adapter_names=``) instead loop over
the adapters present and run the whole branch, with a copy of the rows' d_in-wide input, once per adapter.

::

    multi = asymlora.load_many(base_model, ["adapters/sst2", "adapters/trec", "adapters/spam"])
    out = multi(input_ids=ids, attention_mask=mask, adapter_ids=["sst2", "trec", "trec", None])
    text = multi.generate(**enc, adapter_ids=[0, 2], max_new_tokens=20)

A row's adapter is given by index, by name (the folder name unless ``names=`` is given), or ``None`` /
``-1`` / ``"base"`` for the base model without adapter. Rows are the first dimension of every adapted
layer's input (true of Hugging Face transformers; with beam search repeat the ids per beam).

Ways to do the per-row branch (``mode``):

* ``"gathered"``: a batched matmul with each row's B gathered (and, when the A's differ, one before it
  with each row's A gathered): two kernels whatever the number of adapters in the batch.
* ``"grouped"``: for each adapter present, ``s_k · B_k · A_k x[rows]`` on that adapter's rows (as PEFT
  does, but with h computed once when A is shared).
* ``"auto"`` (default): a batch whose rows all use one adapter runs exactly the single-adapter
  computation (bit-identical to :func:`asymlora.load_adapter`); a mixed batch is gathered.

A mixed batch equals one adapter at a time up to float32 round-off in every mode (a BLAS may round a
matmul over some rows differently from one over all rows); base rows are exactly the base model.

Memory: a layer holds N·d_out·r numbers of B and M·r·d_in of A for the M distinct A's (M = 1 for
B-only adapters of one seed, M = N for N seeds: then as much as N LoRA adapters).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
import torch.nn as nn

from .adapter_file import AdapterFolder
from .checkpoint import folder_factors, load_folder
from .inject import adapted_layers, forget_adapters, set_submodule
from .layers import AdaptedLayer

__all__ = ["ServingError", "MultiAdapterLayer", "MultiAdapterModel", "load_many", "distinct_matrices"]

BASE = -1  # row id meaning "base model, no adapter"
MODES = ("auto", "grouped", "gathered")


class ServingError(ValueError):
    """Adapters that cannot be served together, or adapter ids that do not fit the batch."""


@dataclass
class _Route:
    ids: torch.Tensor  # (batch,) int64 on the model's device, BASE for base rows
    groups: list[tuple[int, torch.Tensor | None]]  # (adapter index, row indices or None = all rows)
    batch: int
    slots: torch.Tensor  # (batch,) the rows' adapter indices with BASE replaced by N (scale 0)
    b_slots: torch.Tensor  # (batch,) the same with BASE replaced by 0 (any B: its scale is 0)


class _Router:
    """Holds the rows' adapters for the duration of one call through :class:`MultiAdapterModel`."""

    def __init__(self) -> None:
        self.current: _Route | None = None


class MultiAdapterLayer(nn.Module):
    """A base layer with N adapters; which adapter a row uses is set per call.

    Buffers: ``lora_As`` (M × r × d_in: the M distinct A's, M = 1 when every adapter shares A),
    ``a_index`` (N+1,: which of them adapter k uses; entry N, for base rows, is 0), ``lora_Bs``
    (N × d_out × r), ``scales`` (N+1,: entry N is 0, so that a base row in ``"gathered"`` mode adds
    B_0 · (0 · h) = 0 exactly). ``base_layer`` is the frozen original layer.
    """

    def __init__(self, layer: AdaptedLayer, bs: Sequence[torch.Tensor], scales: Sequence[float], router: _Router,
                 mode: str = "auto", *, distinct_as: Sequence[torch.Tensor] | None = None,
                 a_index: Sequence[int] | None = None) -> None:
        super().__init__()
        self.base_layer = layer.base_layer
        self.name = layer.name
        self.rank = layer.rank
        self.mode = mode
        # the adapted layer supplies the layout-specific projections (project / expand / expand_rows);
        # it is kept out of the module tree so that its base layer is not registered twice
        object.__setattr__(self, "layout", layer)
        object.__setattr__(self, "_router", router)
        a = layer.lora_A.detach()
        if distinct_as is None:  # every adapter uses the layer's A
            distinct_as, a_index = [a], [0] * len(bs)
        if a_index is None or len(a_index) != len(bs):
            raise ValueError(f"{self.name}: a_index must give one A per adapter ({len(bs)})")
        self.register_buffer("lora_As", torch.stack([x.detach().to(device=a.device, dtype=a.dtype)
                                                     for x in distinct_as]))
        self.a_of = [int(i) for i in a_index] + [0]
        self.register_buffer("a_index", torch.tensor(self.a_of, dtype=torch.int64, device=a.device))
        self.register_buffer("lora_Bs", torch.stack([b.detach().to(device=a.device, dtype=a.dtype) for b in bs]))
        self.scale_values = [float(s) for s in scales] + [0.0]
        self.register_buffer("scales", torch.tensor(self.scale_values, dtype=a.dtype, device=a.device))

    @property
    def num_adapters(self) -> int:
        return self.lora_Bs.shape[0]

    @property
    def num_distinct_a(self) -> int:
        return self.lora_As.shape[0]

    @property
    def lora_A(self) -> torch.Tensor:
        """The A every adapter shares; ``ServingError`` if the adapters' A's differ."""
        if self.num_distinct_a != 1:
            raise ServingError(f"{self.name}: the {self.num_adapters} adapters use {self.num_distinct_a} different A's "
                               "(see lora_As and a_index)")
        return self.lora_As[0]

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        out = self.base_layer(x, *args, **kwargs)
        route = self._router.current
        if route is None:
            raise ServingError(f"{self.name}: no adapter ids for this call; call the model through "
                               "MultiAdapterModel(..., adapter_ids=[...]) or inside `with multi.route(ids):`")
        if x.shape[0] != route.batch:
            raise ServingError(f"{self.name}: the layer input has {x.shape[0]} rows but {route.batch} adapter ids "
                               "were given (one per row of the batch). With beam search or sampling several "
                               "sequences per prompt, repeat each id per sequence.")
        if not route.groups:
            return out  # every row uses the base model
        xa = self.layout.branch_input(x, self.lora_As.dtype)
        single = len(route.groups) == 1 and route.groups[0][1] is None
        if self.mode == "gathered" or (self.mode == "auto" and not single):
            return self._add_gathered(out, xa, route.slots, route.b_slots)
        return out + self._grouped(xa, route.groups).to(out.dtype)

    def _grouped(self, xa: torch.Tensor, groups: list[tuple[int, torch.Tensor | None]]) -> torch.Tensor:
        """s_k · B_k · A_k x[rows of k] for each adapter k present (h = A·x once when A is shared)."""
        layer = self.layout
        shared = self.num_distinct_a == 1
        h_all = layer.project(xa, self.lora_As[0]) if shared else None  # once for all rows: the shared A
        branch = None
        for k, rows in groups:
            a = self.lora_As[self.a_of[k]]
            if rows is None:  # every row uses adapter k: exactly the single-adapter computation
                h = h_all if shared else layer.project(xa, a)
                return self.scale_values[k] * layer.expand(h, self.lora_Bs[k])
            h = h_all.index_select(0, rows) if shared else layer.project(xa.index_select(0, rows), a)
            part = self.scale_values[k] * layer.expand(h, self.lora_Bs[k])
            if branch is None:
                branch = torch.zeros((xa.shape[0],) + tuple(part.shape[1:]), dtype=part.dtype, device=part.device)
            branch.index_copy_(0, rows, part)
        return branch

    def _add_gathered(self, out: torch.Tensor, xa: torch.Tensor, slots: torch.Tensor,
                      b_slots: torch.Tensor) -> torch.Tensor:
        """Row i: out_i + B_{kᵢ} · (s_{kᵢ} · A_{kᵢ} xᵢ), each factor gathered per row into one batched product;
        the scale multiplies the r-sized h, and the expansion is added into the base output in place where
        the layer type allows it (:meth:`~asymlora.layers.AdaptedLayer.add_expand_rows`)."""
        layer = self.layout
        if self.num_distinct_a == 1:
            h = layer.project(xa, self.lora_As[0])  # once for all rows: the shared A
        else:
            h = layer.project_rows(xa, self.lora_As.index_select(0, self.a_index.index_select(0, slots)))
        h = h * self.scales.index_select(0, slots).reshape((-1,) + (1,) * (h.dim() - 1))
        return layer.add_expand_rows(out, h, self.lora_Bs.index_select(0, b_slots))  # (batch, d_out, r) gathered

    def extra_repr(self) -> str:
        return (f"name={self.name!r}, adapters={self.num_adapters}, distinct A's={self.num_distinct_a}, "
                f"rank={self.rank}, mode={self.mode!r}")


class MultiAdapterModel(nn.Module):
    """A base model with N B-only adapters; every call says which adapter each row uses.

    ``multi(*args, adapter_ids=ids, **kwargs)`` calls the wrapped model; ``multi.generate(...,
    adapter_ids=ids)`` its ``generate``; ``with multi.route(ids): ...`` routes any other call.
    """

    def __init__(self, model: nn.Module, names: Sequence[str], router: _Router) -> None:
        super().__init__()
        self.model = model
        self.adapter_names = list(names)
        object.__setattr__(self, "_router", router)

    def layers(self) -> Iterator[tuple[str, MultiAdapterLayer]]:
        for name, module in self.model.named_modules():
            if isinstance(module, MultiAdapterLayer):
                yield name, module

    def _device(self) -> torch.device:
        for _, layer in self.layers():
            return layer.lora_As.device
        return torch.device("cpu")

    def adapter_index(self, key: Any) -> int:
        """The index of adapter ``key`` (an index, a name, or None / -1 / "base" for the base model)."""
        if key is None or (isinstance(key, str) and key == "base"):
            return BASE
        if isinstance(key, str):
            if key not in self.adapter_names:
                raise ServingError(f"unknown adapter {key!r}; loaded adapters: {self.adapter_names} "
                                   "(or None / 'base' for the base model)")
            return self.adapter_names.index(key)
        index = int(key)
        if not BASE <= index < len(self.adapter_names):
            raise ServingError(f"adapter index {index} is out of range: {len(self.adapter_names)} adapters are "
                               "loaded (indices 0..N-1, or -1 for the base model)")
        return index

    def _make_route(self, adapter_ids: Any) -> _Route:
        if isinstance(adapter_ids, torch.Tensor):
            ids = adapter_ids.detach().to("cpu", torch.int64).reshape(-1)
            if ids.numel() and (int(ids.min()) < BASE or int(ids.max()) >= len(self.adapter_names)):
                raise ServingError(f"adapter ids must lie in -1..{len(self.adapter_names) - 1}, got "
                                   f"{int(ids.min())}..{int(ids.max())}")
        elif isinstance(adapter_ids, (str, int)) or adapter_ids is None:
            raise ServingError("adapter_ids must give one adapter per row of the batch (a list or a 1-D tensor)")
        else:
            ids = torch.tensor([self.adapter_index(k) for k in adapter_ids], dtype=torch.int64)
        if ids.numel() == 0:
            raise ServingError("adapter_ids is empty; give one adapter per row of the batch")
        device = self._device()
        groups: list[tuple[int, torch.Tensor | None]] = []
        present = sorted(set(ids.tolist()))
        for k in present:
            if k == BASE:
                continue
            if len(present) == 1:
                groups.append((k, None))
            else:
                groups.append((k, torch.nonzero(ids == k).reshape(-1).to(device)))
        slots = torch.where(ids < 0, torch.full_like(ids, len(self.adapter_names)), ids)
        return _Route(ids=ids.to(device), groups=groups, batch=int(ids.numel()), slots=slots.to(device),
                      b_slots=ids.clamp(min=0).to(device))

    @contextlib.contextmanager
    def route(self, adapter_ids: Any) -> Iterator["MultiAdapterModel"]:
        """Route every call of the wrapped model inside the block with these per-row adapters."""
        previous = self._router.current
        self._router.current = self._make_route(adapter_ids)
        try:
            yield self
        finally:
            self._router.current = previous

    def forward(self, *args: Any, adapter_ids: Any, **kwargs: Any) -> Any:
        with self.route(adapter_ids):
            return self.model(*args, **kwargs)

    def generate(self, *args: Any, adapter_ids: Any, **kwargs: Any) -> Any:
        with self.route(adapter_ids):
            return self.model.generate(*args, **kwargs)

    def set_mode(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        for _, layer in self.layers():
            layer.mode = mode

    def unload(self) -> nn.Module:
        """Put the plain base layers back and return the base model (adapters dropped)."""
        for name, layer in list(self.layers()):
            set_submodule(self.model, name, layer.base_layer)
        forget_adapters(self.model)
        return self.model


def _default_names(dirs: Sequence[Path]) -> list[str]:
    names = [d.name or str(d) for d in dirs]
    if len(set(names)) != len(names):
        names = [str(d) for d in dirs]
    if len(set(names)) != len(names):
        raise ServingError("the same adapter folder is given twice; pass names=[...] to tell them apart")
    return names


def load_many(base_model: nn.Module, adapter_dirs: Sequence[str | os.PathLike], names: Sequence[str] | None = None,
              *, mode: str = "auto", tolerance: float = 0.0) -> MultiAdapterModel:
    """Load N adapters onto ``base_model`` (modified in place) for batched serving.

    Every adapter must be an asymlora adapter folder made on this base with the same layers and ranks;
    B, the scale and A may differ. Adapters whose A is the same in a layer (B-only adapters made with one
    seed: bit-identical; or within ``tolerance``, the largest relative Frobenius difference still counted
    as equal) share one copy of it, and a batch of them computes A·x once. Adapters that train full
    modules (e.g. a classifier head) can be served together only if those parameters are identical in
    all of them. Returns a :class:`MultiAdapterModel`; call it with ``adapter_ids=`` (one per row).
    ``mode``: see the module docstring (``"auto"``, ``"gathered"`` or ``"grouped"``). One call at a time
    per model: the rows' adapters are held by the model for the duration of a call.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if isinstance(adapter_dirs, (str, os.PathLike)) or not adapter_dirs:
        raise ServingError("adapter_dirs must be a non-empty list of adapter folders")
    dirs = [Path(d) for d in adapter_dirs]
    names = list(names) if names is not None else _default_names(dirs)
    if len(names) != len(dirs):
        raise ServingError(f"{len(dirs)} adapters but {len(names)} names")
    if len(set(names)) != len(names) or any(n == "base" for n in names):
        raise ServingError(f"adapter names must be distinct and not 'base': {names}")
    folders = [AdapterFolder.open(d) for d in dirs]
    factors = [folder_factors(f, base_model) for f in folders]
    _check_same_layers(factors, names)
    _check_train_modules(folders, names)

    model = load_folder(base_model, folders[0])
    router = _Router()
    for name, layer in list(adapted_layers(model)):
        distinct, index = distinct_matrices([f[name][0] for f in factors], tolerance)
        bs = [f.pop(name)[1] for f in factors]  # popped: each layer's factors are held once, in the stack
        scales = [folder.layers[name].scale for folder in folders]
        set_submodule(model, name, MultiAdapterLayer(layer, bs, scales, router, mode, distinct_as=distinct,
                                                     a_index=index))
    return MultiAdapterModel(model, names, router)


def distinct_matrices(mats: Sequence[torch.Tensor], tolerance: float = 0.0) -> tuple[list[torch.Tensor], list[int]]:
    """The distinct matrices of ``mats`` in order of first appearance, and for each matrix the index of
    its representative. Equal means bit-identical (``tolerance`` 0; found by hashing the bytes) or a
    relative Frobenius difference ‖m − rep‖/‖rep‖ ≤ ``tolerance``."""
    reps: list[torch.Tensor] = []
    index: list[int] = []
    seen: dict[bytes, int] = {}
    for m in mats:
        if tolerance == 0:
            key = m.detach().cpu().contiguous().numpy().tobytes()
            j = seen.setdefault(key, len(reps))
        else:
            j = next((i for i, r in enumerate(reps)
                      if float((m - r).norm()) <= tolerance * max(float(r.norm()), 1e-30)), len(reps))
        if j == len(reps):
            reps.append(m)
        index.append(j)
    return reps, index


def _check_same_layers(factors: Sequence[dict[str, tuple[torch.Tensor, torch.Tensor]]], names: Sequence[str]) -> None:
    first = factors[0]
    for label, f in zip(names[1:], factors[1:]):
        if set(f) != set(first):
            only_first = sorted(set(first) - set(f))[:3]
            only_this = sorted(set(f) - set(first))[:3]
            raise ServingError(f"these adapters cannot share one batch: {label!r} adapts other layers than "
                               f"{names[0]!r} (only in {names[0]!r}: {only_first}; only in {label!r}: {only_this})")
        for layer, (a, b) in f.items():
            a0, b0 = first[layer]
            if a.shape != a0.shape or b.shape != b0.shape:
                raise ServingError(f"these adapters cannot share one batch: in layer {layer!r} {label!r} has A "
                                   f"{tuple(a.shape)}, B {tuple(b.shape)} but {names[0]!r} has A {tuple(a0.shape)}, "
                                   f"B {tuple(b0.shape)} (another rank or base)")


def _check_train_modules(folders: Sequence[AdapterFolder], names: Sequence[str]) -> None:
    sets = [f.train_modules for f in folders]
    if not any(sets):
        return
    if len(set(sets)) != 1:
        raise ServingError(f"the adapters train different full modules ({dict(zip(names, sets))}); a batch can "
                           "only switch B factors per row")
    first = folders[0].train_tensors
    for name, folder in zip(names[1:], folders[1:]):
        for pname, value in folder.train_tensors.items():
            if pname not in first or not torch.equal(value, first[pname]):
                raise ServingError(f"adapters {names[0]!r} and {name!r} trained the full parameter {pname!r} to "
                                   "different values; batched serving switches only the B factors per row, so serve "
                                   "them in separate batches")
