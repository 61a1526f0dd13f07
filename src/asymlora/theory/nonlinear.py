r"""§B.1.2: the asymmetry beyond least squares, on multiclass logistic regression.

Loss (paper eq. 5 with f(z) = z, h(z) = ln 1ᵀ e^z; the negative of eq. 7):

    L(W) = Σ_i ln(1ᵀ e^{W x_i + b}) − y_iᵀ (W x_i + b),     W = W0 + B A,

with gradients (the paper writes them for the log-likelihood, i.e. with the opposite sign)

    A frozen to Q:  ∇_B L = Σ_i (p_i − y_i) (Q x_i)ᵀ       — full outputs, projected inputs;
    B frozen to U:  ∇_A L = Uᵀ Σ_i (p_i − y_i) x_iᵀ        — projected outputs, full inputs,

where p_i = softmax(W x_i + b). With B = U frozen the logits can only move inside the r-dimensional
column space of U, so at best the model fits the outputs projected on a random subspace; with A = Q
frozen it is a full logistic regression on the projected features Q x_i.

:func:`digits_experiment` shows it on scikit-learn's bundled digits (8 × 8 images, 64 features, 10
classes): W0 is "pretrained" on the classes 0–4 only, then adapted to all ten classes with A frozen
(B-only), B frozen (A-only), both trained (LoRA) and, for reference, W fully trained.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from .least_squares import freeze_a_optimum, freeze_b_optimum, joint_optimum, random_stiefel

__all__ = ["logistic_loss", "logistic_factor_grads", "fit_logistic", "DigitsRow", "digits_experiment", "TASKS", "FEATURES"]

_DTYPE = torch.float64
# the factor policies of §B.1.2's logistic-regression experiment (not asymlora.experiments.methods)
LOGISTIC_POLICIES = ("B-only", "A-only", "LoRA")


def logistic_loss(w: torch.Tensor, bias: torch.Tensor, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean multiclass cross-entropy of logits x Wᵀ + b (x: n × d, W: K × d, labels: n ints)."""
    return F.cross_entropy(x @ w.T + bias, labels)


def logistic_factor_grads(w0, bias, x, labels, a, b) -> tuple[torch.Tensor, torch.Tensor]:
    r"""The paper's §B.1.2 gradients of the summed loss L(W0 + B A), in closed form.

    Returns ``(grad_A, grad_B)`` = (Bᵀ Σ_i (p_i − y_i) x_iᵀ,  Σ_i (p_i − y_i) (A x_i)ᵀ): the gradient
    for A when B is frozen and the gradient for B when A is frozen.
    """
    x = torch.as_tensor(x, dtype=_DTYPE)
    w = torch.as_tensor(w0, dtype=_DTYPE) + torch.as_tensor(b, dtype=_DTYPE) @ torch.as_tensor(a, dtype=_DTYPE)
    p = torch.softmax(x @ w.T + torch.as_tensor(bias, dtype=_DTYPE), dim=1)
    y = F.one_hot(torch.as_tensor(labels), num_classes=w.shape[0]).to(_DTYPE)
    resid = (p - y).T  # K × n
    grad_w = resid @ x  # Σ (p_i − y_i) x_iᵀ
    return torch.as_tensor(b, dtype=_DTYPE).T @ grad_w, resid @ (x @ torch.as_tensor(a, dtype=_DTYPE).T)


def fit_logistic(x, labels, w0, bias, *, method: str, rank: int = 0, l2: float = 1e-3,
                 generator: torch.Generator | None = None, max_iter: int = 300) -> tuple[torch.Tensor, torch.Tensor]:
    """Fit W = W0 + ΔW and the bias to minimise mean cross-entropy + l2·‖ΔW‖²_F (full-batch L-BFGS, float64).

    ``method``: ``"B-only"`` (ΔW = B Q, Q Haar r × d frozen, B from 0), ``"A-only"`` (ΔW = U A,
    U Haar K × r frozen, A from 0), ``"LoRA"`` (ΔW = B A, A Haar, B from 0, both trained),
    ``"full"`` (ΔW unconstrained), ``"bias"`` (ΔW = 0, only the bias). In every method the K bias
    entries are trained too (from ``bias``), so a new class can raise its logit whatever ΔW can do.
    Returns ``(W, b)``.
    """
    w0 = torch.as_tensor(w0, dtype=_DTYPE)
    k, d = w0.shape
    b = torch.as_tensor(bias, dtype=_DTYPE).clone().requires_grad_(True)
    if method == "bias":
        params = [b]
        delta = lambda: torch.zeros_like(w0)  # noqa: E731
    elif method == "full":
        params = [b, torch.zeros(k, d, dtype=_DTYPE, requires_grad=True)]
        delta = lambda: params[1]  # noqa: E731
    elif method in LOGISTIC_POLICIES:
        if not 1 <= rank <= min(k, d):
            raise ValueError(f"rank must be in [1, {min(k, d)}] for a {k} × {d} weight, got {rank}")
        if method == "B-only":
            q = random_stiefel(rank, d, generator)
            params = [b, torch.zeros(k, rank, dtype=_DTYPE, requires_grad=True)]
            delta = lambda: params[1] @ q  # noqa: E731
        elif method == "A-only":
            u = random_stiefel(k, rank, generator)
            params = [b, torch.zeros(rank, d, dtype=_DTYPE, requires_grad=True)]
            delta = lambda: u @ params[1]  # noqa: E731
        else:
            a = random_stiefel(rank, d, generator).requires_grad_(True)
            params = [b, torch.zeros(k, rank, dtype=_DTYPE, requires_grad=True), a]
            delta = lambda: params[1] @ params[2]  # noqa: E731
    else:
        raise ValueError(f"method must be one of {LOGISTIC_POLICIES + ('full', 'bias')}, got {method!r}")

    opt = torch.optim.LBFGS(params, lr=1.0, max_iter=max_iter, tolerance_grad=1e-9,
                            tolerance_change=1e-12, history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        dw = delta()
        loss = logistic_loss(w0 + dw, b, x, labels) + l2 * (dw * dw).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return w0 + delta(), b.detach()


@dataclass
class DigitsRow:
    """One method × rank of :func:`digits_experiment`: mean and sd over seeds.

    ``linear_excess`` is what the least-squares lemmas predict for the same frozen factors: with
    Δ = W_full − W0 (the unconstrained fine-tuning update) and Σ = Cov[x_train], the excess loss of
    Lemma B.1 (B-only), Lemma B.2 (A-only) or the best rank-r fit (LoRA) as a fraction of Tr[Δ Σ Δᵀ].
    """

    method: str
    rank: int
    trainable: int
    train_loss: float
    train_loss_sd: float
    test_loss: float
    test_loss_sd: float
    test_acc: float
    test_acc_sd: float
    linear_excess: float

    def to_dict(self) -> dict:
        return asdict(self)


TASKS = ("new-classes", "permuted")
FEATURES = ("pixels", "pca")


def _digits_split(seed: int, features: str = "pixels", pca_dim: int = 10):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x_tr, x_te, y_tr, y_te = train_test_split(data.data / 16.0, data.target, test_size=0.5,
                                              random_state=seed, stratify=data.target)
    mean = x_tr.mean(axis=0)  # pixel values are in [0, 16]; centre them (E[X] = 0 as in §B.1.1)
    x_tr, x_te = x_tr - mean, x_te - mean
    if features == "pca":
        from sklearn.decomposition import PCA

        pca = PCA(pca_dim, random_state=seed).fit(x_tr)
        x_tr, x_te = pca.transform(x_tr), pca.transform(x_te)
    elif features != "pixels":
        raise ValueError(f"features must be one of {FEATURES}, got {features!r}")
    to_t = lambda v: torch.as_tensor(v, dtype=_DTYPE)  # noqa: E731
    return to_t(x_tr), torch.as_tensor(y_tr), to_t(x_te), torch.as_tensor(y_te)


def digits_experiment(ranks=(1, 2, 4, 8), seeds=(0, 1, 2), *, task: str = "new-classes",
                      features: str = "pixels", pca_dim: int = 10, l2: float = 1e-3, split_seed: int = 0,
                      max_iter: int = 300) -> list[DigitsRow]:
    """B-only vs A-only vs LoRA adaptation of a pretrained logistic regression (sklearn digits).

    The images (scaled to [0, 1], centred; ``features="pca"``: their first ``pca_dim`` principal
    components, which makes the weight square when pca_dim = 10) are split half/half, stratified.
    ``task="new-classes"``: W0, b0 are fitted on the training images of classes 0–4 (all ten outputs)
    and adapted to all ten classes. ``task="permuted"``: W0, b0 are fitted on all classes and adapted to
    the labels swapped in pairs (0↔1, 2↔3, …), so every output row must change.
    Each (method, rank) is fitted once per seed, the seed drawing the frozen / initial Haar factors;
    the bias is trained in every method. Reference rows: ``none`` (W0, b0 as they are), ``bias``
    (only b trained), ``full`` (W trained without a rank limit). ``trainable`` counts the factor
    parameters plus K for the bias. Needs scikit-learn.
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    x_tr, y_tr, x_te, y_te = _digits_split(split_seed, features, pca_dim)
    k, d = 10, x_tr.shape[1]
    if task == "new-classes":
        src = torch.isin(y_tr, torch.arange(5))
        x_src, y_src = x_tr[src], y_tr[src]
    else:
        x_src, y_src = x_tr, y_tr
        swap = torch.tensor([1, 0, 3, 2, 5, 4, 7, 6, 9, 8])
        y_tr, y_te = swap[y_tr], swap[y_te]
    w0, b0 = fit_logistic(x_src, y_src, torch.zeros(k, d, dtype=_DTYPE), torch.zeros(k, dtype=_DTYPE),
                          method="full", l2=l2, max_iter=max_iter)

    def fit(method, rank=0, seed=None):
        gen = None if seed is None else torch.Generator().manual_seed(1000 * int(seed) + int(rank))
        return fit_logistic(x_tr, y_tr, w0, b0, method=method, rank=rank, l2=l2, generator=gen,
                            max_iter=max_iter)

    def evaluate(fitted):
        w, b = fitted
        with torch.no_grad():
            tr = float(logistic_loss(w, b, x_tr, y_tr))
            te_logits = x_te @ w.T + b
            te = float(F.cross_entropy(te_logits, y_te))
            acc = float((te_logits.argmax(dim=1) == y_te).to(_DTYPE).mean())
        return tr, te, acc

    w_full = fit("full")
    delta, cov = w_full[0] - w0, torch.cov(x_tr.T)
    total = float(torch.trace(delta @ cov @ delta.T))

    def linear_excess(method, rank, seed):
        # The same frozen factor fit_logistic draws first from the same seed.
        gen = torch.Generator().manual_seed(1000 * int(seed) + int(rank))
        if method == "B-only":
            return freeze_a_optimum(delta, cov, random_stiefel(rank, d, gen), singular="pinv")[1] / total
        if method == "A-only":
            return freeze_b_optimum(delta, cov, random_stiefel(k, rank, gen))[1] / total
        return joint_optimum(delta, cov, rank)[2] / total

    def row(method, rank, trainable, results, lin):
        t = torch.tensor(results, dtype=_DTYPE)
        sd = t.std(dim=0, unbiased=True) if len(results) > 1 else torch.zeros(3, dtype=_DTYPE)
        m = t.mean(dim=0)
        return DigitsRow(method, rank, trainable, float(m[0]), float(sd[0]), float(m[1]), float(sd[1]),
                         float(m[2]), float(sd[2]), float(lin))

    rows = [row("none", 0, 0, [evaluate((w0, b0))], 1.0),
            row("bias", 0, k, [evaluate(fit("bias"))], 1.0),
            row("full", 0, k * d + k, [evaluate(w_full)], 0.0)]
    for r in ranks:
        r = int(r)
        if r > min(k, d):
            continue
        for method in LOGISTIC_POLICIES:
            res = [evaluate(fit(method, r, s)) for s in seeds]
            lin = sum(linear_excess(method, r, s) for s in seeds) / len(seeds)
            trainable = {"B-only": k * r, "A-only": r * d, "LoRA": r * (k + d)}[method] + k
            rows.append(row(method, r, trainable, res, lin))
    if any(not math.isfinite(v) for rw in rows for v in (rw.train_loss, rw.test_loss)):
        raise FloatingPointError("a logistic fit diverged (non-finite loss); raise l2")
    return rows
