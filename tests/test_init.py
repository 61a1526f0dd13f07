import math

import pytest
import torch
import torch.nn as nn

import asymlora
from asymlora.init import (
    factor_seed,
    fingerprint,
    fingerprints_match,
    haar_orthonormal_columns,
    init_factor,
    kaiming_uniform,
    svd_factors,
)


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


# ---- the frozen factor is the same everywhere, for ever (issue 15) ----------------------------------
# Old checkpoints store a frozen random factor as its seed only; if a change of torch, platform or
# device made the same seed give another matrix, they would load a different model. These numbers were
# produced by asymlora 0.1.0 with torch 2.13 on x86-64 and must never change (up to LAPACK round-off).

def test_the_seed_derivation_is_pinned():
    assert factor_seed(0, "encoder.layer.0.attention.self.query", "A") == 339444080634078481
    assert factor_seed(0, "encoder.layer.0.attention.self.query", "B") != 339444080634078481


def test_the_generated_frozen_factors_are_pinned():
    a = init_factor("orthogonal", "A", (4, 16), seed=factor_seed(0, "encoder.layer.0.attention.self.query", "A"))
    expected = [-0.12205637950880321, 0.2787638004269488, 0.47600988165252334, 0.09620072329744173]
    assert torch.allclose(a[0, :4], torch.tensor(expected, dtype=torch.float64), atol=1e-9, rtol=0)
    assert torch.allclose(a[3, -2:], torch.tensor([-0.10550965009041584, 0.297030906441437], dtype=torch.float64),
                          atol=1e-9, rtol=0)
    assert fingerprints_match([2.502034136071326, -3.008248556327759, 3.243838054377988, -0.4083896288250479, 2.0],
                              fingerprint(a))
    k = init_factor("kaiming", "A", (2, 8), seed=factor_seed(3, "mlp.0", "A"))
    assert k[0, :3].tolist() == [0.2955301042421926, 0.056790953197874736, 0.05436217044100444]
    g = init_factor("gaussian", "B", (8, 2), seed=factor_seed(3, "mlp.0", "B"))
    assert g[:2, 0].tolist() == [0.21297245978022603, 0.28102557331701605]


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_frozen_factors_are_drawn_on_the_cpu_in_float64_whatever_the_model(device, dtype):
    """The layer's A is the CPU float64 draw, only then cast to the factor dtype and moved."""
    net = nn.Sequential(nn.Linear(16, 8)).to(device=device, dtype=dtype)
    asymlora.inject(net, asymlora.AdapterConfig.preset("b-only", rank=4, targets=["0"], seed=5))
    layer = net[0]
    reference = init_factor("orthogonal", "A", (4, 16), seed=layer.seeds["A"])
    factor_dtype = torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype
    assert layer.lora_A.device.type == device and layer.lora_A.dtype == factor_dtype
    assert torch.equal(layer.lora_A.cpu(), reference.to(factor_dtype))
