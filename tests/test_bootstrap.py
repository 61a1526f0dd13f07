"""Percentile bootstrap intervals: coverage, seeding, stratification."""

import numpy as np
import pytest

from asymlora.evaluation import bootstrap_interval


def test_interval_brackets_the_mean_and_is_reproducible():
    x = np.r_[np.ones(60), np.zeros(40)]  # accuracy 0.6 on 100 questions
    lo, hi = bootstrap_interval(x, seed=3)
    assert lo < 0.6 < hi
    # normal approximation: 0.6 ± 1.96·sqrt(0.24/100) = [0.504, 0.696]
    assert lo == pytest.approx(0.504, abs=0.02) and hi == pytest.approx(0.696, abs=0.02)
    assert bootstrap_interval(x, seed=3) == (lo, hi)
    assert bootstrap_interval(x, seed=4) != (lo, hi)


def test_constant_values_and_one_value_give_a_point():
    assert bootstrap_interval([0.25] * 7) == (0.25, 0.25)
    assert bootstrap_interval([1.0]) == (1.0, 1.0)


def test_stratified_resampling_keeps_group_sizes():
    # group a always 1, group b always 0: a within-group resample cannot move the mean at all
    values = [1.0] * 10 + [0.0] * 30
    groups = ["a"] * 10 + ["b"] * 30
    assert bootstrap_interval(values, groups=groups) == (0.25, 0.25)
    lo, hi = bootstrap_interval(values)  # unstratified: the share of a's varies
    assert lo < 0.25 < hi


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="at least one"):
        bootstrap_interval([])
    with pytest.raises(ValueError, match="level"):
        bootstrap_interval([1.0, 0.0], level=1.5)
    with pytest.raises(ValueError, match="group labels"):
        bootstrap_interval([1.0, 0.0], groups=["a"])
