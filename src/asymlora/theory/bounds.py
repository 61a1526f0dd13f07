r"""Lemma B.5: information-theoretic generalisation bounds for adapting A and/or B (§B.2.2, App. F).

Fine-tune the matrices i ∈ I of a pretrained model with rank-r adapters, each trained number quantised
to q bits, on n i.i.d. examples, with a loss that is σ-sub-Gaussian (a loss bounded in [0, 1] is
½-sub-Gaussian). Xu & Raginsky (2017) bound |gen| ≤ √(2σ² I(ΔW; S_n) / n), and the mutual information
is at most the entropy of the trained numbers, ≤ (their count) × q bits = (count) × q ln 2 nats:

    |gen(μ, A_BA)| ≤ √( 2 r q σ² ln 2 / n · Σ_i (d_in⁽ⁱ⁾ + d_out⁽ⁱ⁾) )     (both factors, LoRA)
    |gen(μ, A_B)|  ≤ √( 2 r q σ² ln 2 / n · Σ_i d_out⁽ⁱ⁾ )               (A frozen at random, B trained)
    |gen(μ, A_A)|  ≤ √( 2 r q σ² ln 2 / n · Σ_i d_in⁽ⁱ⁾ )                (B frozen at random, A trained)

The sum is inside the square root, as the proof in Appendix F gives (the lemma's display in the
paper sets it outside; with it inside, the B-only bound is √2 smaller than LoRA's when
d_in = d_out, as the paper says). Equal bounds: B-only at rank r·Σ(d_in + d_out)/Σ d_out matches LoRA
at rank r, i.e. 2r for square matrices (§B.3).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from ..inject import adapted_layers

__all__ = ["TUNED", "generalization_bound", "trainable_numbers", "equal_bound_rank", "model_layer_dims",
           "bound_table"]

TUNED = ("BA", "B", "A")


def _dims(layer_dims) -> list[tuple[int, int]]:
    out = []
    for item in layer_dims:
        if len(item) == 3:  # (name, d_in, d_out), as model_layer_dims returns
            item = item[1:]
        if len(item) != 2:
            raise ValueError(f"each layer must be (d_in, d_out) or (name, d_in, d_out), got {item!r}")
        d_in, d_out = int(item[0]), int(item[1])
        if d_in < 1 or d_out < 1:
            raise ValueError(f"layer dimensions must be positive, got d_in={d_in}, d_out={d_out}")
        out.append((d_in, d_out))
    if not out:
        raise ValueError("layer_dims is empty: give at least one (d_in, d_out) pair")
    return out


def _dim_sum(dims: list[tuple[int, int]], tuned: str) -> int:
    if tuned == "BA":
        return sum(i + o for i, o in dims)
    if tuned == "B":
        return sum(o for _, o in dims)
    if tuned == "A":
        return sum(i for i, _ in dims)
    raise ValueError(f"tuned must be one of {TUNED} (which factors are trained), got {tuned!r}")


def trainable_numbers(layer_dims: Iterable, rank: int, tuned: str = "BA") -> int:
    """Trained numbers (§B.2.1): r Σ(d_in + d_out) for LoRA, r Σ d_out for B-only, r Σ d_in for A-only."""
    return int(rank) * _dim_sum(_dims(layer_dims), tuned)


def generalization_bound(layer_dims: Iterable, rank: int, bits: float, sigma: float, n: int,
                         tuned: str = "BA") -> float:
    r"""Lemma B.5: √(2 r q σ² ln 2 / n · Σ_i D_i) with D_i = d_in + d_out ("BA"), d_out ("B") or d_in ("A").

    Args:
        layer_dims: the adapted matrices as (d_in, d_out) pairs (or (name, d_in, d_out) triples,
            as :func:`model_layer_dims` returns).
        rank: r. bits: q, the bits each trained number is stored with (32 for fp32).
        sigma: the loss's sub-Gaussian parameter (½ for a loss bounded in [0, 1]).
        n: the number of training examples.
        tuned: "BA" (LoRA), "B" (A frozen at random) or "A" (B frozen at random).
    """
    if int(rank) < 1 or float(bits) <= 0 or float(sigma) < 0 or int(n) < 1:
        raise ValueError(f"need rank >= 1, bits > 0, sigma >= 0, n >= 1; got rank={rank}, bits={bits}, "
                         f"sigma={sigma}, n={n}")
    count = trainable_numbers(layer_dims, rank, tuned)
    return math.sqrt(2.0 * float(bits) * float(sigma) ** 2 * math.log(2.0) * count / int(n))


def equal_bound_rank(layer_dims: Iterable, rank: int, tuned: str = "B") -> tuple[float, int]:
    """The rank at which ``tuned`` ("B" or "A") has the same Lemma B.5 bound as LoRA at ``rank``.

    Returns ``(exact, largest_integer)``: r·Σ(d_in + d_out)/Σ D (2r when every layer is square) and the
    largest integer rank whose bound does not exceed LoRA's.
    """
    if tuned not in ("B", "A"):
        raise ValueError(f"tuned must be 'B' or 'A', got {tuned!r}")
    dims = _dims(layer_dims)
    exact = int(rank) * _dim_sum(dims, "BA") / _dim_sum(dims, tuned)
    return exact, int(int(rank) * _dim_sum(dims, "BA") // _dim_sum(dims, tuned))


def model_layer_dims(model) -> list[tuple[str, int, int]]:
    """``(qualified name, d_in, d_out)`` of every adapted layer of a model that ``asymlora.inject``
    has wrapped (read through ``asymlora.adapted_layers``)."""
    dims = [(name, int(layer.d_in), int(layer.d_out)) for name, layer in adapted_layers(model)]
    if not dims:
        raise ValueError("the model has no asymlora adapters; call asymlora.inject(model, cfg) first")
    return dims


def bound_table(layer_dims: Iterable, rank: int, bits: float, sigma: float, n: int) -> list[dict]:
    """Rows for LoRA at ``rank``, B-only and A-only at ``rank``, and B-only / A-only at the rank where
    their bound meets LoRA's: method, rank, trained numbers, bound, ratio to LoRA's bound."""
    dims = _dims(layer_dims)
    ref = generalization_bound(dims, rank, bits, sigma, n, "BA")
    rows = []
    for tuned, r in (("BA", rank), ("B", rank), ("A", rank), ("B", equal_bound_rank(dims, rank, "B")[1]),
                     ("A", equal_bound_rank(dims, rank, "A")[1])):
        b = generalization_bound(dims, r, bits, sigma, n, tuned)
        rows.append({"tuned": tuned, "rank": int(r), "trainable": trainable_numbers(dims, r, tuned),
                     "bound": b, "ratio_to_lora": b / ref})
    return rows
