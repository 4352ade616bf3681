"""Pixel-level image metrics exactly as MindEye2's evaluation computes them (docs/method.md §7).

Both images are resized to 425 × 425 (torchvision bilinear resize of [0, 1] tensors), then

* PixCorr — Pearson r between the flattened RGB images (3 · 425 · 425 values), per image;
* SSIM    — `skimage.metrics.structural_similarity` on `skimage.color.rgb2gray` of each, with Gaussian
            weights, σ = 1.5, `use_sample_covariance=False`, `data_range=1.0`, per image.

Shape letters (docs/glossary.md): N images, H/W pixels.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

EVAL_PX = 425


def to_float_NCHW(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 [N, H, W, 3] or float [N, 3, H, W] in [0, 1] → float32 [N, 3, H, W]."""
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(images)
    if images.dtype == torch.uint8:
        return images.permute(0, 3, 1, 2).float() / 255.0
    return images.float()


def resize_for_eval(images_NCHW: torch.Tensor, size: int = EVAL_PX) -> torch.Tensor:
    if images_NCHW.shape[-2:] == (size, size):
        return images_NCHW
    # antialiased, as torchvision 0.17 (MindEye2's pinned version) resizes tensors by default
    return F.interpolate(images_NCHW, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


def pixcorr(recons, truths) -> np.ndarray:
    """Per-image Pearson correlation of flattened RGB pixels at 425 px."""
    r = resize_for_eval(to_float_NCHW(recons)).flatten(1).double()
    t = resize_for_eval(to_float_NCHW(truths)).flatten(1).double()
    r, t = r - r.mean(1, keepdim=True), t - t.mean(1, keepdim=True)
    return ((r * t).sum(1) / (r.norm(dim=1) * t.norm(dim=1)).clamp_min(1e-12)).numpy()


def ssim(recons, truths) -> np.ndarray:
    """Per-image SSIM of the greyscale images at 425 px (scikit-image, MindEye2's settings)."""
    from skimage.color import rgb2gray
    from skimage.metrics import structural_similarity

    r = resize_for_eval(to_float_NCHW(recons)).permute(0, 2, 3, 1).numpy()
    t = resize_for_eval(to_float_NCHW(truths)).permute(0, 2, 3, 1).numpy()
    scores = [
        structural_similarity(
            rgb2gray(a), rgb2gray(b), gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0
        )
        for a, b in zip(r, t, strict=True)
    ]
    return np.asarray(scores, dtype=np.float64)
