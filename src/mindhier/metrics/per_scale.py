"""Quality at each scale: how good the image is after scale k, for k = 1 … K (the coarse-to-fine strips).

A scale-wise decoder's image after scale k (all earlier scales' codes summed and decoded) is compared with
the ground truth **at that scale's resolution** r_k = max(8, ⌊image side · s_k / s_K⌉) px — what the first k
token maps can hold — both images resized there (antialiased bilinear):

* PixCorr — Pearson r of the flattened RGB pixels;
* SSIM    — scikit-image on greyscale, a uniform 7 × 7 window (MindEye2's Gaussian window, σ 1.5, spans
            11 px: too wide for the coarse scales), `data_range` 1;
* identification — exhaustive two-way identification with one offline proxy extractor (features of the
  image after scale k against the true images' features, chance 0.5).

Strips of the diffusion baseline are its predicted clean latent at as many evenly spaced DDIM steps as there
are scales (so both kinds line up); for it r_k still follows the token scales, as a common axis.

Shape letters (docs/glossary.md): N images, K scales, H/W pixels.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from mindhier.data.image_tensors import resize_uint8
from mindhier.metrics.identification import two_way_identification

MIN_PX = 8
SSIM_WINDOW = 7


def scale_resolutions(image_px: int, scales: tuple[int, ...]) -> list[int]:
    return [max(MIN_PX, round(image_px * s / scales[-1])) for s in scales]


def split_strips(strips_NHW3: np.ndarray, k: int) -> np.ndarray:
    """A strip image (the K images side by side) → [N, K, H, W, 3]."""
    n, h, w, _ = strips_NHW3.shape
    return strips_NHW3.reshape(n, h, k, w // k, 3).transpose(0, 2, 1, 3, 4)


def _pixcorr(a_NHW3: np.ndarray, b_NHW3: np.ndarray) -> np.ndarray:
    a = a_NHW3.reshape(len(a_NHW3), -1).astype(np.float64)
    b = b_NHW3.reshape(len(b_NHW3), -1).astype(np.float64)
    a, b = a - a.mean(1, keepdims=True), b - b.mean(1, keepdims=True)
    return (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)


def _ssim(a_NHW3: np.ndarray, b_NHW3: np.ndarray) -> np.ndarray:
    from skimage.color import rgb2gray
    from skimage.metrics import structural_similarity

    return np.array(
        [
            structural_similarity(
                rgb2gray(a), rgb2gray(b), win_size=SSIM_WINDOW, use_sample_covariance=False, data_range=1.0
            )
            for a, b in zip(a_NHW3 / 255.0, b_NHW3 / 255.0, strict=True)
        ]
    )


def per_scale_quality(
    scale_images_NKHW3: np.ndarray,
    truths_NHW3: np.ndarray,
    resolutions: list[int],
    extractor=None,
    truth_features: torch.Tensor | None = None,
) -> dict[str, np.ndarray]:
    """Per-image scores at every scale: `scale{k}.pixcorr`, `scale{k}.ssim` and, with an extractor,
    `scale{k}.<extractor>.two_way` (k from 1)."""
    out: dict[str, np.ndarray] = {}
    if extractor is not None and truth_features is None:
        truth_features = extractor(_unit(truths_NHW3))
    for k, side in enumerate(resolutions):
        images = np.ascontiguousarray(scale_images_NKHW3[:, k])
        small, truth = resize_uint8(images, side), resize_uint8(truths_NHW3, side)
        out[f"scale{k + 1}.pixcorr"] = _pixcorr(small, truth)
        if side >= SSIM_WINDOW:
            out[f"scale{k + 1}.ssim"] = _ssim(small, truth)
        if extractor is not None:
            features = extractor(_unit(images))
            out[f"scale{k + 1}.{extractor.info.name}.two_way"] = two_way_identification(features, truth_features)
    return out


def _unit(images_NHW3: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images_NHW3)).permute(0, 3, 1, 2).float() / 255.0


def summarize_per_scale(per_image: dict[str, np.ndarray], resolutions: list[int]) -> dict[str, Any]:
    """Means per scale for the record (`metrics.json`): {metric: [mean at scale 1, …, K]}."""
    metrics: dict[str, list] = {}
    for name, values in per_image.items():
        scale, metric = name.split(".", 1)
        metrics.setdefault(metric, [None] * len(resolutions))[int(scale.removeprefix("scale")) - 1] = float(
            np.mean(values)
        )
    return {"resolution_px": resolutions, "means": metrics}
