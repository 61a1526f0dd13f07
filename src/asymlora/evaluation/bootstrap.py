r"""Percentile bootstrap intervals for a statistic of per-example scores.

Given per-example values x_1..x_n (0/1 correctness, a ROUGE F-measure, ...) and a statistic T (the mean
by default), draw B resamples of size n with replacement, x*_b, and report the (α/2, 1 − α/2) empirical
quantiles of T(x*_1) … T(x*_B) as the interval for T(x) at level 1 − α (Efron & Tibshirani 1993, §13.3).
Resampling is seeded, so an interval is reproducible; with ``groups`` (e.g. MMLU subjects) the resample
is stratified: each group is resampled within itself, which keeps every group's size fixed, as an
average over groups needs.
"""

from __future__ import annotations

from typing import Callable, Hashable, Sequence

import numpy as np

DEFAULT_RESAMPLES = 1000


def bootstrap_interval(values: Sequence[float], *, statistic: Callable[[np.ndarray], float] = np.mean,
                       level: float = 0.95, resamples: int = DEFAULT_RESAMPLES, seed: int = 0,
                       groups: Sequence[Hashable] | None = None) -> tuple[float, float]:
    """(low, high) percentile-bootstrap interval of ``statistic(values)`` at ``level`` (see the module doc).

    ``statistic`` takes a 1-d array (or, with ``groups``, the resampled values in group order) and returns
    a number. One value gives the degenerate interval (v, v); no values raise ``ValueError``.
    """
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    if x.size == 0:
        raise ValueError("a bootstrap interval needs at least one value")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if resamples < 1:
        raise ValueError(f"resamples must be ≥ 1, got {resamples}")
    rng = np.random.default_rng(seed)
    if groups is None:
        idx = rng.integers(0, x.size, size=(resamples, x.size))
    else:
        if len(groups) != x.size:
            raise ValueError(f"{len(groups)} group labels for {x.size} values")
        members: dict[Hashable, list[int]] = {}
        for i, g in enumerate(groups):
            members.setdefault(g, []).append(i)
        blocks = [np.asarray(m)[rng.integers(0, len(m), size=(resamples, len(m)))] for m in members.values()]
        idx = np.concatenate(blocks, axis=1)
    stats = np.array([statistic(x[row]) for row in idx], dtype=np.float64)
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(stats, [alpha, 1.0 - alpha])
    return float(low), float(high)
