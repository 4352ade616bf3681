"""Uncertainty of reported means: bootstrap confidence intervals over images, and paired comparisons.

Every metric is computed per image on the full test pool; its mean is reported with a percentile
bootstrap 95 % interval from resampling images with replacement (10,000 seeded resamples by default).
Two methods on the same images are compared pairwise: the bootstrap interval of the mean per-image
difference, a two-sided bootstrap p-value, and the Wilcoxon signed-rank test.

Shape letters (docs/glossary.md): N images, S bootstrap resamples.
"""

from __future__ import annotations

from typing import Any

import numpy as np

N_RESAMPLES = 10_000


def _resample_means(values_N: np.ndarray, n_resamples: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    index_SN = rng.integers(0, len(values_N), size=(n_resamples, len(values_N)))
    return values_N[index_SN].mean(axis=1)


def bootstrap_ci(values, n_resamples: int = N_RESAMPLES, seed: int = 0, level: float = 0.95) -> dict[str, Any]:
    """Mean and percentile bootstrap interval of per-image values (NaNs are an error, not skipped)."""
    values_N = np.asarray(values, dtype=np.float64)
    if values_N.size == 0 or not np.all(np.isfinite(values_N)):
        raise ValueError("bootstrap needs a non-empty array of finite per-image values")
    means = _resample_means(values_N, n_resamples, seed)
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(means, [tail, 100 - tail])
    return {
        "mean": float(values_N.mean()),
        "ci95": [float(lo), float(hi)],
        "n": int(values_N.size),
        "resamples": n_resamples,
        "seed": seed,
    }


def paired_difference(a, b, n_resamples: int = N_RESAMPLES, seed: int = 0) -> dict[str, Any]:
    """Mean of a − b over the same images, its bootstrap interval and p-values (two-sided)."""
    a_N, b_N = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a_N.shape != b_N.shape:
        raise ValueError(f"paired comparison needs the same images: {a_N.shape} vs {b_N.shape}")
    diff = a_N - b_N
    summary = bootstrap_ci(diff, n_resamples, seed)
    means = _resample_means(diff, n_resamples, seed)
    # two-sided bootstrap p: how often the resampled mean falls on the other side of zero, doubled
    p_boot = min(1.0, 2 * min(float((means <= 0).mean()), float((means >= 0).mean())))
    if np.allclose(diff, 0):
        p_wilcoxon = 1.0
    else:
        from scipy.stats import wilcoxon

        p_wilcoxon = float(wilcoxon(a_N, b_N, zero_method="wilcox").pvalue)
    return {**summary, "p_bootstrap": p_boot, "p_wilcoxon": p_wilcoxon}
