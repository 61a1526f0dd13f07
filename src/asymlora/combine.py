r"""Exact task arithmetic for adapters that share a factor.

Adapters ``i = 1..N`` on one base each add ΔWᵢ = sᵢ·Bᵢ·Aᵢ to a layer. Task arithmetic wants one adapter
with ΔW = Σ wᵢ ΔWᵢ. For LoRA pairs that is impossible at rank r: Σ wᵢ sᵢ Bᵢ Aᵢ has rank up to N·r, and
summing the factors separately (PEFT's ``add_weighted_adapter(combination_type="linear")``) gives
(Σ √wᵢsᵢ Bᵢ)(Σ √wᵢsᵢ Aᵢ), whose cross terms Bᵢ Aⱼ belong to no adapter.

B-only adapters made with the same seed on the same base share A bit for bit (a frozen random factor is
a function of the seed and the layer name only), so

    Σ wᵢ sᵢ Bᵢ A  =  s · (Σ wᵢ sᵢ/s · Bᵢ) · A

is again a rank-r adapter with the same A: :func:`combine` builds it, exactly up to float round-off of
one weighted sum. The same holds for A-only adapters that share B (then the A factors are summed).
Adapters whose factors share nothing are refused with an error that says why.

Parameters trained in full beside the adapters (``train_modules``, e.g. a classifier head) have no
factor structure; by default they are combined as task vectors, θ0 + Σ wᵢ (θᵢ − θ0) with θ0 the base
model's own values (``train_modules="arithmetic"``), or taken from the first adapter (``"first"``), or
refused (``"error"``).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Mapping, Sequence

import torch
import torch.nn as nn

from .adapter_file import AdapterFolder
from .checkpoint import folder_factors, load_folder
from .inject import adapted_layers
from .peft_folder import is_peft_folder

__all__ = ["CombineError", "combine", "combine_factors", "shared_factor"]

Factors = Mapping[str, tuple[torch.Tensor, torch.Tensor]]


class CombineError(ValueError):
    """Adapters that cannot be combined exactly (no shared factor, different layers or shapes)."""


def _relative_difference(x: torch.Tensor, y: torch.Tensor) -> float:
    x64, y64 = x.detach().double(), y.detach().double()
    return float((x64 - y64).norm() / max(float(y64.norm()), 1e-30))


def shared_factor(factors: Sequence[Factors], *, labels: Sequence[str] | None = None,
                  tolerance: float = 0.0) -> str:
    """``"A"`` if every adapter has the same A in every layer, else ``"B"`` if they share B; raises
    :class:`CombineError` (naming the first layer and adapters that differ) if they share neither.

    ``tolerance`` is the largest relative Frobenius difference still counted as equal (default 0:
    bit-identical, which seed-regenerated factors are).
    """
    if not factors:
        raise CombineError("no adapters given")
    labels = list(labels) if labels is not None else [f"adapter {i}" for i in range(len(factors))]
    first = factors[0]
    for i, f in enumerate(factors[1:], start=1):
        if set(f) != set(first):
            only_first = sorted(set(first) - set(f))[:3]
            only_this = sorted(set(f) - set(first))[:3]
            raise CombineError(f"{labels[i]} adapts other layers than {labels[0]} (only in {labels[0]}: "
                               f"{only_first}; only in {labels[i]}: {only_this}); combine adapters of one "
                               "configuration on one base model")
        for name, (a, b) in f.items():
            a0, b0 = first[name]
            if a.shape != a0.shape or b.shape != b0.shape:
                raise CombineError(f"layer {name!r}: {labels[i]} has A {tuple(a.shape)}, B {tuple(b.shape)} but "
                                   f"{labels[0]} has A {tuple(a0.shape)}, B {tuple(b0.shape)} (another rank or base)")
    mismatch: dict[str, tuple[str, int, float]] = {}
    for which, idx in (("A", 0), ("B", 1)):
        for name in first:
            ref = first[name][idx]
            for i, f in enumerate(factors[1:], start=1):
                value = f[name][idx]
                same = torch.equal(value, ref) if tolerance == 0 else _relative_difference(value, ref) <= tolerance
                if not same:
                    mismatch[which] = (name, i, _relative_difference(value, ref))
                    break
            if which in mismatch:
                break
        if which not in mismatch:
            return which
    name, i, diff = mismatch["A"]
    raise CombineError(
        f"{labels[i]} and {labels[0]} do not share a factor: in layer {name!r} their A (input projection) "
        f"differ by {diff:.3g} (relative) and their B (output projection) differ too. Then Σ wᵢ·Bᵢ·Aᵢ is not a "
        "rank-r adapter and no sum of factors gives it exactly. Exact combination needs B-only adapters made "
        "with the same seed on the same base model (AdapterConfig.preset('b-only', seed=...)); adapters that "
        "trained A (LoRA) or used another seed always differ. To apply such adapters together, merge them one "
        "after another into the base weights (asymlora.load_adapter + asymlora.unload(merge=True)).")


def combine_factors(factors: Sequence[Factors], scales: Sequence[Mapping[str, float]], weights: Sequence[float],
                    target_scales: Mapping[str, float], *, shared: str | None = None,
                    tolerance: float = 0.0) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """``{layer: (A, B)}`` of one adapter with s·B·A = Σ wᵢ sᵢ Bᵢ Aᵢ, where s = ``target_scales[layer]``.

    The shared factor (found by :func:`shared_factor` unless given) is kept; the other is
    Σ wᵢ·sᵢ/s·(factorᵢ), summed in float64 and returned in the first adapter's dtype.
    """
    if len(factors) != len(weights) or len(factors) != len(scales):
        raise CombineError(f"got {len(factors)} adapters, {len(scales)} scale maps and {len(weights)} weights")
    shared = shared or shared_factor(factors, tolerance=tolerance)
    summed_idx = 1 if shared == "A" else 0
    out = {}
    for name, pair in factors[0].items():
        s = float(target_scales[name])
        if s == 0:
            raise CombineError(f"layer {name!r}: target scale is 0")
        total = torch.zeros(pair[summed_idx].shape, dtype=torch.float64)
        for f, sc, w in zip(factors, scales, weights):
            total += (float(w) * float(sc[name]) / s) * f[name][summed_idx].detach().to("cpu", torch.float64)
        total = total.to(pair[summed_idx].dtype)
        out[name] = (pair[0], total) if shared == "A" else (total, pair[1])
    return out


def _check_weights(adapter_dirs: Sequence, weights: Sequence[float] | None) -> list[float]:
    if isinstance(adapter_dirs, (str, os.PathLike)):
        raise TypeError("adapter_dirs must be a list of adapter folders, not one path")
    if not adapter_dirs:
        raise CombineError("no adapters given: pass at least one adapter folder")
    if weights is None:
        return [1.0] * len(adapter_dirs)
    weights = [float(w) for w in weights]
    if len(weights) != len(adapter_dirs):
        raise CombineError(f"{len(adapter_dirs)} adapters but {len(weights)} weights; give one weight per adapter")
    bad = [w for w in weights if not math.isfinite(w)]
    if bad:
        raise CombineError(f"weights must be finite numbers, got {bad}")
    return weights


def combine(base_model: nn.Module, adapter_dirs: Sequence[str | os.PathLike],
            weights: Sequence[float] | None = None, *, train_modules: str = "arithmetic",
            tolerance: float = 0.0) -> nn.Module:
    """Load onto ``base_model`` one adapter whose ΔW is exactly Σ wᵢ ΔWᵢ of the adapters in ``adapter_dirs``.

    Args:
        base_model: a fresh copy of the base model the adapters were trained on; modified in place
            and returned (with asymlora layers, like :func:`asymlora.load_adapter`).
        adapter_dirs: asymlora adapter folders (:func:`asymlora.save_adapter`) that share a factor:
            B-only adapters made with the same seed on the same base share A (the usual case).
        weights: one weight per adapter (default all 1; negative weights subtract a task).
        train_modules: how full parameters trained beside the adapters are combined:
            ``"arithmetic"`` (θ0 + Σ wᵢ(θᵢ − θ0), θ0 = the base model's value), ``"first"`` (the first
            adapter's), ``"error"`` (refuse adapters that have any).
        tolerance: relative difference up to which two shared factors count as equal (default 0: the
            factors must be bit-identical, as seed-regenerated factors are).

    The result has the first adapter's configuration (layers, rank, scale, seed); its non-shared factor
    holds the weighted sum, so ``asymlora.save_adapter`` writes it like any adapter. Raises
    :class:`CombineError` if the adapters share no factor or adapt different layers.
    """
    weights = _check_weights(adapter_dirs, weights)
    if train_modules not in ("arithmetic", "first", "error"):
        raise ValueError(f"train_modules must be 'arithmetic', 'first' or 'error', got {train_modules!r}")
    dirs = [Path(d) for d in adapter_dirs]
    for d in dirs:
        if is_peft_folder(d):
            raise CombineError(f"{d} is a PEFT adapter; combine reads asymlora adapters. Import it with "
                               "asymlora.import_peft(..., train='B') and save it with asymlora.save_adapter "
                               "first (only adapters that share a factor can be combined exactly)")
    folders = [AdapterFolder.open(d) for d in dirs]
    labels = [str(d) for d in dirs]
    factors = [folder_factors(f, base_model) for f in folders]
    scales = [f.scales() for f in folders]
    shared = shared_factor(factors, labels=labels, tolerance=tolerance)

    module_sets = [f.train_modules for f in folders]
    if any(module_sets):
        if train_modules == "error":
            raise CombineError(f"{labels[[bool(s) for s in module_sets].index(True)]} trains full modules "
                               f"{list(next(s for s in module_sets if s))}; pass train_modules='arithmetic' or "
                               "'first' to combine them")
        if len(set(module_sets)) != 1:
            raise CombineError(f"the adapters train different full modules ({sorted(set(module_sets))}); "
                               "they cannot be combined as one adapter")
    base_params = ({n: p.detach().clone() for n, p in base_model.named_parameters()}
                   if any(module_sets) and train_modules == "arithmetic" else {})
    totals = _train_module_deltas(folders, weights, base_params) if base_params else {}
    # the first adapter's layers keep their scales (load checks them against its config)
    combined = combine_factors(factors, scales, weights, folders[0].scales(), shared=shared)

    model = load_folder(base_model, folders[0])  # all or nothing; what follows cannot fail
    layers = dict(adapted_layers(model))
    summed = "B" if shared == "A" else "A"
    for name, (a, b) in combined.items():
        layers[name].set_factor(summed, a if summed == "A" else b)

    if totals:
        params = dict(model.named_parameters())
        with torch.no_grad():
            for pname, delta in totals.items():
                base = base_params[pname]
                params[pname].copy_((base.to("cpu", torch.float64) + delta).to(base.dtype))
    return model


def _train_module_deltas(folders: Sequence[AdapterFolder], weights: Sequence[float],
                         base_params: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Σ wᵢ (θᵢ − θ0) for every parameter trained in full (θ0: the base model's value)."""
    totals: dict[str, torch.Tensor] = {}
    for folder, w in zip(folders, weights):
        for pname, value in folder.train_tensors.items():
            if pname not in base_params:
                raise CombineError(f"{folder.path}: trained parameter {pname!r} is not in the base model")
            delta = value.double() - base_params[pname].to("cpu", torch.float64)
            totals[pname] = totals.get(pname, torch.zeros_like(delta)) + w * delta
    return totals
