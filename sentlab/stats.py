"""Statistics for comparing runs: a metric over repeated seeds, and a paired test of two settings on one test set."""

from __future__ import annotations

import math

import numpy as np


def mean_ci(values) -> dict[str, float]:
    """Mean, standard deviation and the 95 % confidence interval of the mean (Student's t) of repeated runs.
    One value has no spread: std and the interval are NaN."""
    from scipy import stats

    values = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    n = len(values)
    mean = float(values.mean()) if n else math.nan
    if n < 2:
        return {"n": n, "mean": mean, "std": math.nan, "low": math.nan, "high": math.nan}
    std = float(values.std(ddof=1))
    half = float(stats.t.ppf(0.975, n - 1)) * std / math.sqrt(n)
    return {"n": n, "mean": mean, "std": std, "low": mean - half, "high": mean + half}


def paired_bootstrap(a: np.ndarray, b: np.ndarray, resamples: int = 10_000, seed: int = 0) -> dict[str, float]:
    """Is setting A better than B on the same test examples? a, b: [seeds, examples] arrays, 1 where a run of that
    setting got the example right (row i of a and of b: runs with the same seed). The test examples are resampled
    with replacement; each resample's accuracy difference is the mean over examples of the seed-averaged difference.

    Returns the observed difference (A - B), its 95 % bootstrap interval and a two-sided p-value (twice the share of
    resamples on the far side of zero)."""
    per_example = np.asarray(a, dtype=float).mean(axis=0) - np.asarray(b, dtype=float).mean(axis=0)
    n = len(per_example)
    rng = np.random.default_rng(seed)
    diffs = np.concatenate(
        [  # in chunks: resamples x examples indices at once could be gigabytes
            per_example[rng.integers(0, n, size=(chunk, n))].mean(axis=1)
            for chunk in [1000] * (resamples // 1000) + [resamples % 1000]
            if chunk
        ]
    )
    low, high = np.percentile(diffs, [2.5, 97.5])
    p = min(1.0, 2 * min(float((diffs <= 0).mean()), float((diffs >= 0).mean())))
    return {"diff": float(per_example.mean()), "low": float(low), "high": float(high), "p": p}
