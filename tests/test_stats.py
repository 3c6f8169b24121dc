"""The statistics behind compare's repeats table and paired test."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sentlab.stats import mean_ci, paired_bootstrap


def test_mean_ci_is_students_t_interval():
    summary = mean_ci([0.80, 0.84, 0.82])
    assert summary["n"] == 3 and summary["mean"] == pytest.approx(0.82) and summary["std"] == pytest.approx(0.02)
    half = 4.302652729911275 * 0.02 / math.sqrt(3)  # t(0.975, 2 degrees of freedom)
    assert (summary["low"], summary["high"]) == pytest.approx((0.82 - half, 0.82 + half))
    single = mean_ci([0.7, None, float("nan")])
    assert single["n"] == 1 and single["mean"] == 0.7 and math.isnan(single["std"]) and math.isnan(single["low"])


def test_paired_bootstrap_tells_a_real_difference_from_none():
    rng = np.random.default_rng(0)
    a = (rng.random((3, 400)) < 0.9).astype(float)  # 3 seeds, 400 test examples
    same = paired_bootstrap(a, a)
    assert same["diff"] == 0 and same["p"] == 1.0
    worse = a.copy()
    worse[:, :60] = 0  # B misses 60 examples more, in every seed
    clear = paired_bootstrap(a, worse)
    assert clear["diff"] == pytest.approx(a[:, :60].mean(axis=0).sum() / 400)
    assert clear["p"] < 0.01 and 0 < clear["low"] <= clear["diff"] <= clear["high"]
    noise = paired_bootstrap(a, (rng.random((3, 400)) < 0.9).astype(float))
    assert noise["p"] > 0.05 and noise["low"] < 0 < noise["high"]  # two runs of the same accuracy: no difference
