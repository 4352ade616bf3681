"""Brain correlation, the last block of MindEye2's evaluation table: does the reconstruction evoke the
measured brain response?

Each reconstruction is passed through an encoding model, which predicts the voxel responses it would evoke;
per test image and per ROI, the Pearson correlation across the ROI's voxels between that prediction and the
measured response (the test trials averaged) is the score; its mean over images is reported per ROI (V1,
V2, V3, hV4, LO, higher) and over all voxels. Which ROIs a reconstruction gets right says at which level of
the visual hierarchy it is right — the paper's thesis.

In the embedded world the simulator *is* the true encoding model (`data/simulator/encoding_model.py`), so the
metric is exact. Its semantic voxels also respond to the object categories an image shows; for a
reconstruction those are what the scene judge sees in it (its category probabilities), for every row alike,
true images included; without a judge the category part is left out everywhere. The score of the true test
images is reported beside (the ceiling: the measured response is noisy). For real NSD, pass an encoding model
(any callable images → [N, V] with ROI labels); without one the metric is reported `absent`.

Shape letters (docs/glossary.md): N images, V voxels, J categories, H/W pixels.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from mindhier.config import ROI_NAMES

Predictor = Callable[[np.ndarray, np.ndarray | None], np.ndarray]  # (images_NHW3, categories_NJ) → [N, V]


def rowwise_pearson(a_NV: np.ndarray, b_NV: np.ndarray) -> np.ndarray:
    a = a_NV - a_NV.mean(1, keepdims=True)
    b = b_NV - b_NV.mean(1, keepdims=True)
    return (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)


def brain_correlation(
    predicted_NV: np.ndarray, measured_NV: np.ndarray, roi_labels: list[str]
) -> dict[str, np.ndarray]:
    """Per-image correlations `brain_corr.<roi>` for every ROI present, and `brain_corr.all` over all voxels."""
    labels = np.asarray(roi_labels)
    out = {"brain_corr.all": rowwise_pearson(predicted_NV, measured_NV)}
    for roi in ROI_NAMES:
        mask = labels == roi
        if mask.sum() >= 2:
            out[f"brain_corr.{roi}"] = rowwise_pearson(predicted_NV[:, mask], measured_NV[:, mask])
    return out


def describe(source: str, categories: str) -> dict[str, Any]:
    return {
        "encoding_model": source,
        "score": "per image, Pearson r across the ROI's voxels between the predicted response to the image and "
        "the measured response (test trials averaged); mean over images",
        "categories": categories,
    }
