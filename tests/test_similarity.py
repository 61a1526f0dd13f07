"""asymlora.similarity: Appendix D's measure against scipy's principal angles, its invariances, edge
cases, and the across-runs matrices on real saved adapters (asymlora and PEFT format)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from asymlora.similarity import (
    compare_checkpoints,
    compare_runs,
    factor_similarity,
    format_table,
    orthonormal_basis,
    plot_similarity,
    random_baseline,
    subspace_similarity,
)


def _reference(x, y):
    """Σ cos² of the principal angles (scipy) / min(r₁, r₂): the same quantity computed another way."""
    from scipy.linalg import subspace_angles

    theta = subspace_angles(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64))
    return float(np.sum(np.cos(theta) ** 2) / min(np.linalg.matrix_rank(x), np.linalg.matrix_rank(y)))


@pytest.mark.parametrize("shape", [(20, 3, 3), (20, 2, 5), (50, 8, 4), (6, 6, 6)])
def test_matches_principal_angles(shape):
    pytest.importorskip("scipy")
    n, r1, r2 = shape
    rng = np.random.default_rng(n + r1 + r2)
    for _ in range(5):
        x, y = rng.standard_normal((n, r1)), rng.standard_normal((n, r2))
        # partly shared: mix a column of X into Y
        y[:, 0] += 2 * x[:, 0]
        assert subspace_similarity(x, y) == pytest.approx(_reference(x, y), abs=1e-12)


def test_matches_explicit_formula_with_qr_bases():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((30, 4)), rng.standard_normal((30, 6))
    ux, uy = np.linalg.qr(x)[0], np.linalg.qr(y)[0]
    assert subspace_similarity(x, y) == pytest.approx(np.linalg.norm(uy.T @ ux) ** 2 / 4, abs=1e-12)


def test_basic_properties():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((16, 3))
    assert subspace_similarity(x, x) == pytest.approx(1.0, abs=1e-12)
    y = rng.standard_normal((16, 5))
    assert subspace_similarity(x, y) == pytest.approx(subspace_similarity(y, x), abs=1e-14)
    # a subspace inside another scores 1
    assert subspace_similarity(x[:, :2], x) == pytest.approx(1.0, abs=1e-12)
    # orthogonal subspaces score 0
    q = np.linalg.qr(rng.standard_normal((16, 6)))[0]
    assert subspace_similarity(q[:, :3], q[:, 3:]) == pytest.approx(0.0, abs=1e-12)
    assert 0.0 <= subspace_similarity(x, y) <= 1.0


def test_random_subspaces_average_the_baseline():
    gen = torch.Generator().manual_seed(0)
    vals = [subspace_similarity(torch.randn(24, 3, generator=gen), torch.randn(24, 3, generator=gen))
            for _ in range(400)]
    assert np.mean(vals) == pytest.approx(random_baseline(24, 3), abs=0.02)  # ≈ 4 standard errors
    assert random_baseline(24, 2, 6) == pytest.approx(6 / 24)


def test_invariant_to_change_of_basis():
    rng = np.random.default_rng(2)
    d_in, d_out, r = 20, 14, 4
    a1, b1 = rng.standard_normal((r, d_in)), rng.standard_normal((d_out, r))
    a2, b2 = rng.standard_normal((r, d_in)), rng.standard_normal((d_out, r))
    b2[:, 0] = b1[:, 0]  # share one output direction so the value is not trivial
    a2[0] = a1[0]
    base_a, base_b = factor_similarity(a1, a2, "A"), factor_similarity(b1, b2, "B")
    assert 0.2 < base_a < 1.0 and 0.2 < base_b < 1.0
    for _ in range(5):
        c1 = rng.standard_normal((r, r)) + 3 * np.eye(r)
        c2 = rng.standard_normal((r, r)) + 3 * np.eye(r)
        # (B C, C⁻¹ A) is the same adapter
        np.testing.assert_allclose((b1 @ c1) @ (np.linalg.inv(c1) @ a1), b1 @ a1, atol=1e-10)
        assert factor_similarity(np.linalg.inv(c1) @ a1, np.linalg.inv(c2) @ a2, "A") == pytest.approx(base_a, abs=1e-10)
        assert factor_similarity(b1 @ c1, b2 @ c2, "B") == pytest.approx(base_b, abs=1e-10)
        assert factor_similarity(np.linalg.inv(c1) @ a1, a1, "A") == pytest.approx(1.0, abs=1e-10)
        assert factor_similarity(b1 @ c1, b1, "B") == pytest.approx(1.0, abs=1e-10)


def test_factor_uses_right_vectors_of_a_and_left_of_b():
    rng = np.random.default_rng(3)
    a = rng.standard_normal((3, 10))
    a_same_rows = rng.standard_normal((3, 3)) @ a
    a_other = rng.standard_normal((3, 10))
    assert factor_similarity(a, a_same_rows, "A") == pytest.approx(1.0, abs=1e-12)
    assert factor_similarity(a, a_other, "A") < 0.9
    vt = np.linalg.svd(a, full_matrices=False)[2]
    assert factor_similarity(a, vt, "A") == pytest.approx(1.0, abs=1e-12)
    with pytest.raises(ValueError, match="'A' or 'B'"):
        factor_similarity(a, a, "C")


def test_rank_deficient_and_zero_factors():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((12, 2))
    dup = np.concatenate([x, x[:, :1] + x[:, 1:]], axis=1)  # rank 2 in 3 columns
    assert orthonormal_basis(dup).shape == (12, 2)
    assert subspace_similarity(dup, x) == pytest.approx(1.0, abs=1e-12)
    assert subspace_similarity(np.zeros((12, 3)), x) == 0.0
    assert subspace_similarity(np.zeros((12, 3)), np.zeros((12, 3))) == 0.0
    assert factor_similarity(np.zeros((4, 12)), rng.standard_normal((4, 12)), "A") == 0.0
    # a float32 factor with a tiny noise direction counts at float32 precision
    y = np.concatenate([x, 1e-9 * rng.standard_normal((12, 1))], axis=1).astype(np.float32)
    assert orthonormal_basis(torch.as_tensor(y)).shape[1] == 2


def test_bad_inputs():
    with pytest.raises(ValueError, match="same number of rows"):
        subspace_similarity(np.ones((5, 2)), np.ones((6, 2)))
    with pytest.raises(ValueError, match="NaN"):
        subspace_similarity(np.full((5, 2), np.nan), np.ones((5, 2)))
    with pytest.raises(ValueError, match="2-D"):
        subspace_similarity(np.ones(5), np.ones((5, 2)))


# ---- across runs -------------------------------------------------------------------------------------

def _runs():
    gen = torch.Generator().manual_seed(0)
    a0, b0 = torch.randn(4, 16, generator=gen), torch.randn(12, 4, generator=gen)
    c = torch.randn(4, 4, generator=gen) + 3 * torch.eye(4)
    run0 = {"l1": (a0, b0), "l2": (torch.randn(4, 8, generator=gen), torch.randn(8, 4, generator=gen))}
    run1 = {"l1": (torch.linalg.inv(c) @ a0, b0 @ c), "l2": (torch.randn(4, 8, generator=gen), run0["l2"][1])}
    run2 = {"l1": (torch.randn(4, 16, generator=gen), torch.randn(12, 4, generator=gen)),
            "l2": (torch.randn(4, 8, generator=gen), torch.randn(8, 4, generator=gen)),
            "extra": (torch.randn(2, 3, generator=gen), torch.randn(3, 2, generator=gen))}
    return {"r0": run0, "r1": run1, "r2": run2}


def test_compare_runs_matrices():
    runs = _runs()
    res = compare_runs(runs)
    assert res.runs == ["r0", "r1", "r2"] and res.layers == ["l1", "l2"]
    assert "extra" in res.skipped and "missing" in res.skipped["extra"]
    for m in (res.a, res.b):
        torch.testing.assert_close(m, m.transpose(1, 2))
        torch.testing.assert_close(torch.diagonal(m, dim1=1, dim2=2), torch.ones(2, 3, dtype=m.dtype))
    # r1's l1 is r0's l1 after a change of basis; r1's l2 shares B only
    assert float(res.a[0, 0, 1]) == pytest.approx(1.0, abs=1e-6) and float(res.b[0, 0, 1]) == pytest.approx(1.0, abs=1e-6)
    assert float(res.b[1, 0, 1]) == pytest.approx(1.0, abs=1e-6) and float(res.a[1, 0, 1]) < 0.95
    # every entry is the pairwise function
    for li, name in enumerate(res.layers):
        for i, ri in enumerate(res.runs):
            for j, rj in enumerate(res.runs):
                assert float(res.a[li, i, j]) == pytest.approx(factor_similarity(runs[ri][name][0], runs[rj][name][0], "A"), abs=1e-12)
                assert float(res.b[li, i, j]) == pytest.approx(factor_similarity(runs[ri][name][1], runs[rj][name][1], "B"), abs=1e-12)
    pm = res.pair_matrix("B")
    assert pm.shape == (2, 3) and res.pair_labels() == ["r0~r1", "r0~r2", "r1~r2"]
    assert res.baseline_a == [4 / 16, 4 / 8] and res.baseline_b == [4 / 12, 4 / 8]
    text = format_table(res)
    assert "l1" in text and "r0~r1" in text and "skipped 1 layer" in text


def test_compare_runs_errors_and_shape_mismatch():
    runs = _runs()
    with pytest.raises(ValueError, match="at least two"):
        compare_runs({"only": runs["r0"]})
    bad = dict(runs)
    bad["r3"] = {"l1": (torch.randn(4, 15), torch.randn(12, 4)), "l2": runs["r0"]["l2"]}
    res = compare_runs(bad)
    assert res.layers == ["l2"] and "differ" in res.skipped["l1"]
    with pytest.raises(ValueError, match="no layer"):
        compare_runs([{"x": runs["r0"]["l1"]}, {"y": runs["r0"]["l2"]}])


def _tiny_model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(12, 16), torch.nn.ReLU(), torch.nn.Linear(16, 8), torch.nn.ReLU(),
                               torch.nn.Linear(8, 3))


def _train(model, steps=15, data_seed=0):
    gen = torch.Generator().manual_seed(data_seed)
    x, y = torch.randn(64, 12, generator=gen), torch.randint(0, 3, (64,), generator=gen)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.2)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model


def save_runs(root, presets=("b-only", "b-only", "lora")):
    """Train tiny adapters and save them; the last one also exported in PEFT format. Returns dirs, models."""
    import asymlora

    dirs, models = [], []
    for i, preset in enumerate(presets):
        model = asymlora.inject(_tiny_model(), asymlora.AdapterConfig.preset(preset, rank=3, targets=["0", "2"], seed=i))
        _train(model)
        d = root / f"run{i}"
        asymlora.save_adapter(model, d)
        dirs.append(d)
        models.append(model)
    peft_dir = root / "peft_last"
    asymlora.export_peft(models[-1], peft_dir)
    return dirs, models, peft_dir


def test_compare_checkpoints_on_saved_adapters(tmp_path):
    import asymlora

    dirs, models, peft_dir = save_runs(tmp_path)
    res = compare_checkpoints([*dirs, peft_dir])
    assert res.runs == ["run0", "run1", "run2", "peft_last"]
    assert res.layers == ["0", "2"]
    live = {f"run{i}": {n: (l.lora_A.detach(), l.lora_B.detach()) for n, l in asymlora.adapted_layers(m)}
            for i, m in enumerate(models)}
    ref = compare_runs(live)
    torch.testing.assert_close(res.a[:, :3, :3], ref.a, atol=1e-6, rtol=0)
    torch.testing.assert_close(res.b[:, :3, :3], ref.b, atol=1e-6, rtol=0)
    # the PEFT export of run2 is the same adapter
    torch.testing.assert_close(res.a[:, 2, 3], torch.ones(2, dtype=res.a.dtype), atol=1e-6, rtol=0)
    torch.testing.assert_close(res.b[:, 2, 3], torch.ones(2, dtype=res.b.dtype), atol=1e-6, rtol=0)


def test_plot_writes_png(tmp_path):
    pytest.importorskip("matplotlib")
    res = compare_runs(_runs())
    path = plot_similarity(res, tmp_path / "fig" / "sim.png", title="t")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _figure1_runs():
    """Four runs, two tasks × two inits: A is its init's subspace, B its task's (plus a little noise)."""
    gen = torch.Generator().manual_seed(0)
    a_init = {s: torch.randn(2, 30, generator=gen, dtype=torch.float64) for s in (0, 1)}
    b_task = {t: torch.randn(25, 2, generator=gen, dtype=torch.float64) for t in ("x", "y")}
    runs, tasks, inits = {}, [], []
    for t in ("x", "y"):
        for s in (0, 1):
            noise = lambda *shape: 0.05 * torch.randn(*shape, generator=gen, dtype=torch.float64)  # noqa: E731
            runs[f"{t}{s}"] = {"l": (a_init[s] + noise(2, 30), b_task[t] + noise(25, 2))}
            tasks.append(t)
            inits.append(("lora", 2, s))
    return compare_runs(runs), tasks, inits


def test_scenarios_group_pairs_by_what_the_runs_share(tmp_path):
    from asymlora.similarity import format_scenarios, plot_scenarios, scenario_of, scenario_summary

    res, tasks, inits = _figure1_runs()
    summary = scenario_summary(res, tasks, inits)
    assert summary["same task, different init"]["pairs"] == ["x0~x1", "y0~y1"]
    assert summary["same init, different task"]["pairs"] == ["x0~y0", "x1~y1"]
    assert summary["different init and task"]["pairs"] == ["x0~y1", "x1~y0"]
    # A follows the init, B the task: the pattern of the paper's Figure 1, planted here
    assert summary["same init, different task"]["A"] > 0.9 > 0.3 > summary["same task, different init"]["A"]
    assert summary["same task, different init"]["B"] > 0.9 > 0.3 > summary["same init, different task"]["B"]
    pa = res.pair_matrix("A")
    assert summary["different init and task"]["A"] == pytest.approx(float(pa[:, [2, 3]].mean()))
    assert scenario_of("x", 0, "x", 0) is None
    text = format_scenarios(summary, 0.07, 0.08)
    assert "(b) same init, different task" in text and "0.070   0.080" in text
    assert plot_scenarios(summary, res, tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="a task and an init for each of the 4 runs"):
        scenario_summary(res, tasks[:3], inits)
