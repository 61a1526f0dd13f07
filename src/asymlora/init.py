"""Factor initialisers, all deterministic functions of an explicit seed.

Every random factor is drawn on the CPU in float64 from a ``torch.Generator`` seeded by
:func:`factor_seed` ``(config seed, qualified layer name, "A" | "B")`` and only then cast and moved,
so the same seed gives the same matrix on any device. A frozen random factor is therefore fully
described by its seed and never needs to be stored (see :mod:`asymlora.checkpoint`).

Shapes are in matrix form: A is (r, d_in), B is (d_out, r); for a k×k Conv2d, d_in = c_in·k·k.
"""

from __future__ import annotations

import hashlib
import math

import torch


def factor_seed(seed: int, layer_name: str, factor: str) -> int:
    """A 63-bit seed for one factor of one layer: sha256 of ``"{seed}:{layer_name}:{factor}"``."""
    digest = hashlib.sha256(f"asymlora:{seed}:{layer_name}:{factor}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def _generator(seed: int) -> torch.Generator:
    g = torch.Generator(device="cpu")
    g.manual_seed(seed)
    return g


def haar(n: int, k: int, generator: torch.Generator | None = None, batch: tuple[int, ...] = ()) -> torch.Tensor:
    """(*batch, n × k) matrices with orthonormal columns, uniform (Haar) on the Stiefel manifold V_k(ℝⁿ), float64.

    Draw G ∈ ℝ^{n×k} with i.i.d. N(0, 1) entries and take G = Q R. Householder QR returns an R whose
    diagonal signs depend on G in a way that biases Q; multiplying each column of Q by
    sign(R_ii) makes the factorisation unique (R with positive diagonal) and Q exactly Haar
    distributed (Mezzadri, 2007). Requires k ≤ n. The one home of Haar sampling: the frozen factors
    and the theory's experiments both draw here.
    """
    if k > n:
        raise ValueError(f"cannot have {k} orthonormal vectors in dimension {n}: rank must be ≤ {n}")
    g = torch.randn(*batch, n, k, generator=generator, dtype=torch.float64)
    q, rr = torch.linalg.qr(g, mode="reduced")
    signs = torch.sign(torch.diagonal(rr, dim1=-2, dim2=-1))
    signs[signs == 0] = 1.0
    return q * signs.unsqueeze(-2)


def haar_orthonormal_columns(n: int, r: int, seed: int) -> torch.Tensor:
    """An (n × r) Haar matrix with orthonormal columns drawn from ``seed`` (see :func:`haar`)."""
    return haar(n, r, _generator(seed))


def orthogonal(shape: tuple[int, int], seed: int, *, rows: bool) -> torch.Tensor:
    """Haar-random factor: orthonormal rows (for A, ``rows=True``) or columns (for B)."""
    n_rows, n_cols = shape
    if rows:
        return haar_orthonormal_columns(n_cols, n_rows, seed).T.contiguous()
    return haar_orthonormal_columns(n_rows, n_cols, seed)


def kaiming_uniform(shape: tuple[int, int], seed: int, fan_in: int) -> torch.Tensor:
    """LoRA's init: ``kaiming_uniform_(a=√5)`` = U(−b, b) with b = gain·√(3/fan_in) = 1/√fan_in.

    ``fan_in`` is the factor's input size: d_in for A (c_in·k·k for a convolution), r for B.
    """
    bound = 1.0 / math.sqrt(fan_in)
    u = torch.rand(shape, generator=_generator(seed), dtype=torch.float64)
    return (2.0 * u - 1.0) * bound


def gaussian(shape: tuple[int, int], seed: int) -> torch.Tensor:
    """I.i.d. N(0, 1/d), d = the long side: columns (rows) are near-orthonormal when d ≫ r."""
    d = max(shape)
    return torch.randn(shape, generator=_generator(seed), dtype=torch.float64) / math.sqrt(d)


def svd_factors(w0: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-r singular vectors of the pretrained weight W0 (d_out × d_in) = U S Vᵀ.

    Returns ``(V_rᵀ, U_r)``: the paper's A_V (r × d_in, orthonormal rows) and B_U (d_out × r,
    orthonormal columns). Computed in float64 on the CPU; each singular pair's sign is fixed so that
    the largest-magnitude entry of the U column is positive, making the result reproducible across
    LAPACK builds up to round-off.
    """
    d_out, d_in = w0.shape
    if rank > min(d_out, d_in):
        raise ValueError(f"svd init needs rank ≤ min(d_out, d_in) = {min(d_out, d_in)}, got {rank}")
    u, _, vh = torch.linalg.svd(w0.detach().to("cpu", torch.float64), full_matrices=False)
    u, vh = u[:, :rank], vh[:rank]
    idx = u.abs().argmax(dim=0)
    signs = torch.sign(u[idx, torch.arange(rank)])
    signs[signs == 0] = 1.0
    return (vh * signs[:, None]).contiguous(), (u * signs).contiguous()


def init_factor(
    init: str,
    which: str,
    shape: tuple[int, int],
    *,
    seed: int,
    base_weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Build factor ``which`` ("A" or "B") of matrix ``shape`` with initialiser ``init`` (float64, CPU).

    ``base_weight`` (d_out × d_in, matrix layout) is needed only by ``"svd"``.
    """
    if which not in ("A", "B"):
        raise ValueError(f"which must be 'A' or 'B', got {which!r}")
    if init == "zeros":
        return torch.zeros(shape, dtype=torch.float64)
    if init == "orthogonal":
        role = "input projection A (r × d_in)" if which == "A" else "output projection B (d_out × r)"
        dim = shape[1] if which == "A" else shape[0]
        rank = shape[0] if which == "A" else shape[1]
        if rank > dim:
            raise ValueError(f"orthogonal {role} needs rank ≤ {dim}, got rank {rank}")
        return orthogonal(shape, seed, rows=(which == "A"))
    if init == "kaiming":
        return kaiming_uniform(shape, seed, fan_in=shape[1])
    if init == "gaussian":
        return gaussian(shape, seed)
    if init == "svd":
        if base_weight is None:
            raise ValueError("svd init needs the pretrained weight W0")
        rank = shape[0] if which == "A" else shape[1]
        a, b = svd_factors(base_weight, rank)
        return a if which == "A" else b
    raise ValueError(f"unknown init {init!r}")


def fingerprint(t: torch.Tensor) -> list[float]:
    """A short, round-off-tolerant summary of a matrix used to check a regenerated factor.

    Returns [Σ tᵢⱼ wᵢⱼ for 4 fixed pseudo-random weight patterns w] + [‖t‖_F]: a different matrix
    changes these by O(1) while LAPACK or BLAS round-off changes them by ~1e-7.
    """
    flat = t.detach().to("cpu", torch.float64).reshape(-1)
    probes = torch.randn(4, flat.numel(), generator=_generator(0x5EED), dtype=torch.float64)
    return [float(v) for v in (probes @ flat)] + [float(flat.norm())]


def fingerprints_match(expected: list[float], actual: list[float], tol: float = 1e-4) -> bool:
    """Whether two :func:`fingerprint` values agree within ``tol`` relative to the norm."""
    if len(expected) != len(actual):
        return False
    scale = max(1.0, abs(expected[-1]))
    return all(abs(e - a) <= tol * scale for e, a in zip(expected, actual))
