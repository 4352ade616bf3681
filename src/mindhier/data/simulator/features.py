"""What the synthetic brain sees: subject-independent stimulus features, computed once per image.

Three families, one per stage of the simulated visual hierarchy:

* early (V1–V3): local contrast energy from a quadrature Gabor filter bank (orientations × spatial
  frequencies, phase-invariant) plus rectified luminance and colour-opponent (red–green, blue–yellow)
  maps — the inputs of a compressive-spatial-summation pRF model (Kay et al. 2013);
* mid (hV4/LO): texture and shape statistics — energy per scale, junction energy (products of
  orthogonal orientations), orientedness, cross-scale products, colour saturation and local luminance
  variance — in the spirit of Portilla–Simoncelli statistics, pooled later over large fields;
* deep (higher): global-average-pooled features of a pretrained network (EfficientNet-Lite2 by
  default, deliberately not the Stage-1 teacher Lite0), plus object categories when the stimulus
  source knows them.

Shape letters (docs/glossary.md): N images, C channels, H/W retina pixels, G feature-grid side, D deep feature
size, J object categories; the Gabor bank's spatial frequencies and orientations are spelled out (freq, orient).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from mindhier.progress import ProgressFn, report

N_ORIENTATIONS = 4
GABOR_PERIODS_PX = (16.0, 8.0, 4.0)  # wavelengths on the retina grid: 4, 8, 16 cycles per image at 64 px
GABOR_BANDWIDTH = 0.4  # Gaussian radius in the frequency domain, as a fraction of the centre frequency

SemanticFn = Callable[[torch.Tensor], torch.Tensor]  # [N, 3, H, W] in [0, 1] -> [N, D]


@dataclass(frozen=True)
class StimulusFeatures:
    """Features of N images on a G×G grid of the visual field (x, y in [-1, 1])."""

    early_NCGG: torch.Tensor  # float32, non-negative
    mid_NCGG: torch.Tensor  # float32, non-negative
    deep_ND: torch.Tensor  # float32
    categories_NJ: torch.Tensor | None  # float32 multi-hot, or None when the source has no categories
    early_channels: tuple[str, ...]
    mid_channels: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.early_NCGG.shape[0])


def early_channel_names() -> tuple[str, ...]:
    gabor = tuple(
        f"energy_p{period:g}_o{int(180 * o / N_ORIENTATIONS)}"
        for period in GABOR_PERIODS_PX
        for o in range(N_ORIENTATIONS)
    )
    return (*gabor, "lum_on", "lum_off", "rg_on", "rg_off", "by_on", "by_off")


def mid_channel_names() -> tuple[str, ...]:
    periods = [f"p{p:g}" for p in GABOR_PERIODS_PX]
    return (
        *(f"energy_{p}" for p in periods),
        *(f"junction_{p}" for p in periods),
        *(f"orientedness_{p}" for p in periods),
        *(f"cross_scale_{a}_{b}" for a, b in itertools.pairwise(periods)),
        "saturation",
        "luminance_variance",
    )


def _gabor_bank(height: int, width: int) -> torch.Tensor:
    """One-sided Gaussian filters in the frequency domain: [freq·orient, height, width] (a quadrature pair each).

    A filter centred on +f only (no mirror at −f) makes the inverse FFT complex; its magnitude is the
    phase-invariant energy of the even/odd Gabor pair.
    """
    fy = torch.fft.fftfreq(height).view(-1, 1)  # cycles per pixel
    fx = torch.fft.fftfreq(width).view(1, -1)
    filters = []
    for period in GABOR_PERIODS_PX:
        f0 = 1.0 / period
        radius = GABOR_BANDWIDTH * f0
        for o in range(N_ORIENTATIONS):
            theta = math.pi * o / N_ORIENTATIONS
            cx, cy = f0 * math.cos(theta), f0 * math.sin(theta)
            filters.append(torch.exp(-((fx - cx) ** 2 + (fy - cy) ** 2) / (2 * radius**2)))
    return torch.stack(filters)


def gabor_energy(luminance_NHW: torch.Tensor) -> torch.Tensor:
    """Contrast energy [N, freq·orient, H, W] of luminance images (reflect-padded to avoid wrap-around)."""
    h, w = luminance_NHW.shape[-2:]
    pad_h, pad_w = h // 4, w // 4  # ≥ 2.5 sd of the widest Gabor envelope at the lowest frequency
    padded = F.pad(luminance_NHW[:, None], (pad_w, pad_w, pad_h, pad_h), mode="reflect")[:, 0]
    bank = _gabor_bank(padded.shape[-2], padded.shape[-1])
    spectrum = torch.fft.fft2(padded)
    response = torch.fft.ifft2(spectrum[:, None] * bank[None])  # (N, freq·orient, H', W') complex
    return response.abs()[:, :, pad_h : pad_h + h, pad_w : pad_w + w].float()


def early_and_mid_maps(rgb_NCHW: torch.Tensor, grid: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Early [N, 18, G, G] and mid [N, 13, G, G] feature maps of RGB retina images in [0, 1]."""
    r, g, b = rgb_NCHW[:, 0], rgb_NCHW[:, 1], rgb_NCHW[:, 2]
    luminance = 0.299 * r + 0.587 * g + 0.114 * b
    gabor = gabor_energy(luminance)  # [N, freq·orient, H, W]
    red_green = r - g
    blue_yellow = b - 0.5 * (r + g)
    colour = torch.stack(
        [
            (luminance - 0.5).clamp(min=0),
            (0.5 - luminance).clamp(min=0),
            red_green.clamp(min=0),
            (-red_green).clamp(min=0),
            blue_yellow.clamp(min=0),
            (-blue_yellow).clamp(min=0),
        ],
        dim=1,
    )
    early = torch.cat([gabor, colour], dim=1)

    n_f, n_o = len(GABOR_PERIODS_PX), N_ORIENTATIONS
    energy = gabor.view(gabor.shape[0], n_f, n_o, *gabor.shape[-2:])  # [N, freq, orient, H, W]
    half = n_o // 2
    per_scale = energy.sum(dim=2)
    junction = (energy[:, :, :half] * energy[:, :, half:]).clamp(min=0).sqrt().sum(dim=2)
    orientedness = (energy[:, :, :half] - energy[:, :, half:]).abs().sum(dim=2)
    cross_scale = (per_scale[:, :-1] * per_scale[:, 1:]).sqrt()
    saturation = rgb_NCHW.amax(dim=1) - rgb_NCHW.amin(dim=1)
    local_mean = F.avg_pool2d(luminance[:, None], 5, stride=1, padding=2, count_include_pad=False)
    local_sq = F.avg_pool2d(luminance[:, None] ** 2, 5, stride=1, padding=2, count_include_pad=False)
    variance = (local_sq - local_mean**2).clamp(min=0)
    mid = torch.cat([per_scale, junction, orientedness, cross_scale, saturation[:, None], variance], dim=1)

    factor = rgb_NCHW.shape[-1] // grid
    return F.avg_pool2d(early, factor), F.avg_pool2d(mid, factor)


def images_to_tensor(images_NHWC: np.ndarray, size: int | None = None) -> torch.Tensor:
    """uint8 [N, H, W, 3] → float [N, 3, size, size] in [0, 1] (bilinear, antialiased)."""
    x = torch.from_numpy(np.ascontiguousarray(images_NHWC)).permute(0, 3, 1, 2).float() / 255.0
    if size is not None and x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return x.clamp(0.0, 1.0)


def lite2_semantic_fn(size: int) -> SemanticFn:
    """EfficientNet-Lite2 (real ImageNet weights) pooled features at `size` px."""
    from mindhier.backbones import efficientnet_lite

    model = efficientnet_lite.cached("efficientnet-lite2")
    return lambda images_NCHW: efficientnet_lite.pooled_features(model, images_NCHW, size)


def compute_features(
    images_NHWC: np.ndarray,
    categories_NJ: np.ndarray | None,
    retina_px: int,
    grid: int,
    semantic_fn: SemanticFn,
    batch_size: int = 128,
    progress: ProgressFn | None = None,
    timings: dict[str, float] | None = None,
) -> StimulusFeatures:
    """All three feature families for a stimulus set, in batches (progress per batch).

    `timings`, when given, accumulates seconds spent in the filter bank and in the semantic network.
    """
    import time

    n = images_NHWC.shape[0]
    early, mid, deep = [], [], []
    spent = {"filter_bank": 0.0, "semantic_network": 0.0}
    for start in range(0, n, batch_size):
        chunk = images_NHWC[start : start + batch_size]
        t0 = time.perf_counter()
        with torch.inference_mode():
            e, m = early_and_mid_maps(images_to_tensor(chunk, retina_px), grid)
        t1 = time.perf_counter()
        deep.append(semantic_fn(images_to_tensor(chunk)).float())
        t2 = time.perf_counter()
        early.append(e)
        mid.append(m)
        spent["filter_bank"] += t1 - t0
        spent["semantic_network"] += t2 - t1
        report(progress, "stimulus features", min(start + batch_size, n), n)
    if timings is not None:
        for key, value in spent.items():
            timings[key] = timings.get(key, 0.0) + value
    return StimulusFeatures(
        early_NCGG=torch.cat(early),
        mid_NCGG=torch.cat(mid),
        deep_ND=torch.cat(deep),
        categories_NJ=None if categories_NJ is None else torch.as_tensor(categories_NJ, dtype=torch.float32),
        early_channels=early_channel_names(),
        mid_channels=mid_channel_names(),
    )
