r"""Theorem B.3 (= 3.3) as a Monte Carlo experiment, and the "extreme example" of §B.1.1.

Theorem B.3. With U (d_out × r) and Q (r × d_in) uniform on their Stiefel manifolds,
L(A*, U) ≥ L(Q, B*) with high probability as d/r → ∞; i.e. training B with a random frozen A fits at
least as well as training A with a random frozen B. Both losses share d_out σ² + Tr[Δ Σ Δᵀ], so

    L(A*, U) − L(Q, B*) = III_A − III_B,
    III_A = Tr[Q Σ Δᵀ Δ Σ Qᵀ (Q Σ Qᵀ)⁻¹]   (explained by B-only),
    III_B = Tr[Uᵀ Δ Σ Δᵀ U]                (explained by A-only).

The paper's intuition (§B.1.1): for Σ = s² U_X U_Xᵀ of rank r_X = r, III_A = s² Tr[U_X U_Xᵀ Δᵀ Δ] for
every Q and the expected gap is (1 − r/d) s² Tr[U_X U_Xᵀ Δᵀ Δ]. (With d_out = d, E_U[U Uᵀ] = (r/d) I
exactly, so for this family the expectation is exact at every d, not only in the limit.)

The experiment draws, per trial, a covariance Σ from a family, a Δ from a family, and independent
Haar Q and U, and reports P[L(A*, U) ≥ L(Q, B*)] and the mean gap as d/r grows. Δ is scaled so that
Tr[Δ Σ Δᵀ] = 1: every excess loss (loss − d_out σ²) is then the fraction of the explainable output
variance left unexplained, and the noise cancels from the gap.

Σ families: ``isotropic`` (I), ``lowrank`` (s² U_X U_Xᵀ, U_X Haar of rank r_X, s² = d / r_X),
``decaying`` (V diag(k^−decay) Vᵀ, V Haar, trace-normalised to d). Δ families: ``gaussian`` (iid
entries, full rank) and ``lowrank`` (product of two Gaussian matrices of rank ``delta_rank``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

from ..init import haar
from .least_squares import DEFAULT_RCOND, freeze_a_optimum, freeze_b_optimum, joint_optimum, random_stiefel

__all__ = [
    "SIGMA_FAMILIES",
    "DELTA_FAMILIES",
    "TheoremCell",
    "theorem_experiment",
    "sample_instances",
    "explained_terms",
    "ExtremeExample",
    "extreme_example",
]

SIGMA_FAMILIES = ("isotropic", "lowrank", "decaying")
DELTA_FAMILIES = ("gaussian", "lowrank")
_DTYPE = torch.float64


def sample_instances(t: int, d: int, *, sigma: str, delta: str, r_x: int, delta_rank: int,
                     decay: float, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Draw ``t`` (Σ^½-factor F, Δ) pairs with d_in = d_out = d; Σ = F Fᵀ and Tr[Δ Σ Δᵀ] = 1.

    Returns ``(F, Δ, U_X)``: F is t × d × k (k = r_X for ``lowrank``, d otherwise), Δ is t × d × d,
    U_X the t × d × r_X basis for the ``lowrank`` family (``None`` otherwise).
    """
    if sigma not in SIGMA_FAMILIES:
        raise ValueError(f"unknown covariance family {sigma!r}; choose from {SIGMA_FAMILIES}")
    if delta not in DELTA_FAMILIES:
        raise ValueError(f"unknown delta family {delta!r}; choose from {DELTA_FAMILIES}")
    u_x = None
    if sigma == "isotropic":
        f = torch.eye(d, dtype=_DTYPE).expand(t, d, d)
    elif sigma == "lowrank":
        if not 1 <= r_x <= d:
            raise ValueError(f"r_x must be in [1, d={d}], got {r_x}")
        u_x = haar(d, r_x, gen, batch=(t,))
        f = u_x * math.sqrt(d / r_x)
    else:
        v = haar(d, d, gen, batch=(t,))
        lam = torch.arange(1, d + 1, dtype=_DTYPE) ** (-float(decay))
        lam = lam * (d / lam.sum())
        f = v * lam.sqrt()
    if delta == "gaussian":
        dm = torch.randn(t, d, d, generator=gen, dtype=_DTYPE)
    else:
        k = min(int(delta_rank), d)
        dm = torch.randn(t, d, k, generator=gen, dtype=_DTYPE) @ torch.randn(t, k, d, generator=gen, dtype=_DTYPE)
    df = dm @ f
    norm2 = (df * df).sum(dim=(-2, -1))  # Tr[Δ Σ Δᵀ]
    dm = dm / norm2.sqrt()[:, None, None]
    return f, dm, u_x


def explained_terms(f: torch.Tensor, dm: torch.Tensor, q: torch.Tensor, u: torch.Tensor,
                    rank: int) -> dict[str, torch.Tensor]:
    """Batched III_A, III_B and the LoRA optimum for Σ = F Fᵀ (pseudo-inverse for singular QΣQᵀ).

    With G = Q F and H = Δ F: III_A = Tr[H Gᵀ (G Gᵀ)⁺ G Hᵀ] = ‖H P_row(G)‖², III_B = ‖Uᵀ H‖²,
    and the best rank-r (LoRA) fit explains Σ_{i≤r} s_i(H)². Shapes: F t×d×k, Δ t×d×d, Q t×r×d, U t×d×r.
    """
    h = dm @ f  # Δ F, t × d_out × k
    g = q @ f  # Q F, t × r × k
    # Orthonormal basis of G's row space via SVD; drop directions below the relative floor.
    _, sv, vh = torch.linalg.svd(g, full_matrices=False)
    keep = (sv > (DEFAULT_RCOND ** 0.5) * sv[:, :1]).to(_DTYPE)
    hv = h @ vh.transpose(-2, -1)  # t × d_out × r
    iii_a = ((hv * hv) * keep[:, None, :]).sum(dim=(-2, -1))
    uh = u.transpose(-2, -1) @ h
    iii_b = (uh * uh).sum(dim=(-2, -1))
    total = (h * h).sum(dim=(-2, -1))
    top = torch.linalg.svdvals(h)[:, :rank]
    lora = (top * top).sum(dim=-1)
    return {"iii_a": iii_a, "iii_b": iii_b, "total": total, "lora": lora}


@dataclass
class TheoremCell:
    """One (Σ family, Δ family, d, r) cell of the experiment. Losses are excess losses
    (loss − d_out σ²) as fractions of Tr[Δ Σ Δᵀ]; gap = L(A*, U) − L(Q, B*) in the same units."""

    sigma: str
    delta: str
    d: int
    rank: int
    trials: int
    prob_b_wins: float  # P[L(A*, U) >= L(Q, B*)]
    prob_se: float
    gap_mean: float
    gap_se: float
    loss_b_only: float  # mean L(Q, B*) excess: A frozen to Q, B trained (Lemma B.1)
    loss_a_only: float  # mean L(A*, U) excess: B frozen to U, A trained (Lemma B.2)
    loss_lora: float  # mean best rank-r excess (both trained)
    paper_gap: float | None  # mean (1 − r/d) Tr[Σ Δᵀ Δ] (= (1 − r/d) s² Tr[U_X U_Xᵀ ΔᵀΔ]); lowrank Σ only

    @property
    def ratio(self) -> float:
        return self.d / self.rank

    def to_dict(self) -> dict:
        out = asdict(self)
        out["d_over_r"] = self.ratio
        return out


def theorem_experiment(ds, rank: int = 4, trials: int = 200, *, sigmas=SIGMA_FAMILIES,
                       deltas=DELTA_FAMILIES, r_x: int | None = None, delta_rank: int | None = None,
                       decay: float = 1.0, seed: int = 0, chunk: int = 64) -> list[TheoremCell]:
    """Monte Carlo of Theorem B.3 over d ∈ ``ds`` (d_in = d_out = d) at a fixed ``rank``.

    For each cell, ``trials`` independent draws of (Σ, Δ, Q, U); Q, U Haar on their Stiefel
    manifolds. ``r_x`` (default ``rank``) is the rank of the ``lowrank`` Σ family, ``delta_rank``
    (default ``rank``) that of the ``lowrank`` Δ family, ``decay`` the exponent of the
    ``decaying`` family. Ties (|gap| below 1e-9) count as L(A*, U) >= L(Q, B*).
    Every cell uses its own generator seeded from (seed, family, d), so cells are reproducible alone.
    """
    r = int(rank)
    r_x = r if r_x is None else int(r_x)
    delta_rank = r if delta_rank is None else int(delta_rank)
    cells = []
    for si, sigma in enumerate(sigmas):
        for di, delta in enumerate(deltas):
            for d in ds:
                d = int(d)
                if d < r:
                    raise ValueError(f"every d must be >= rank={r}, got d={d}")
                gen = torch.Generator().manual_seed(int(seed) * 1_000_003 + si * 10_007 + di * 101 + d)
                parts = {k: [] for k in ("iii_a", "iii_b", "total", "lora", "paper")}
                done = 0
                while done < trials:
                    t = min(chunk, trials - done)
                    f, dm, u_x = sample_instances(t, d, sigma=sigma, delta=delta, r_x=r_x,
                                                  delta_rank=delta_rank, decay=decay, gen=gen)
                    q = haar(d, r, gen, batch=(t,)).transpose(-2, -1)
                    u = haar(d, r, gen, batch=(t,))
                    terms = explained_terms(f, dm, q, u, r)
                    for k, v in terms.items():
                        parts[k].append(v)
                    if u_x is not None:
                        df = dm @ f
                        parts["paper"].append((1 - r / d) * (df * df).sum(dim=(-2, -1)))
                    done += t
                cat = {k: torch.cat(v) for k, v in parts.items() if v}
                gap = cat["iii_a"] - cat["iii_b"]
                wins = (gap >= -1e-9).to(_DTYPE)
                p = float(wins.mean())
                n = gap.numel()
                cells.append(TheoremCell(
                    sigma=sigma, delta=delta, d=d, rank=r, trials=n,
                    prob_b_wins=p, prob_se=math.sqrt(max(p * (1 - p), 0.0) / n),
                    gap_mean=float(gap.mean()), gap_se=float(gap.std(unbiased=True) / math.sqrt(n)) if n > 1 else 0.0,
                    loss_b_only=float((cat["total"] - cat["iii_a"]).mean()),
                    loss_a_only=float((cat["total"] - cat["iii_b"]).mean()),
                    loss_lora=float((cat["total"] - cat["lora"]).mean()),
                    paper_gap=float(cat["paper"].mean()) if "paper" in cat else None,
                ))
    return cells


@dataclass
class ExtremeExample:
    """Numbers of the §B.1.1 extreme example (see :func:`extreme_example`)."""

    d_in: int
    d_out: int
    rank: int
    r_x: int
    n: int
    rebuild_rel_error: float  # max |B Q X − B_* A_* X| / max |B_* A_* X| over the samples
    excess_b_only: float  # L(Q, B*) − d_out σ², as a fraction of Tr[Δ Σ Δᵀ]
    excess_lora: float  # best rank-r (both factors tuned) excess, same units
    excess_a_only: float  # L(A*, U) − d_out σ², same units

    def to_dict(self) -> dict:
        return asdict(self)


def extreme_example(d_in: int = 64, d_out: int = 64, rank: int = 4, r_x: int | None = None,
                    n: int = 256, seed: int = 0) -> ExtremeExample:
    r"""§B.1.1's extreme example: if rank(Σ) ≤ r, a random frozen A = Q is as expressive as a tuned A.

    With Σ = F Fᵀ (F: d_in × r_X) every input is X = F N. For any pair (A_*, B_*) and any Q with
    Q F of full column rank, B = B_* A_* F (Q F)⁺ gives B Q X = B_* A_* X exactly (the paper writes
    (QF)⁻¹ for r_X = r). This function draws F, N, an arbitrary pair (A_*, B_*) and a Haar Q, reports
    the relative error of that reconstruction on n samples, and, for a random Δ, the excess losses of
    B-only with Q (Lemma B.1, pseudo-inverse), of the best rank-r LoRA, and of A-only with a Haar U
    (Lemma B.2). With r_X ≤ r the first two are 0 (to rounding); with r_X > r (pass r_x) they are not.
    """
    r = int(rank)
    r_x = r if r_x is None else int(r_x)
    gen = torch.Generator().manual_seed(int(seed))
    f = torch.randn(d_in, r_x, generator=gen, dtype=_DTYPE)
    x = f @ torch.randn(r_x, n, generator=gen, dtype=_DTYPE)  # columns are samples
    a_t = torch.randn(r, d_in, generator=gen, dtype=_DTYPE)
    b_t = torch.randn(d_out, r, generator=gen, dtype=_DTYPE)
    q = random_stiefel(r, d_in, gen)
    b = b_t @ a_t @ f @ torch.linalg.pinv(q @ f)
    ref = b_t @ a_t @ x
    rel = float((b @ q @ x - ref).abs().max() / ref.abs().max())

    cov = f @ f.T
    delta = torch.randn(d_out, d_in, generator=gen, dtype=_DTYPE)
    total = float(torch.trace(delta @ cov @ delta.T))
    u = random_stiefel(d_out, r, gen)
    _, loss_b = freeze_a_optimum(delta, cov, q, singular="pinv")
    _, loss_a = freeze_b_optimum(delta, cov, u)
    _, _, loss_lora = joint_optimum(delta, cov, r)
    return ExtremeExample(d_in=d_in, d_out=d_out, rank=r, r_x=r_x, n=n, rebuild_rel_error=rel,
                          excess_b_only=loss_b / total, excess_lora=loss_lora / total,
                          excess_a_only=loss_a / total)
