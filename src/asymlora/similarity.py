r"""Similarity of learned adapter factors across runs (paper Appendix D, Figure 1).

ΔW = B A = (B C)(C⁻¹ A) for every invertible r × r matrix C, so a useful similarity of factors must
not change under that change of basis. Appendix D uses the goodness of fit of canonical correlation
analysis on orthonormal bases: for X (n × r₁) and Y (n × r₂) with orthonormal column bases U_X, U_Y,

    sim(X, Y) = ‖U_Yᵀ U_X‖²_F / min(r₁, r₂)  ∈ [0, 1],

the mean squared cosine of the principal angles between the two column spaces. For a factor pair the
bases are the right singular vectors of A (its row space, in the input space R^{d_in}) and the left
singular vectors of B (its column space, in R^{d_out}). Row space of C⁻¹A = row space of A and column
space of BC = column space of B, hence the invariance.

Rank-deficient and zero factors: the bases keep only the singular vectors whose singular value is
above ``rtol`` × the largest (the numerical rank k ≤ r), and r₁, r₂ in the formula are those numerical
ranks, so the score stays in [0, 1] and is 1 exactly when one space contains the other. A zero factor
spans nothing: its similarity with anything is defined as 0. Two random k-dimensional subspaces of R^n
score k/n on average (:func:`random_baseline`), the level "unrelated" should be read against.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from .checkpoint import read_factors
from .plots import new_figure, save_figure

__all__ = [
    "orthonormal_basis",
    "subspace_similarity",
    "factor_similarity",
    "random_baseline",
    "RunSimilarity",
    "compare_runs",
    "compare_checkpoints",
    "format_table",
    "plot_similarity",
]

_DTYPE = torch.float64


def orthonormal_basis(x, rtol: float | None = None) -> torch.Tensor:
    """Orthonormal basis (n × k) of the column space of ``x`` (n × r), k its numerical rank.

    Left singular vectors with singular value > ``rtol`` × the largest. The default ``rtol`` is
    max(n, r) × the machine epsilon of ``x``'s own dtype (as ``numpy.linalg.matrix_rank``), so a
    factor saved in float32 or bfloat16 is judged at that precision; the SVD itself runs in float64.
    """
    t = torch.as_tensor(x).detach()
    if t.ndim != 2:
        raise ValueError(f"expected a matrix (2-D), got shape {tuple(t.shape)}")
    if not torch.isfinite(t).all():
        raise ValueError("the matrix contains NaN or infinite entries")
    if rtol is None:
        eps = torch.finfo(t.dtype).eps if t.dtype.is_floating_point else torch.finfo(_DTYPE).eps
        rtol = max(t.shape) * eps
    t = t.to(device="cpu", dtype=_DTYPE)
    if t.numel() == 0:
        return t.new_zeros(t.shape[0], 0)
    u, s, _ = torch.linalg.svd(t, full_matrices=False)
    if s.numel() == 0 or float(s[0]) == 0.0:
        return t.new_zeros(t.shape[0], 0)
    return u[:, s > rtol * s[0]]


def subspace_similarity(x, y, rtol: float | None = None) -> float:
    """Appendix D: ‖U_Yᵀ U_X‖²_F / min(r₁, r₂) for the column spaces of X (n × r₁) and Y (n × r₂).

    r₁, r₂ are the numerical ranks (see :func:`orthonormal_basis`); 0.0 when either matrix is zero.
    Symmetric in X and Y; invariant to X → X C₁, Y → Y C₂ for invertible C₁, C₂.
    """
    ux, uy = orthonormal_basis(x, rtol), orthonormal_basis(y, rtol)
    if ux.shape[0] != uy.shape[0]:
        raise ValueError(f"X and Y must have the same number of rows (the ambient dimension n), "
                         f"got {ux.shape[0]} and {uy.shape[0]}")
    return _basis_similarity(ux, uy)


def factor_similarity(f1, f2, factor: str = "B", rtol: float | None = None) -> float:
    """Similarity of two learned A's (``factor="A"``: r × d_in, right singular vectors, i.e. row
    spaces) or two learned B's (``factor="B"``: d_out × r, left singular vectors, column spaces),
    as in the paper's Figure 1. Invariant to (B C, C⁻¹ A) for every invertible C."""
    if factor == "A":
        return subspace_similarity(torch.as_tensor(f1).T, torch.as_tensor(f2).T, rtol)
    if factor == "B":
        return subspace_similarity(f1, f2, rtol)
    raise ValueError(f"factor must be 'A' or 'B', got {factor!r}")


def random_baseline(n: int, r1: int, r2: int | None = None) -> float:
    """E[sim] for independent uniformly random subspaces of dimensions r₁, r₂ in R^n: max(r₁, r₂)/n
    (E‖U_Yᵀ U_X‖²_F = r₁ r₂ / n)."""
    r2 = r1 if r2 is None else r2
    if n < 1 or not (1 <= r1 <= n and 1 <= r2 <= n):
        raise ValueError(f"need 1 <= r1, r2 <= n, got n={n}, r1={r1}, r2={r2}")
    return max(r1, r2) / n


# ---- across runs ----------------------------------------------------------------------------------

FactorSet = Mapping[str, tuple[torch.Tensor, torch.Tensor]]


@dataclass
class RunSimilarity:
    """Per-layer similarity matrices of A and of B across runs.

    ``a[l, i, j]`` is the similarity of layer ``layers[l]``'s A in run i and run j (likewise ``b``);
    the diagonal is 1 (0 for a zero factor). ``baseline_a[l]`` / ``baseline_b[l]`` are the
    random-subspace levels r/d_in and r/d_out of that layer.
    """

    runs: list[str]
    layers: list[str]
    a: torch.Tensor  # L × R × R
    b: torch.Tensor  # L × R × R
    baseline_a: list[float]
    baseline_b: list[float]
    skipped: dict[str, str]  # layer -> why it was left out

    def pairs(self) -> list[tuple[int, int]]:
        return list(itertools.combinations(range(len(self.runs)), 2))

    def pair_labels(self) -> list[str]:
        return [f"{self.runs[i]}~{self.runs[j]}" for i, j in self.pairs()]

    def pair_matrix(self, factor: str) -> torch.Tensor:
        """L × P: the similarity of every layer for every unordered pair of runs (Figure 1's layout)."""
        m = {"A": self.a, "B": self.b}[factor]
        idx = self.pairs()
        if not idx:
            return torch.zeros(len(self.layers), 0, dtype=_DTYPE)
        return torch.stack([m[:, i, j] for i, j in idx], dim=1)

    def to_dict(self) -> dict:
        return {"runs": self.runs, "layers": self.layers, "pairs": self.pair_labels(),
                "A": self.a.tolist(), "B": self.b.tolist(),
                "A_pairs": self.pair_matrix("A").tolist(), "B_pairs": self.pair_matrix("B").tolist(),
                "baseline_A": self.baseline_a, "baseline_B": self.baseline_b, "skipped": self.skipped}


# Figure 1's three scenarios, by what two runs share.
SCENARIOS = {
    "same task, different init": "(a)",
    "same init, different task": "(b)",
    "different init and task": "(c)",
}


def scenario_of(task_i: str, init_i, task_j: str, init_j) -> str | None:
    """Which of Figure 1's scenarios a pair of runs is (None for two runs of the same task and init)."""
    same_task, same_init = task_i == task_j, init_i == init_j
    if same_task and same_init:
        return None
    if same_task:
        return "same task, different init"
    if same_init:
        return "same init, different task"
    return "different init and task"


def scenario_summary(result: RunSimilarity, tasks: Sequence[str], inits: Sequence) -> dict[str, dict]:
    """Figure 1 in numbers: for each scenario, its run pairs and the similarity of A and of B averaged
    over them, per layer and over all layers.

    ``tasks[i]`` and ``inits[i]`` describe run ``i`` (the init is anything that is equal exactly when
    two runs start from the same adapter factors, e.g. ``(method, rank, seed)``). The paper's finding
    is that A follows the init ((b) high, (a) and (c) near random) while B follows the task ((a) above
    (b) and (c)).
    """
    if len(tasks) != len(result.runs) or len(inits) != len(result.runs):
        raise ValueError(f"need a task and an init for each of the {len(result.runs)} runs")
    pa, pb = result.pair_matrix("A"), result.pair_matrix("B")
    groups: dict[str, list[int]] = {name: [] for name in SCENARIOS}
    for k, (i, j) in enumerate(result.pairs()):
        name = scenario_of(tasks[i], inits[i], tasks[j], inits[j])
        if name is not None:
            groups[name].append(k)
    out = {}
    for name, ks in groups.items():
        if not ks:
            continue
        a, b = pa[:, ks].mean(dim=1), pb[:, ks].mean(dim=1)
        out[name] = {"label": SCENARIOS[name], "pairs": [result.pair_labels()[k] for k in ks],
                     "A": float(a.mean()), "B": float(b.mean()), "A_per_layer": a.tolist(), "B_per_layer": b.tolist()}
    return out


def format_scenarios(summary: Mapping[str, dict], baseline_a: float, baseline_b: float) -> str:
    """A plain-text version of :func:`scenario_summary`: one line per scenario, then the random levels."""
    lines = [f"{'scenario':<32} {'pairs':>5}  {'A':>6}  {'B':>6}"]
    for name, row in summary.items():
        lines.append(f"{row['label'] + ' ' + name:<32} {len(row['pairs']):>5}  {row['A']:6.3f}  {row['B']:6.3f}")
    lines.append(f"{'random subspaces (r/d)':<32} {'':>5}  {baseline_a:6.3f}  {baseline_b:6.3f}")
    return "\n".join(lines)


def compare_runs(factor_sets: Mapping[str, FactorSet] | Sequence[FactorSet], labels: Sequence[str] | None = None,
                 rtol: float | None = None) -> RunSimilarity:
    """Similarity matrices of A and B for every layer present in all runs.

    ``factor_sets``: run label → ``{layer name: (A, B)}`` (A r × d_in, B d_out × r), e.g. from
    ``asymlora.read_factors``; or a sequence of such dicts with ``labels``. Layers missing from some
    run, or whose d_in / d_out differ between runs, are left out and listed in ``skipped``; ranks may
    differ. Raises ``ValueError`` when fewer than two runs or no common layer remain.
    """
    if isinstance(factor_sets, Mapping):
        runs = [str(k) for k in factor_sets]
        sets = list(factor_sets.values())
    else:
        sets = list(factor_sets)
        runs = [str(x) for x in labels] if labels is not None else [f"run{i}" for i in range(len(sets))]
    if len(runs) != len(sets):
        raise ValueError(f"{len(labels)} labels for {len(sets)} runs")
    if len(sets) < 2:
        raise ValueError(f"need at least two runs to compare, got {len(sets)}")
    all_names = list(dict.fromkeys(n for s in sets for n in s))
    skipped, layers = {}, []
    for name in all_names:
        missing = [runs[i] for i, s in enumerate(sets) if name not in s]
        if missing:
            skipped[name] = f"missing in {', '.join(missing)}"
            continue
        shapes = {(tuple(s[name][0].shape)[1], tuple(s[name][1].shape)[0]) for s in sets}
        if len(shapes) > 1:
            skipped[name] = f"(d_in, d_out) differ across runs: {sorted(shapes)}"
            continue
        layers.append(name)
    if not layers:
        raise ValueError("no layer is present, with the same shape, in every run: "
                         + "; ".join(f"{k}: {v}" for k, v in list(skipped.items())[:5]))
    n_runs = len(sets)
    a = torch.zeros(len(layers), n_runs, n_runs, dtype=_DTYPE)
    b = torch.zeros_like(a)
    base_a, base_b = [], []
    for li, name in enumerate(layers):
        bases_a = [orthonormal_basis(torch.as_tensor(s[name][0]).T, rtol) for s in sets]
        bases_b = [orthonormal_basis(s[name][1], rtol) for s in sets]
        for i in range(n_runs):
            for j in range(i, n_runs):
                a[li, i, j] = a[li, j, i] = _basis_similarity(bases_a[i], bases_a[j])
                b[li, i, j] = b[li, j, i] = _basis_similarity(bases_b[i], bases_b[j])
        a0, b0 = sets[0][name]
        r = int(a0.shape[0])
        base_a.append(random_baseline(int(a0.shape[1]), min(r, int(a0.shape[1]))))
        base_b.append(random_baseline(int(b0.shape[0]), min(r, int(b0.shape[0]))))
    return RunSimilarity(runs, layers, a, b, base_a, base_b, skipped)


def _basis_similarity(ux: torch.Tensor, uy: torch.Tensor) -> float:
    """‖U_Yᵀ U_X‖²_F / min(k₁, k₂) for orthonormal bases; 0 when either is empty; round-off clipped to [0, 1]."""
    k = min(ux.shape[1], uy.shape[1])
    if k == 0:
        return 0.0
    return min(max(float((uy.T @ ux).pow(2).sum()) / k, 0.0), 1.0)


def compare_checkpoints(paths: Sequence, labels: Sequence[str] | None = None, base_model=None,
                        rtol: float | None = None) -> RunSimilarity:
    """:func:`compare_runs` on saved adapters (asymlora or PEFT LoRA folders, read with
    ``asymlora.read_factors``; ``base_model`` is needed only for factors frozen to the SVD of W0)."""
    paths = list(paths)
    if labels is None:
        labels = short_labels([str(p) for p in paths])
    sets = [read_factors(p, base_model=base_model) for p in paths]
    return compare_runs(sets, labels=labels, rtol=rtol)


def short_labels(paths: list[str]) -> list[str]:
    """The shortest distinct trailing path parts (``runs/a/seed0`` and ``runs/a/seed1`` → ``seed0``, ``seed1``)."""
    parts = [p.rstrip("/").split("/") for p in paths]
    for depth in range(1, max(len(p) for p in parts) + 1):
        labels = ["/".join(p[-depth:]) for p in parts]
        if len(set(labels)) == len(labels):
            return labels
    return paths


def format_table(result: RunSimilarity, max_pairs: int = 6) -> str:
    """Plain-text table: one row per layer, the A and B similarity of each run pair (up to
    ``max_pairs`` shown), their means, and the random-subspace baselines; a final row of means."""
    pairs = result.pair_labels()
    pa, pb = result.pair_matrix("A"), result.pair_matrix("B")
    shown = list(range(min(len(pairs), max_pairs)))
    width = max([len("layer"), *(len(n) for n in result.layers), len("mean")])
    head = [f"{'layer':<{width}}"]
    head += [f"A[{k}]".rjust(6) for k in shown] + ["A mean", "A rand"]
    head += [f"B[{k}]".rjust(6) for k in shown] + ["B mean", "B rand"]
    lines = ["  ".join(head)]

    def fmt_row(label, ra, rb, base_a, base_b):
        cells = [f"{label:<{width}}"]
        cells += [f"{float(ra[k]):6.3f}" for k in shown] + [f"{float(ra.mean()) if ra.numel() else math.nan:6.3f}",
                                                            f"{base_a:6.3f}"]
        cells += [f"{float(rb[k]):6.3f}" for k in shown] + [f"{float(rb.mean()) if rb.numel() else math.nan:6.3f}",
                                                            f"{base_b:6.3f}"]
        return "  ".join(cells)

    for li, name in enumerate(result.layers):
        lines.append(fmt_row(name, pa[li], pb[li], result.baseline_a[li], result.baseline_b[li]))
    lines.append(fmt_row("mean", pa.mean(dim=0), pb.mean(dim=0),
                         sum(result.baseline_a) / len(result.baseline_a),
                         sum(result.baseline_b) / len(result.baseline_b)))
    legend = [f"pair [{k}]: {pairs[k]}" for k in shown]
    if len(pairs) > len(shown):
        legend.append(f"(+{len(pairs) - len(shown)} more pairs, in the means and the JSON)")
    legend.append("rand: expected similarity of random subspaces of the same rank (r/d)")
    if result.skipped:
        legend.append(f"skipped {len(result.skipped)} layer(s): "
                      + "; ".join(f"{k} ({v})" for k, v in list(result.skipped.items())[:3]))
    return "\n".join(lines + legend)


def plot_similarity(result: RunSimilarity, path, title: str | None = None):
    """Figure 1's heatmap: layers × run pairs, A and B side by side, colour scale [0, 1]. Writes a PNG."""
    pa, pb = result.pair_matrix("A").numpy(), result.pair_matrix("B").numpy()
    n_layers, n_pairs = pa.shape
    width = max(7.0, 3.0 + 0.9 * max(n_pairs, 1))
    height = max(3.5, 2.2 + 0.22 * n_layers)
    fig, axes = new_figure(1, 2, figsize=(width, height))
    im = None
    annotate = n_layers * n_pairs <= 120
    for ax, m, name in ((axes[0], pa, "A"), (axes[1], pb, "B")):
        im = ax.imshow(m, vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto", interpolation="nearest")
        ax.set_title(f"{name}: mean {m.mean():.2f}" if m.size else name)
        ax.set_xticks(range(n_pairs))
        ax.set_xticklabels(result.pair_labels(), rotation=60, ha="right", fontsize=7)
        ax.set_yticks(range(n_layers))
        ax.set_yticklabels(result.layers if ax is axes[0] else [""] * n_layers, fontsize=7)
        ax.set_xlabel("run pair")
        if annotate:
            for (i, j), v in numpy_ndenumerate(m):
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=6,
                        color="black" if v > 0.6 else "white")
    axes[0].set_ylabel("layer")
    fig.colorbar(im, ax=list(axes), shrink=0.8, label="similarity (Appendix D)")
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)


def plot_scenarios(summary: Mapping[str, dict], result: RunSimilarity, path, title: str | None = None):
    """Figure 1 by scenario: similarity per layer (x) for each scenario (one line each), A and B side by
    side, the random-subspace level dashed. Writes a PNG."""
    layers = [short_layer_name(n) for n in result.layers]
    fig, axes = new_figure(1, 2, figsize=(max(8.0, 4.0 + 0.45 * len(layers)), 4.0))
    for ax, factor, base in ((axes[0], "A", result.baseline_a), (axes[1], "B", result.baseline_b)):
        for name, row in summary.items():
            ax.plot(range(len(layers)), row[f"{factor}_per_layer"], marker="o",
                    label=f"{row['label']} {name} ({len(row['pairs'])} pairs)")
        ax.plot(range(len(layers)), base, "k--", linewidth=1, label="random subspaces (r/d)")
        ax.set_title(f"learned {factor}")
        ax.set_ylim(0.0, 1.0)
        ax.set_xticks(range(len(layers)))
        ax.set_xticklabels(layers, rotation=60, ha="right", fontsize=7)
        ax.set_xlabel("layer")
    axes[0].set_ylabel("similarity (Appendix D), mean over pairs")
    axes[1].legend(fontsize=7, loc="upper right")
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)


def short_layer_name(name: str) -> str:
    """``bert.encoder.layer.5.attention.self.query`` → ``5.query``: the block index and the leaf."""
    digits = [part for part in name.split(".") if part.isdigit()]
    leaf = name.rsplit(".", 1)[-1]
    return f"{'.'.join(digits)}.{leaf}" if digits else leaf


def numpy_ndenumerate(m):
    """``numpy.ndenumerate`` without importing numpy at module import."""
    import numpy

    return numpy.ndenumerate(m)
