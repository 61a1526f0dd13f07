import math

import pytest
import torch

from asymlora.init import (factor_seed, fingerprint, fingerprints_match, haar_orthonormal_columns,
                           init_factor, kaiming_uniform, svd_factors)


def test_orthogonal_a_has_orthonormal_rows_and_b_orthonormal_columns():
    a = init_factor("orthogonal", "A", (8, 50), seed=1)
    b = init_factor("orthogonal", "B", (30, 8), seed=2)
    assert torch.allclose(a @ a.T, torch.eye(8, dtype=a.dtype), atol=1e-12)
    assert torch.allclose(b.T @ b, torch.eye(8, dtype=b.dtype), atol=1e-12)


def _uncorrected_q00(seed: int, n: int) -> float:
    g = torch.randn(n, 1, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    q, _ = torch.linalg.qr(g)
    return float(q[0, 0])


def test_orthogonal_init_is_haar_distributed():
    # Under the Haar measure every entry is symmetric about 0: E[Q00] = 0, E[Q00²] = 1/n.
    n, trials = 6, 4000
    vals = torch.tensor([float(haar_orthonormal_columns(n, 2, seed)[0, 0]) for seed in range(trials)])
    stderr = vals.std() / math.sqrt(trials)
    assert abs(vals.mean()) < 4 * stderr
    assert abs((vals ** 2).mean() - 1 / n) < 0.01
    # A QR without the sign correction is biased (LAPACK makes R's diagonal negative-leaning):
    raw = torch.tensor([_uncorrected_q00(seed, n) for seed in range(trials)])
    assert abs(raw.mean()) > 10 * stderr


def test_same_seed_same_factor_other_seed_or_layer_other_factor():
    s = factor_seed(0, "encoder.layer.0.query", "A")
    assert s == factor_seed(0, "encoder.layer.0.query", "A")
    assert s != factor_seed(1, "encoder.layer.0.query", "A")
    assert s != factor_seed(0, "encoder.layer.1.query", "A")
    assert s != factor_seed(0, "encoder.layer.0.query", "B")
    assert torch.equal(init_factor("orthogonal", "A", (4, 20), seed=s), init_factor("orthogonal", "A", (4, 20), seed=s))


def test_kaiming_matches_lora_bound():
    t = kaiming_uniform((16, 400), seed=3, fan_in=400)
    bound = 1 / math.sqrt(400)
    assert t.abs().max() <= bound and t.abs().max() > 0.95 * bound
    # the same bound torch's kaiming_uniform_(a=√5) uses
    ref = torch.empty(16, 400)
    torch.nn.init.kaiming_uniform_(ref, a=math.sqrt(5))
    assert ref.abs().max() <= bound + 1e-7


def test_gaussian_scale_makes_columns_near_orthonormal():
    b = init_factor("gaussian", "B", (4000, 4), seed=0)
    assert torch.allclose(b.T @ b, torch.eye(4, dtype=b.dtype), atol=0.1)


def test_svd_factors_are_the_top_singular_vectors_of_w0():
    w0 = torch.randn(12, 20, generator=torch.Generator().manual_seed(0))
    a, b = svd_factors(w0, 3)
    u, s, vh = torch.linalg.svd(w0.double())
    # same subspaces, same vectors up to sign, and b·diag(s)·a reconstructs the rank-3 truncation
    assert torch.allclose((a @ vh[:3].T).abs(), torch.eye(3, dtype=torch.float64), atol=1e-10)
    assert torch.allclose((b.T @ u[:, :3]).abs(), torch.eye(3, dtype=torch.float64), atol=1e-10)
    assert torch.allclose(b @ torch.diag(s[:3]) @ a, (u[:, :3] * s[:3]) @ vh[:3], atol=1e-10)
    with pytest.raises(ValueError, match="rank ≤ min"):
        svd_factors(w0, 13)


def test_orthogonal_rank_above_dimension_is_an_error():
    with pytest.raises(ValueError, match="input projection A"):
        init_factor("orthogonal", "A", (9, 8), seed=0)
    with pytest.raises(ValueError, match="output projection B"):
        init_factor("orthogonal", "B", (8, 9), seed=0)


def test_fingerprint_tolerates_roundoff_but_not_another_matrix():
    a = init_factor("orthogonal", "A", (4, 30), seed=5)
    assert fingerprints_match(fingerprint(a), fingerprint(a + 1e-9))
    assert not fingerprints_match(fingerprint(a), fingerprint(init_factor("orthogonal", "A", (4, 30), seed=6)))
