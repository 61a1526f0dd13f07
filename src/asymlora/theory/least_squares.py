r"""Closed forms for adapting one linear layer by least squares (paper §B.1.1, Appendix E).

Setting (paper eq. 4). The pretrained layer is ``y = W0 x + b0``; the target task is
``Y = (W0 + Δ) X + b + ε`` with ``E[X] = 0``, ``Cov[X] = Σ`` (d_in × d_in) and noise ``ε`` of
covariance ``σ² I`` (d_out × d_out). An adapter ``W0 + B A`` (A: r × d_in, B: d_out × r) is fitted to

    L(A, B) = E ‖Y − (W0 + B A) X − b‖²  =  d_out σ² + Tr[(Δ − B A) Σ (Δ − B A)ᵀ].

* Lemma B.1 / 3.1 (A frozen to Q, B trained):
      B* = Δ Σ Qᵀ (Q Σ Qᵀ)⁻¹,
      L(Q, B*) = d_out σ² + Tr[Δ Σ Δᵀ] − Tr[Q Σ Δᵀ Δ Σ Qᵀ (Q Σ Qᵀ)⁻¹].
* Lemma B.2 / 3.2 (B frozen to U with UᵀU = I, A trained):
      A* = Uᵀ Δ,
      L(A*, U) = d_out σ² + Tr[Δ Σ Δᵀ] − Tr[Uᵀ Δ Σ Δᵀ U].
* Both factors trained (plain LoRA; not a lemma of the paper, the reference point): reduced-rank
  regression (Eckart–Young on Δ Σ^½), L = d_out σ² + Σ_{i>r} s_i², s_i the singular values of Δ Σ^½.

All maths is in float64. Inputs may be tensors or anything ``torch.as_tensor`` accepts.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from ..config import AdapterConfig
from ..init import haar
from ..inject import adapted_layers, inject

__all__ = [
    "Optimum",
    "freeze_a_optimum",
    "freeze_b_optimum",
    "joint_optimum",
    "population_loss",
    "random_stiefel",
    "sample_regression",
    "lstsq_freeze_a",
    "lstsq_freeze_b",
    "empirical_loss",
    "train_adapter_layer",
    "lemma_check",
]

_DTYPE = torch.float64
# Relative eigenvalue floor below which a Gram matrix counts as singular (about 1e4 × float64 eps).
DEFAULT_RCOND = 1e-12


class Optimum(NamedTuple):
    """The trained factor and the expected (population) loss it reaches. Unpacks as a pair."""

    factor: torch.Tensor
    expected_loss: float


def _mat(x, name: str) -> torch.Tensor:
    t = torch.as_tensor(x).detach().to(device="cpu", dtype=_DTYPE)
    if t.ndim != 2:
        raise ValueError(f"{name} must be a matrix (2-D), got shape {tuple(t.shape)}")
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} contains NaN or infinite entries")
    return t


def _check_cov(cov, d_in: int) -> torch.Tensor:
    s = _mat(cov, "cov")
    if s.shape != (d_in, d_in):
        raise ValueError(f"cov must be d_in × d_in = {d_in} × {d_in} to match delta, got {tuple(s.shape)}")
    scale = max(float(s.abs().max()), 1e-300)
    if not torch.allclose(s, s.T, rtol=0.0, atol=1e-10 * scale):
        raise ValueError("cov must be symmetric (a covariance matrix); symmetrise it with (cov + cov.T) / 2")
    s = (s + s.T) / 2
    lo = float(torch.linalg.eigvalsh(s)[0])
    if lo < -1e-10 * scale:
        raise ValueError(f"cov must be positive semi-definite; its smallest eigenvalue is {lo:.3g}")
    return s


def _check_noise(noise_var: float) -> float:
    v = float(noise_var)
    if not v >= 0.0:  # also rejects NaN
        raise ValueError(f"noise_var is a variance and must be >= 0, got {noise_var}")
    return v


def _psd_inverse(m: torch.Tensor, *, what: str, singular: str, rcond: float) -> torch.Tensor:
    """Inverse of the symmetric PSD matrix ``m``, or its Moore–Penrose pseudo-inverse.

    ``m`` counts as singular when its smallest eigenvalue is below ``rcond`` × its largest. Then
    ``singular="raise"`` raises ``ValueError`` saying so, and
    ``singular="pinv"`` inverts only the eigenvalues above that floor (the pseudo-inverse).
    """
    if singular not in ("raise", "pinv"):
        raise ValueError(f"singular must be 'raise' or 'pinv', got {singular!r}")
    m = (m + m.T) / 2
    evals, evecs = torch.linalg.eigh(m)
    top = float(evals[-1]) if evals.numel() else 0.0
    floor = rcond * max(top, 0.0)
    keep = evals > floor
    if not bool(keep.all()):
        if singular == "raise":
            low = float(evals[0])
            raise ValueError(
                f"{what} is singular or ill-conditioned (eigenvalues from {low:.3g} to {top:.3g}, "
                f"floor rcond × largest = {floor:.3g}). This happens when rank(cov) < r or the frozen "
                "factor meets the null space of cov. Pass singular='pinv' to use the Moore–Penrose "
                "pseudo-inverse (the minimum-norm optimum, with the same expected loss)."
            )
        inv_vals = torch.where(keep, 1.0 / torch.where(keep, evals, torch.ones_like(evals)), torch.zeros_like(evals))
        return (evecs * inv_vals) @ evecs.T
    return (evecs / evals) @ evecs.T


def freeze_a_optimum(delta, cov, q, noise_var: float = 0.0, *, singular: str = "raise",
                     rcond: float = DEFAULT_RCOND) -> Optimum:
    r"""Lemma B.1 (= Lemma 3.1): train B with A frozen to ``q``.

        B* = Δ Σ Qᵀ (Q Σ Qᵀ)⁻¹
        L(Q, B*) = d_out σ² + Tr[Δ Σ Δᵀ] − Tr[Q Σ Δᵀ Δ Σ Qᵀ (Q Σ Qᵀ)⁻¹]

    Args:
        delta: Δ = W_targ − W0, d_out × d_in.
        cov: Σ = Cov[X], d_in × d_in, symmetric positive semi-definite.
        q: the frozen A, r × d_in. The paper takes Q Qᵀ = I; the formula is the exact optimum for
            any Q with Q Σ Qᵀ invertible (the derivation in Appendix E.2 does not use Q Qᵀ = I).
        noise_var: σ², the variance of each output's noise.
        singular: when Q Σ Qᵀ is singular (rank(Σ) < r, or Q meets Σ's null space):
            ``"raise"`` (default) raises ``ValueError``; ``"pinv"`` uses the Moore–Penrose
            pseudo-inverse, which gives the minimum-norm optimal B and the same optimal loss.
        rcond: eigenvalues of Q Σ Qᵀ below ``rcond`` × the largest count as zero.

    Returns:
        ``Optimum(factor=B*, expected_loss=L(Q, B*))``; B* is d_out × r, float64.
    """
    d = _mat(delta, "delta")
    q = _mat(q, "q")
    if q.shape[1] != d.shape[1]:
        raise ValueError(f"q must be r × d_in with d_in = {d.shape[1]} (delta is d_out × d_in), got {tuple(q.shape)}")
    s = _check_cov(cov, d.shape[1])
    sigma2 = _check_noise(noise_var)
    m_inv = _psd_inverse(q @ s @ q.T, what="Q Σ Qᵀ", singular=singular, rcond=rcond)
    c = d @ s @ q.T  # Δ Σ Qᵀ, d_out × r
    b_star = c @ m_inv
    loss = d.shape[0] * sigma2 + torch.trace(d @ s @ d.T) - torch.trace(c.T @ c @ m_inv)
    return Optimum(b_star, float(loss))


def freeze_b_optimum(delta, cov, u, noise_var: float = 0.0, *, singular: str = "raise",
                     rcond: float = DEFAULT_RCOND) -> Optimum:
    r"""Lemma B.2 (= Lemma 3.2): train A with B frozen to ``u``.

        A* = Uᵀ Δ
        L(A*, U) = d_out σ² + Tr[Δ Σ Δᵀ] − Tr[Uᵀ Δ Σ Δᵀ U]

    The lemma assumes UᵀU = I. For a ``u`` without orthonormal columns (e.g. a frozen B times the
    adapter's scale α/r) the same derivation gives A* = (UᵀU)⁻¹ Uᵀ Δ and
    L = d_out σ² + Tr[Δ Σ Δᵀ] − Tr[(UᵀU)⁻¹ Uᵀ Δ Σ Δᵀ U], which is what is computed; with UᵀU = I
    both are the lemma's formulas. A* does not depend on Σ; when Σ is singular it is one of many
    optima (any A + N with N Σ = 0 fits as well), all with the same loss.

    Args:
        delta: Δ, d_out × d_in.
        cov: Σ, d_in × d_in, symmetric positive semi-definite (may be singular).
        u: the frozen B, d_out × r.
        noise_var: σ².
        singular: what to do when UᵀU is singular (u has dependent columns): ``"raise"`` or
            ``"pinv"`` (pseudo-inverse, minimum-norm A*).
        rcond: relative eigenvalue floor for UᵀU.

    Returns:
        ``Optimum(factor=A*, expected_loss=L(A*, U))``; A* is r × d_in, float64.
    """
    d = _mat(delta, "delta")
    u = _mat(u, "u")
    if u.shape[0] != d.shape[0]:
        raise ValueError(f"u must be d_out × r with d_out = {d.shape[0]} (delta is d_out × d_in), got {tuple(u.shape)}")
    s = _check_cov(cov, d.shape[1])
    sigma2 = _check_noise(noise_var)
    g_inv = _psd_inverse(u.T @ u, what="UᵀU", singular=singular, rcond=rcond)
    a_star = g_inv @ u.T @ d
    dsd = d @ s @ d.T
    loss = d.shape[0] * sigma2 + torch.trace(dsd) - torch.trace(g_inv @ u.T @ dsd @ u)
    return Optimum(a_star, float(loss))


def joint_optimum(delta, cov, rank: int, noise_var: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, float]:
    r"""Both factors trained (LoRA), the best rank-``rank`` update: reduced-rank regression.

    With Σ = V diag(λ) Vᵀ and Σ^½ = V diag(√λ) Vᵀ, the optimum of Tr[(Δ − BA) Σ (Δ − BA)ᵀ] over
    rank-r BA is BA = [Δ Σ^½]_r (Σ^½)⁺ (Eckart–Young; [·]_r the rank-r truncated SVD), and

        L = d_out σ² + Σ_{i > r} s_i²,   s_i the singular values of Δ Σ^½.

    Not a lemma of the paper; it is the floor that Lemma B.1 and B.2 are compared with, and the
    "tuned pair A*, B*" of the extreme example in §B.1.1.

    Returns:
        ``(A, B, expected_loss)`` with A = diag(s_≤r) V_rᵀ (Σ^½)⁺ (r × d_in) and B = U_r (d_out × r).
    """
    d = _mat(delta, "delta")
    s = _check_cov(cov, d.shape[1])
    sigma2 = _check_noise(noise_var)
    r = int(rank)
    if r < 1:
        raise ValueError(f"rank must be >= 1, got {rank}")
    lam, v = torch.linalg.eigh(s)
    lam = lam.clamp_min(0.0)
    root = (v * lam.sqrt()) @ v.T
    floor = DEFAULT_RCOND * max(float(lam[-1]), 0.0) if lam.numel() else 0.0
    root_pinv = (v * torch.where(lam > floor, lam.clamp_min(1e-300).rsqrt(), torch.zeros_like(lam))) @ v.T
    uu, sv, vh = torch.linalg.svd(d @ root, full_matrices=False)
    k = min(r, sv.numel())
    b = uu[:, :k]
    a = (sv[:k, None] * vh[:k]) @ root_pinv
    if k < r:  # rank larger than min(d_out, d_in): pad with zero directions
        b = torch.cat([b, torch.zeros(d.shape[0], r - k, dtype=_DTYPE)], dim=1)
        a = torch.cat([a, torch.zeros(r - k, d.shape[1], dtype=_DTYPE)], dim=0)
    loss = d.shape[0] * sigma2 + float((sv[k:] ** 2).sum())
    return a, b, loss


def population_loss(delta, cov, b, a, noise_var: float = 0.0) -> float:
    """L(A, B) = d_out σ² + Tr[(Δ − B A) Σ (Δ − B A)ᵀ]: the expected loss of any adapter (eq. 4)."""
    d = _mat(delta, "delta")
    s = _check_cov(cov, d.shape[1])
    e = d - _mat(b, "b") @ _mat(a, "a")
    return d.shape[0] * _check_noise(noise_var) + float(torch.trace(e @ s @ e.T))


def random_stiefel(rows: int, cols: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """A matrix drawn uniformly (Haar) from the Stiefel manifold, float64 (:func:`asymlora.init.haar`).

    For rows >= cols the columns are orthonormal (MᵀM = I); otherwise the rows are (M Mᵀ = I).
    """
    if rows >= cols:
        return haar(rows, cols, generator)
    return haar(cols, rows, generator).T.contiguous()


def sample_regression(delta, cov, n: int, noise_var: float = 0.0,
                      generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw ``n`` rows of the Lemma B.1/B.2 setting: X ~ N(0, Σ) (n × d_in) and the residual target
    R = Y − W0 X − b = X Δᵀ + ε (n × d_out), ε ~ N(0, σ² I)."""
    d = _mat(delta, "delta")
    s = _check_cov(cov, d.shape[1])
    sigma2 = _check_noise(noise_var)
    lam, v = torch.linalg.eigh(s)
    root = v * lam.clamp_min(0.0).sqrt()  # Σ = root rootᵀ
    x = torch.randn(int(n), d.shape[1], generator=generator, dtype=_DTYPE) @ root.T
    y = x @ d.T
    if sigma2 > 0:
        y = y + sigma2 ** 0.5 * torch.randn(int(n), d.shape[0], generator=generator, dtype=_DTYPE)
    return x, y


def lstsq_freeze_a(x, y, q) -> torch.Tensor:
    """Exact least squares on samples with A = Q frozen: argmin_B ‖Y − X Qᵀ Bᵀ‖_F² (rows are samples).

    The empirical counterpart of Lemma B.1: regress the residual targets on the projected features QX.
    """
    x, y, q = _mat(x, "x"), _mat(y, "y"), _mat(q, "q")
    return torch.linalg.lstsq(x @ q.T, y, driver="gelsd").solution.T.contiguous()


def lstsq_freeze_b(x, y, u) -> torch.Tensor:
    """Exact least squares on samples with B = U frozen: argmin_A ‖Y − X Aᵀ Uᵀ‖_F².

    Setting the gradient to zero gives UᵀU A XᵀX = Uᵀ Yᵀ X, i.e. Aᵀ = lstsq(X, Y U (UᵀU)⁻¹): the
    empirical counterpart of Lemma B.2, a regression of the projected outputs on the full inputs.
    """
    x, y, u = _mat(x, "x"), _mat(y, "y"), _mat(u, "u")
    target = y @ u @ torch.linalg.pinv(u.T @ u)
    return torch.linalg.lstsq(x, target, driver="gelsd").solution.T.contiguous()


def empirical_loss(x, y, b, a) -> float:
    """Mean over samples of ‖y_i − B A x_i‖²: the sample version of L(A, B) (residual targets)."""
    x, y = _mat(x, "x"), _mat(y, "y")
    e = y - x @ (_mat(b, "b") @ _mat(a, "a")).T
    return float((e * e).sum(dim=1).mean())


# ---- checks of the lemmas against their definitions ------------------------------------------------

def train_adapter_layer(x, y, w0, *, preset: str, rank: int, seed: int = 0, steps: int = 500,
                        alpha: float | None = None):
    """Train one real asymlora adapter (``preset`` "b-only" or "a-only") by full-batch gradient descent.

    The layer is an ``nn.Linear`` with weight ``w0`` (no bias), wrapped by ``asymlora.inject``; the
    loss is the sample mean of ‖y_i − (W0 + s B A) x_i‖², i.e. :func:`empirical_loss` on the residual
    targets. Only one factor trains, so the loss is a convex quadratic in it; plain gradient descent
    with step 1/L (L the largest eigenvalue of its Hessian, computed from the data and the frozen
    factor) converges linearly. ``y`` must be the full targets W_targ x (+ noise), not residuals.

    Returns ``(layer, losses)``: the adapted layer (float64) and the loss after every step.
    """
    if preset not in ("b-only", "a-only"):
        raise ValueError(f"preset must be 'b-only' or 'a-only' (one factor trained), got {preset!r}")
    x, y, w0 = _mat(x, "x"), _mat(y, "y"), _mat(w0, "w0")
    d_out, d_in = w0.shape

    class _One(nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = nn.Linear(d_in, d_out, bias=False, dtype=_DTYPE)

        def forward(self, t):
            return self.proj(t)

    model = _One()
    with torch.no_grad():
        model.proj.weight.copy_(w0)
    cfg = AdapterConfig.preset(preset, rank=rank, alpha=alpha, targets=["proj"], seed=seed)
    inject(model, cfg)
    layer = dict(adapted_layers(model))["proj"]
    params = [p for p in model.parameters() if p.requires_grad]
    if len(params) != 1:
        raise RuntimeError(f"expected exactly one trainable factor for preset {preset!r}, found {len(params)}")
    s2 = layer.scale ** 2
    gram = x.T @ x / x.shape[0]  # Σ̂
    if preset == "b-only":  # loss(B) = mean ‖r − s B Q x‖²; Hessian 2 s² (Q Σ̂ Qᵀ) ⊗ I
        a = layer.lora_A.detach()
        ev = torch.linalg.eigvalsh(a @ gram @ a.T)
        mu, lip = 2 * s2 * float(ev[0]), 2 * s2 * float(ev[-1])
    else:  # loss(A) = mean ‖r − s U A x‖²; Hessian 2 s² (UᵀU) ⊗ Σ̂
        b = layer.lora_B.detach()
        eu, ex = torch.linalg.eigvalsh(b.T @ b), torch.linalg.eigvalsh(gram)
        mu, lip = 2 * s2 * float(eu[0] * ex[0]), 2 * s2 * float(eu[-1] * ex[-1])
    # Polyak's heavy ball with its optimal constants for a quadratic with Hessian spectrum in [mu, lip].
    root = (lip ** 0.5 + max(mu, 0.0) ** 0.5) ** 2
    momentum = ((lip ** 0.5 - max(mu, 0.0) ** 0.5) / (lip ** 0.5 + max(mu, 0.0) ** 0.5)) ** 2
    opt = torch.optim.SGD(params, lr=4.0 / root, momentum=momentum)
    losses = []
    for _ in range(int(steps)):
        opt.zero_grad()
        loss = ((y - model(x)) ** 2).sum(dim=1).mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    with torch.no_grad():
        losses.append(float(((y - model(x)) ** 2).sum(dim=1).mean()))
    return layer, losses


def lemma_check(d_in: int = 32, d_out: int = 32, rank: int = 4, ns=(100, 1_000, 10_000, 100_000), *,
                noise_var: float = 0.01, decay: float = 1.0, gd_n: int = 2_000, gd_steps: int = 500,
                seed: int = 0) -> dict:
    """Lemmas B.1 and B.2 against their definitions, on one random instance.

    Draws W0, Δ (iid Gaussian, scaled to Tr[Δ Σ Δᵀ] = 1), Σ with eigenvalues k^−decay in a random
    basis, and Haar Q (r × d_in) and U (d_out × r). For each n in ``ns`` it samples n points and solves
    the sample least squares exactly (:func:`lstsq_freeze_a`, :func:`lstsq_freeze_b`), reporting the
    relative distance of the solution to B* (resp. A*) and the relative difference between the
    sample-optimal loss and the lemma's expected loss. Then it trains real asymlora adapters
    ("b-only" with A = Q's role played by the layer's own frozen A, "a-only" likewise) by gradient
    descent on ``gd_n`` samples, and compares the loss reached with the exact sample optimum and
    with the lemma's population optimum for the same frozen factor.
    """
    gen = torch.Generator().manual_seed(int(seed))
    lam = torch.arange(1, d_in + 1, dtype=_DTYPE) ** (-float(decay))
    v = random_stiefel(d_in, d_in, gen)
    cov = (v * (lam * d_in / lam.sum())) @ v.T
    cov = (cov + cov.T) / 2
    delta = torch.randn(d_out, d_in, generator=gen, dtype=_DTYPE)
    delta = delta / torch.trace(delta @ cov @ delta.T).sqrt()
    w0 = torch.randn(d_out, d_in, generator=gen, dtype=_DTYPE) / d_in ** 0.5
    q = random_stiefel(rank, d_in, gen)
    u = random_stiefel(d_out, rank, gen)
    b_star, loss_b = freeze_a_optimum(delta, cov, q, noise_var)
    a_star, loss_a = freeze_b_optimum(delta, cov, u, noise_var)
    rows = []
    for n in ns:
        x, r = sample_regression(delta, cov, n, noise_var, gen)
        b_hat = lstsq_freeze_a(x, r, q)
        a_hat = lstsq_freeze_b(x, r, u)
        rows.append({
            "n": int(n),
            "b_rel_err": float(torch.linalg.norm(b_hat - b_star) / torch.linalg.norm(b_star)),
            "b_loss_rel_diff": (empirical_loss(x, r, b_hat, q) - loss_b) / loss_b,
            "a_rel_err": float(torch.linalg.norm(a_hat - a_star) / torch.linalg.norm(a_star)),
            "a_loss_rel_diff": (empirical_loss(x, r, u, a_hat) - loss_a) / loss_a,
        })
    out = {"d_in": d_in, "d_out": d_out, "rank": rank, "noise_var": noise_var, "decay": decay, "seed": seed,
           "lemma_b1_loss": loss_b, "lemma_b2_loss": loss_a, "convergence": rows}

    # Gradient descent on a real adapter layer: its own frozen factor plays Q (or U, times the scale).
    x, r = sample_regression(delta, cov, gd_n, noise_var, gen)
    y = r + x @ w0.T
    gd = {}
    for preset in ("b-only", "a-only"):
        layer, losses = train_adapter_layer(x, y, w0, preset=preset, rank=rank, seed=seed, steps=gd_steps)
        s = layer.scale
        a_l, b_l = layer.lora_A.detach(), layer.lora_B.detach()
        if preset == "b-only":
            exact = empirical_loss(x, r, lstsq_freeze_a(x, r, a_l), a_l)
            _, lemma = freeze_a_optimum(delta, cov, a_l, noise_var)
        else:
            exact = empirical_loss(x, r, s * b_l, lstsq_freeze_b(x, r, s * b_l))
            _, lemma = freeze_b_optimum(delta, cov, s * b_l, noise_var)
        reached = population_loss(delta, cov, s * b_l, a_l, noise_var)
        gd[preset] = {"n": gd_n, "steps": gd_steps, "gd_train_loss": losses[-1], "exact_train_loss": exact,
                      "gd_population_loss": reached, "lemma_loss": lemma,
                      "train_rel_gap": (losses[-1] - exact) / exact}
    out["gradient_descent"] = gd
    return out
