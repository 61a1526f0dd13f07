"""asymlora.theory: every closed form against an independent computation (numpy / scipy / autograd)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from asymlora.init import haar
from asymlora.theory import (
    bound_table,
    empirical_loss,
    equal_bound_rank,
    extreme_example,
    fit_logistic,
    freeze_a_optimum,
    freeze_b_optimum,
    generalization_bound,
    joint_optimum,
    logistic_factor_grads,
    lstsq_freeze_a,
    lstsq_freeze_b,
    model_layer_dims,
    population_loss,
    random_stiefel,
    sample_regression,
    theorem_experiment,
    train_adapter_layer,
    trainable_numbers,
)
from asymlora.theory.theorem import explained_terms, sample_instances


def _instance(seed=0, d_in=12, d_out=9, r=3, cov_rank=None):
    rng = np.random.default_rng(seed)
    k = d_in if cov_rank is None else cov_rank
    f = rng.standard_normal((d_in, k))
    cov = f @ f.T / k + (0.0 if cov_rank else 0.1) * np.eye(d_in)
    delta = rng.standard_normal((d_out, d_in))
    q = np.linalg.qr(rng.standard_normal((d_in, r)))[0].T  # r × d_in, orthonormal rows
    u = np.linalg.qr(rng.standard_normal((d_out, r)))[0]  # d_out × r, orthonormal columns
    return delta, cov, q, u


def _loss_by_definition(delta, cov, b, a, noise_var):
    e = delta - b @ a
    return delta.shape[0] * noise_var + np.trace(e @ cov @ e.T)


# ---- Lemma B.1 -------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(4))
def test_freeze_a_matches_normal_equations_and_definition(seed):
    delta, cov, q, _ = _instance(seed)
    noise = 0.3
    b_star, loss = freeze_a_optimum(delta, cov, q, noise)
    # independent: the normal equations B (QΣQᵀ) = ΔΣQᵀ solved by numpy
    b_ref = np.linalg.solve((q @ cov @ q.T).T, (delta @ cov @ q.T).T).T
    np.testing.assert_allclose(b_star.numpy(), b_ref, rtol=1e-10, atol=1e-12)
    # the lemma's loss expression equals the loss evaluated from its definition at B*
    assert loss == pytest.approx(_loss_by_definition(delta, cov, b_ref, q, noise), rel=1e-11)
    # literal paper expression, written out again in numpy
    paper = delta.shape[0] * noise + np.trace(delta @ cov @ delta.T) - np.trace(
        q @ cov @ delta.T @ delta @ cov @ q.T @ np.linalg.inv(q @ cov @ q.T))
    assert loss == pytest.approx(paper, rel=1e-11)


def test_freeze_a_is_a_minimum():
    delta, cov, q, _ = _instance(7)
    b_star, loss = freeze_a_optimum(delta, cov, q)
    rng = np.random.default_rng(1)
    for _ in range(20):
        b = b_star.numpy() + 1e-3 * rng.standard_normal(b_star.shape)
        assert _loss_by_definition(delta, cov, b, q, 0.0) > loss


# ---- Lemma B.2 -------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(4))
def test_freeze_b_matches_paper_and_definition(seed):
    delta, cov, _, u = _instance(seed)
    noise = 0.2
    a_star, loss = freeze_b_optimum(delta, cov, u, noise)
    np.testing.assert_allclose(a_star.numpy(), u.T @ delta, rtol=1e-12, atol=1e-12)
    paper = delta.shape[0] * noise + np.trace(delta @ cov @ delta.T) - np.trace(u.T @ delta @ cov @ delta.T @ u)
    assert loss == pytest.approx(paper, rel=1e-11)
    assert loss == pytest.approx(_loss_by_definition(delta, cov, u, u.T @ delta, noise), rel=1e-11)


def test_freeze_b_general_u_matches_kronecker_least_squares():
    # U without orthonormal columns (e.g. scale·B of a real layer): solve min_A Tr[(Δ−UA)Σ(Δ−UA)ᵀ] as an
    # ordinary least-squares problem in vec(A): ‖(Σ^½ ⊗ U) vec(A) − vec(Δ Σ^½)‖².
    delta, cov, _, _ = _instance(3)
    rng = np.random.default_rng(5)
    u = 2.5 * rng.standard_normal((delta.shape[0], 3))
    w, v = np.linalg.eigh(cov)
    root = v @ np.diag(np.sqrt(w)) @ v.T
    design = np.kron(root, u)  # column-major vec: vec(U A S) = (Sᵀ ⊗ U) vec(A), S symmetric
    target = (delta @ root).reshape(-1, order="F")
    vec_a = np.linalg.lstsq(design, target, rcond=None)[0]
    a_ref = vec_a.reshape(3, delta.shape[1], order="F")
    a_star, loss = freeze_b_optimum(delta, cov, u)
    np.testing.assert_allclose(a_star.numpy(), a_ref, rtol=1e-9, atol=1e-10)
    assert loss == pytest.approx(_loss_by_definition(delta, cov, u, a_ref, 0.0), rel=1e-10)


# ---- the best rank-r pair (LoRA) ---------------------------------------------------------------------

def test_joint_optimum_identity_cov_is_eckart_young():
    rng = np.random.default_rng(2)
    delta = rng.standard_normal((10, 14))
    a, b, loss = joint_optimum(delta, np.eye(14), 3, noise_var=0.5)
    s = np.linalg.svd(delta, compute_uv=False)
    assert loss == pytest.approx(10 * 0.5 + np.sum(s[3:] ** 2), rel=1e-12)
    assert loss == pytest.approx(_loss_by_definition(delta, np.eye(14), b.numpy(), a.numpy(), 0.5), rel=1e-11)


def test_joint_optimum_is_freeze_a_at_its_own_row_space_and_beats_random():
    delta, cov, q, u = _instance(4)
    a, b, loss = joint_optimum(delta, cov, 3)
    assert loss == pytest.approx(_loss_by_definition(delta, cov, b.numpy(), a.numpy(), 0.0), rel=1e-10)
    q_best = np.linalg.qr(a.numpy().T)[0].T  # orthonormal basis of A's row space
    assert freeze_a_optimum(delta, cov, q_best)[1] == pytest.approx(loss, rel=1e-9)
    assert freeze_a_optimum(delta, cov, q)[1] >= loss - 1e-12
    assert freeze_b_optimum(delta, cov, u)[1] >= loss - 1e-12


# ---- sampled least squares and gradient descent converge to the lemmas ---------------------------------

def test_sampled_least_squares_converge_to_lemmas():
    gen = torch.Generator().manual_seed(0)
    delta, cov, q, u = (torch.as_tensor(m) for m in _instance(11, d_in=10, d_out=8, r=2))
    b_star, lb = freeze_a_optimum(delta, cov, q, 0.1)
    a_star, la = freeze_b_optimum(delta, cov, u, 0.1)
    errs = []
    for n in (1_000, 100_000):
        x, r = sample_regression(delta, cov, n, 0.1, gen)
        # independent solves with numpy
        b_hat = np.linalg.lstsq((x @ q.T).numpy(), r.numpy(), rcond=None)[0].T
        a_hat = np.linalg.lstsq(x.numpy(), (r @ u).numpy(), rcond=None)[0].T
        np.testing.assert_allclose(lstsq_freeze_a(x, r, q).numpy(), b_hat, rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(lstsq_freeze_b(x, r, u).numpy(), a_hat, rtol=1e-8, atol=1e-10)
        errs.append((np.linalg.norm(b_hat - b_star.numpy()) / np.linalg.norm(b_star.numpy()),
                     np.linalg.norm(a_hat - a_star.numpy()) / np.linalg.norm(a_star.numpy()),
                     abs(empirical_loss(x, r, torch.as_tensor(b_hat), q) - lb) / lb,
                     abs(empirical_loss(x, r, u, torch.as_tensor(a_hat)) - la) / la))
    (b1, a1, _, _), (b2, a2, lb2, la2) = errs
    # O(1/√n): 100× the samples → about 10× closer
    assert b2 < 0.3 * b1 and a2 < 0.3 * a1
    assert b2 < 0.03 and a2 < 0.03 and lb2 < 0.02 and la2 < 0.02


@pytest.mark.parametrize("preset", ["b-only", "a-only"])
def test_gradient_descent_on_real_adapter_layer_reaches_lemma(preset):
    gen = torch.Generator().manual_seed(3)
    d_in, d_out, r, noise = 12, 10, 3, 0.05
    delta, cov, _, _ = (torch.as_tensor(m) for m in _instance(13, d_in=d_in, d_out=d_out, r=r))
    w0 = torch.randn(d_out, d_in, generator=gen, dtype=torch.float64)
    x, res = sample_regression(delta, cov, 1_000, noise, gen)
    layer, losses = train_adapter_layer(x, res + x @ w0.T, w0, preset=preset, rank=r, seed=5, steps=400)
    s = layer.scale
    a_l, b_l = layer.lora_A.detach().numpy(), layer.lora_B.detach().numpy()
    xn, rn = x.numpy(), res.numpy()
    if preset == "b-only":
        assert not layer.lora_A.requires_grad and layer.lora_B.requires_grad
        feats = s * xn @ a_l.T
        coef = np.linalg.lstsq(feats, rn, rcond=None)[0]
        exact = np.mean(np.sum((rn - feats @ coef) ** 2, axis=1))
        lemma = freeze_a_optimum(delta, cov, torch.as_tensor(a_l), noise).expected_loss
    else:
        assert layer.lora_A.requires_grad and not layer.lora_B.requires_grad
        u = s * b_l
        # projected-output regression (Lemma B.2's sample version), by numpy
        a_hat = np.linalg.lstsq(xn, rn @ u @ np.linalg.inv(u.T @ u), rcond=None)[0].T
        exact = np.mean(np.sum((rn - xn @ (u @ a_hat).T) ** 2, axis=1))
        lemma = freeze_b_optimum(delta, cov, torch.as_tensor(u), noise).expected_loss
    assert losses[-1] == pytest.approx(exact, rel=1e-9)
    reached = population_loss(delta, cov, s * layer.lora_B.detach(), layer.lora_A.detach(), noise)
    assert lemma <= reached + 1e-12  # the lemma is the population optimum for this frozen factor
    assert reached == pytest.approx(lemma, rel=0.05)  # and n = 1000 samples get close to it


# ---- singular / bad inputs ------------------------------------------------------------------------------

def test_singular_cov_raises_clearly_or_uses_pinv():
    delta, cov, q, u = _instance(0, d_in=12, d_out=9, r=4, cov_rank=2)  # rank(Σ) = 2 < r = 4
    with pytest.raises(ValueError, match="singular='pinv'"):
        freeze_a_optimum(delta, cov, q)
    b_star, loss = freeze_a_optimum(delta, cov, q, 0.1, singular="pinv")
    assert torch.isfinite(b_star).all() and math.isfinite(loss)
    # the pseudo-inverse solution is a true optimum: with rank(Σ) <= r nothing is left to explain
    assert loss == pytest.approx(9 * 0.1, abs=1e-9)
    assert _loss_by_definition(delta, cov, b_star.numpy(), q, 0.1) == pytest.approx(loss, abs=1e-9)
    # freezing B does not invert Σ: finite without any flag
    a_star, loss_b = freeze_b_optimum(delta, cov, u)
    assert torch.isfinite(a_star).all() and loss_b > 0


def test_bad_inputs_get_clear_errors():
    delta, cov, q, u = _instance(0)
    with pytest.raises(ValueError, match="symmetric"):
        freeze_a_optimum(delta, cov + np.triu(np.ones_like(cov), 1), q)
    with pytest.raises(ValueError, match="positive semi-definite"):
        freeze_a_optimum(delta, cov - 10 * np.eye(cov.shape[0]), q)
    with pytest.raises(ValueError, match="NaN"):
        freeze_b_optimum(delta, np.full_like(cov, np.nan), u)
    with pytest.raises(ValueError, match="r × d_in"):
        freeze_a_optimum(delta, cov, q.T)
    with pytest.raises(ValueError, match="d_out × r"):
        freeze_b_optimum(delta, cov, u.T)
    with pytest.raises(ValueError, match="noise_var"):
        freeze_b_optimum(delta, cov, u, noise_var=-1.0)
    with pytest.raises(ValueError, match="dependent columns|singular"):
        freeze_b_optimum(delta, cov, np.concatenate([u[:, :1], u[:, :1]], axis=1))


def test_random_stiefel_is_orthonormal_and_uniform():
    gen = torch.Generator().manual_seed(0)
    m = random_stiefel(20, 4, gen)
    torch.testing.assert_close(m.T @ m, torch.eye(4, dtype=torch.float64), atol=1e-12, rtol=0)
    w = random_stiefel(3, 20, gen)
    torch.testing.assert_close(w @ w.T, torch.eye(3, dtype=torch.float64), atol=1e-12, rtol=0)
    # Haar: E[M Mᵀ] = (k/n) I
    draws = [random_stiefel(8, 2, gen) for _ in range(2000)]
    acc = sum(z @ z.T for z in draws) / len(draws)
    torch.testing.assert_close(acc, 0.25 * torch.eye(8, dtype=torch.float64), atol=0.03, rtol=0)


# ---- Theorem B.3 -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("sigma", ["isotropic", "lowrank", "decaying"])
def test_batched_terms_match_the_lemmas(sigma):
    gen = torch.Generator().manual_seed(1)
    d, r = 10, 3
    f, dm, _ = sample_instances(3, d, sigma=sigma, delta="gaussian", r_x=r, delta_rank=r, decay=1.0, gen=gen)
    q = haar(d, r, gen, batch=(3,)).transpose(-2, -1)
    u = haar(d, r, gen, batch=(3,))
    terms = explained_terms(f, dm, q, u, r)
    for t in range(3):
        cov = f[t] @ f[t].T
        assert float(torch.trace(dm[t] @ cov @ dm[t].T)) == pytest.approx(1.0, rel=1e-12)
        _, lb = freeze_a_optimum(dm[t], cov, q[t], singular="pinv")
        _, la = freeze_b_optimum(dm[t], cov, u[t])
        _, _, lj = joint_optimum(dm[t], cov, r)
        assert float(1 - terms["iii_a"][t]) == pytest.approx(lb, abs=1e-9)
        assert float(1 - terms["iii_b"][t]) == pytest.approx(la, abs=1e-12)
        assert float(1 - terms["lora"][t]) == pytest.approx(lj, abs=1e-9)


def test_batched_terms_when_q_misses_part_of_the_input_space():
    # Q's rows orthogonal to one direction of Σ's range: Q Σ Qᵀ is singular and Q F has a zero singular
    # value whose direction still carries signal (Δ F ≠ 0 there); it must not count as explained.
    gen = torch.Generator().manual_seed(4)
    d, r = 9, 3
    f = torch.randn(1, d, 2, generator=gen, dtype=torch.float64)
    f2 = f[0, :, 1:] / torch.linalg.norm(f[0, :, 1])
    m = torch.randn(d, r, generator=gen, dtype=torch.float64)
    q = torch.linalg.qr(m - f2 @ (f2.T @ m))[0].T[None]  # orthonormal rows, all ⟂ f2
    dm = torch.randn(1, d, d, generator=gen, dtype=torch.float64)
    u = haar(d, r, gen, batch=(1,))
    terms = explained_terms(f, dm, q, u, r)
    cov = f[0] @ f[0].T
    total = float(torch.trace(dm[0] @ cov @ dm[0].T))
    with pytest.raises(ValueError, match="singular"):
        freeze_a_optimum(dm[0], cov, q[0])
    _, lb = freeze_a_optimum(dm[0], cov, q[0], singular="pinv")
    assert float(terms["total"][0] - terms["iii_a"][0]) == pytest.approx(lb, abs=1e-9 * total)
    assert lb > 0.05 * total  # the missed direction is not explained


def test_theorem_experiment_behaviour():
    cells = {(c.sigma, c.d): c for c in theorem_experiment([8, 64], rank=4, trials=120, deltas=("gaussian",))}
    for d in (8, 64):
        low = cells[("lowrank", d)]
        # r_X = r: B-only explains everything and E[gap] = (1 − r/d) exactly (paper's formula)
        assert low.prob_b_wins == 1.0 and abs(low.loss_b_only) < 1e-9
        assert low.paper_gap == pytest.approx(1 - 4 / d, rel=1e-12)
        assert abs(low.gap_mean - low.paper_gap) < 4 * low.gap_se + 1e-12
        # isotropic Σ: both losses have the same distribution; the gap is 0 on average
        iso = cells[("isotropic", d)]
        assert abs(iso.gap_mean) < 4 * iso.gap_se + 1e-12 and 0.3 < iso.prob_b_wins < 0.7
        # E[A-only excess] = 1 − r/d for every family (E_U[UUᵀ] = (r/d) I)
        for fam in ("isotropic", "lowrank", "decaying"):
            c = cells[(fam, d)]
            assert c.loss_a_only == pytest.approx(1 - 4 / d, abs=0.05)
            assert c.loss_lora <= c.loss_b_only + 1e-9 and c.loss_lora <= c.loss_a_only + 1e-9
    assert cells[("decaying", 64)].prob_b_wins > 0.95 and cells[("decaying", 64)].gap_mean > 0.05


def test_extreme_example():
    for r_x in (2, 4):
        e = extreme_example(32, 24, 4, r_x=r_x, seed=1)
        assert e.rebuild_rel_error < 1e-10
        assert abs(e.excess_b_only) < 1e-9 and abs(e.excess_lora) < 1e-9
        assert e.excess_a_only > 0.5
    e = extreme_example(32, 24, 4, r_x=8, seed=1)
    assert e.rebuild_rel_error > 0.1 and e.excess_b_only > e.excess_lora + 0.05


# ---- §B.1.2 logistic regression ------------------------------------------------------------------------------

def test_logistic_gradients_match_autograd():
    gen = torch.Generator().manual_seed(0)
    k, d, r, n = 5, 7, 2, 30
    x = torch.randn(n, d, generator=gen, dtype=torch.float64)
    labels = torch.randint(0, k, (n,), generator=gen)
    w0 = torch.randn(k, d, generator=gen, dtype=torch.float64)
    bias = torch.randn(k, generator=gen, dtype=torch.float64)
    a = torch.randn(r, d, generator=gen, dtype=torch.float64, requires_grad=True)
    b = torch.randn(k, r, generator=gen, dtype=torch.float64, requires_grad=True)
    loss = torch.nn.functional.cross_entropy(x @ (w0 + b @ a).T + bias, labels, reduction="sum")
    ga, gb = torch.autograd.grad(loss, (a, b))
    fa, fb = logistic_factor_grads(w0, bias, x, labels, a.detach(), b.detach())
    torch.testing.assert_close(fa, ga, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(fb, gb, rtol=1e-10, atol=1e-12)


def test_frozen_b_confines_the_update_to_its_output_subspace():
    gen = torch.Generator().manual_seed(0)
    k, d, r = 6, 8, 2
    x = torch.randn(200, d, generator=gen, dtype=torch.float64)
    labels = torch.randint(0, k, (200,), generator=gen)
    w0, bias = torch.zeros(k, d, dtype=torch.float64), torch.zeros(k, dtype=torch.float64)
    w, _ = fit_logistic(x, labels, w0, bias, method="A-only", rank=r, generator=torch.Generator().manual_seed(9),
                        max_iter=50)
    u = random_stiefel(k, r, torch.Generator().manual_seed(9))  # the same frozen B
    dw = w - w0
    torch.testing.assert_close(u @ (u.T @ dw), dw, atol=1e-10, rtol=0)  # columns inside span(U)
    assert torch.linalg.matrix_rank(dw) <= r
    w, _ = fit_logistic(x, labels, w0, bias, method="B-only", rank=r, generator=torch.Generator().manual_seed(9),
                        max_iter=50)
    q = random_stiefel(r, d, torch.Generator().manual_seed(9))  # the same frozen A
    torch.testing.assert_close((w - w0) @ q.T @ q, w - w0, atol=1e-10, rtol=0)  # rows inside span(Qᵀ)
    full, fb = fit_logistic(x, labels, w0, bias, method="full", max_iter=100)
    from asymlora.theory.nonlinear import logistic_loss
    assert float(logistic_loss(full, fb, x, labels)) < float(logistic_loss(w, _, x, labels))


def test_digits_experiment_small():
    pytest.importorskip("sklearn")
    from asymlora.theory import digits_experiment

    rows = digits_experiment(ranks=(2,), seeds=(0,), max_iter=40)
    by = {(r.method, r.rank): r for r in rows}
    assert set(by) == {("none", 0), ("bias", 0), ("full", 0), ("B-only", 2), ("A-only", 2), ("LoRA", 2)}
    assert by[("full", 0)].train_loss < by[("LoRA", 2)].train_loss < by[("bias", 0)].train_loss
    assert by[("B-only", 2)].trainable == 10 * 2 + 10 and by[("A-only", 2)].trainable == 2 * 64 + 10
    assert 0.0 <= by[("LoRA", 2)].linear_excess <= by[("B-only", 2)].linear_excess <= 1.0


# ---- Lemma B.5 -------------------------------------------------------------------------------------------

def test_generalization_bound_formula():
    dims = [(768, 2304), (1024, 1024), (3072, 768)]
    r, q, s, n = 8, 16, 0.5, 5000
    for tuned, total in (("BA", 768 + 2304 + 2048 + 3072 + 768), ("B", 2304 + 1024 + 768), ("A", 768 + 1024 + 3072)):
        expected = math.sqrt(2 * r * q * s * s * math.log(2) / n * total)
        assert generalization_bound(dims, r, q, s, n, tuned) == pytest.approx(expected, rel=1e-14)
        assert trainable_numbers(dims, r, tuned) == r * total
    square = [(512, 512)] * 4
    ratio = generalization_bound(square, r, q, s, n, "B") / generalization_bound(square, r, q, s, n, "BA")
    assert ratio == pytest.approx(1 / math.sqrt(2), rel=1e-14)  # the paper's √2
    assert equal_bound_rank(square, 8) == (16.0, 16)
    exact, whole = equal_bound_rank(dims, 8, "B")
    assert exact == pytest.approx(8 * (768 + 2304 + 2048 + 3072 + 768) / (2304 + 1024 + 768))
    assert generalization_bound(dims, whole, q, s, n, "B") <= generalization_bound(dims, 8, q, s, n, "BA")
    assert generalization_bound(dims, whole + 1, q, s, n, "B") > generalization_bound(dims, 8, q, s, n, "BA")
    rows = bound_table(square, 8, q, s, n)
    assert [r_["ratio_to_lora"] for r_ in rows][:2] == [1.0, pytest.approx(2 ** -0.5)]


def test_generalization_bound_errors():
    with pytest.raises(ValueError, match="tuned"):
        generalization_bound([(4, 4)], 2, 32, 1.0, 10, tuned="AB")
    with pytest.raises(ValueError, match="empty"):
        generalization_bound([], 2, 32, 1.0, 10)
    with pytest.raises(ValueError, match="n >= 1"):
        generalization_bound([(4, 4)], 2, 32, 1.0, 0)


def test_model_layer_dims_reads_injected_model():
    import asymlora

    model = torch.nn.Sequential(torch.nn.Linear(6, 10), torch.nn.ReLU(), torch.nn.Linear(10, 4), torch.nn.Linear(4, 2))
    asymlora.inject(model, asymlora.AdapterConfig.preset("b-only", rank=2, targets=["0", "2"]))
    dims = model_layer_dims(model)
    assert dims == [("0", 6, 10), ("2", 10, 4)]
    assert generalization_bound(dims, 2, 32, 1, 100, "B") == pytest.approx(math.sqrt(2 * 2 * 32 * math.log(2) / 100 * 14))
    with pytest.raises(ValueError, match="inject"):
        model_layer_dims(torch.nn.Linear(3, 3))
