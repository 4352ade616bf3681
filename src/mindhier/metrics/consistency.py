"""Consistency: how much R samples of the same brain input differ (the paper: more stable than diffusion).

For every test input, R reconstructions under different seeds (`mindhier reconstruct --determinism R`):

* pixel variance — the variance over the R samples of every pixel value (RGB in [0, 1]), averaged over the
  image's pixels: one number per image; its mean over images and its distribution (quantiles) are reported;
* pairwise SSIM — SSIM (MindEye2's settings, `metrics/image.py`) of every pair of the R samples; per image
  the mean over the R(R − 1)/2 pairs, and over all pairs of all images a histogram (20 bins on [0, 1]);
* pairwise feature correlation — with a proxy extractor, the mean Pearson r of its features over the pairs.

Shape letters (docs/glossary.md): S samples (repeats), N images, H/W pixels.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from mindhier.metrics.identification import correlation_matrix
from mindhier.metrics.image import ssim

HISTOGRAM_BINS = 20
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def consistency(
    repeats_SN3HW: torch.Tensor, extractor=None, first_features_NF: torch.Tensor | None = None
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Per-image scores (`pixel_variance`, `pairwise_ssim`, `pairwise_feature_corr`) and the distributions;
    `first_features_NF`, when known, are the extractor's features of the first sample (not computed again)."""
    s = repeats_SN3HW.shape[0]
    if s < 2:
        raise ValueError("consistency needs at least 2 samples of every input")
    pairs = [(i, j) for i in range(s) for j in range(i + 1, s)]
    pair_ssim_PN = np.stack([ssim(repeats_SN3HW[i], repeats_SN3HW[j]) for i, j in pairs])
    variance_N = repeats_SN3HW.double().var(dim=0, unbiased=True).flatten(1).mean(1).numpy()
    per_image = {"pixel_variance": variance_N, "pairwise_ssim": pair_ssim_PN.mean(axis=0)}
    if extractor is not None:
        feats = [
            first_features_NF if i == 0 and first_features_NF is not None else extractor(repeats_SN3HW[i])
            for i in range(s)
        ]
        per_image["pairwise_feature_corr"] = np.mean(
            [correlation_matrix(feats[i], feats[j]).diagonal().numpy() for i, j in pairs], axis=0
        )
    counts, edges = np.histogram(pair_ssim_PN.ravel(), bins=HISTOGRAM_BINS, range=(0.0, 1.0))
    distributions = {
        "pixel_variance_quantiles": dict(
            zip(map(str, QUANTILES), np.quantile(variance_N, QUANTILES).tolist(), strict=True)
        ),
        "pairwise_ssim_histogram": {"edges": edges.round(3).tolist(), "counts": counts.tolist()},
    }
    return per_image, distributions
