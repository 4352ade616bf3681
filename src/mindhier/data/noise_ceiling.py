"""Noise ceilings with NSD's definitions (Allen et al. 2022, Nature Neuroscience, Methods).

The noise-ceiling signal-to-noise ratio of a voxel is ncsnr = σ_signal / σ_noise, where σ_noise² is
the variance of responses across repetitions of the same image and σ_signal² = max(total variance −
σ_noise², 0). The noise ceiling for responses averaged over n repetitions is

    NC = 100 · ncsnr² / (ncsnr² + 1/n)      (percent of variance a perfect model could explain).

Shape letters (docs/glossary.md): T trials, N repeated images, V voxels.
"""

from __future__ import annotations

import numpy as np


def noise_ceiling(ncsnr_V: np.ndarray, n_repeats: int) -> np.ndarray:
    """NC in percent for responses averaged over `n_repeats` trials."""
    snr2 = np.square(np.asarray(ncsnr_V, dtype=np.float64))
    return 100.0 * snr2 / (snr2 + 1.0 / n_repeats)


def ncsnr_from_trials(betas_TV: np.ndarray, image_T: np.ndarray) -> np.ndarray:
    """Estimate ncsnr per voxel from repeated presentations (images seen once are ignored).

    σ_noise² is the pooled within-image variance (unbiased, ddof = 1 per image); the total variance is
    taken over the same trials.
    """
    betas_TV = np.asarray(betas_TV, dtype=np.float64)
    image_T = np.asarray(image_T)
    _, inverse, counts = np.unique(image_T, return_inverse=True, return_counts=True)
    repeated_T = counts[inverse] >= 2
    if repeated_T.sum() < 4:
        raise ValueError("ncsnr needs images shown at least twice; found too few repeated trials")
    b_TV = betas_TV[repeated_T]
    group_T = inverse[repeated_T]
    order_T = np.argsort(group_T, kind="stable")
    group_T, b_TV = group_T[order_T], b_TV[order_T]
    starts = np.flatnonzero(np.r_[True, group_T[1:] != group_T[:-1]])
    count_N = np.diff(np.r_[starts, len(group_T)]).astype(np.float64)
    means_NV = np.add.reduceat(b_TV, starts, axis=0) / count_N[:, None]
    group_T = np.repeat(np.arange(len(starts)), count_N.astype(np.int64))
    dof = float((count_N - 1).sum())
    noise_var_V = np.square(b_TV - means_NV[group_T]).sum(axis=0) / dof
    total_var_V = b_TV.var(axis=0, ddof=1)
    signal_var_V = np.maximum(total_var_V - noise_var_V, 0.0)
    return np.sqrt(signal_var_V / np.maximum(noise_var_V, 1e-12))
