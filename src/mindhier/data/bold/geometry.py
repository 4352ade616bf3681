"""Where the synthetic brain's voxels sit in a scanner volume: a head-shaped ellipsoid with a brain mask, a
textured "anatomy" for the registration to lock onto, and the visual ROIs as contiguous regions.

The betas' voxel order is the C order of the visual mask in the volume (as MindEye2's nsdgeneral voxels are), so any
lab's mask reads the same way. The volume's first array axis runs posterior → anterior (the affine says so), and the
simulator's voxels are grouped by ROI in hierarchy order (V1 first), so consecutive slabs from the back of the head (one
voxel inside the brain's edge, under a layer of CSF) become V1, V2, V3, hV4, LO and the higher areas — contiguous
regions in roughly their real order.

Shape letters (docs/glossary.md): V visual voxels; A, B, C the volume's three array axes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from mindhier.config import ROI_NAMES
from mindhier.errors import DataError

RADII = (1.0, 0.8, 0.7)  # ellipsoid radii relative to the posterior-anterior one
POSTERIOR_SHARE = 1.6  # the posterior half of the brain holds this many times the visual voxels
MARGIN = 3  # voxels of background around the head
CSF_VOXELS = 1  # the visual voxels lie this many voxels inside the brain's edge
BRAIN_INTENSITY = 800.0  # mean baseline signal of brain voxels (arbitrary scanner units)
TEXTURE_SD = 80.0  # contrast of the anatomy (grey/white-matter-like texture)
TEXTURE_SMOOTHING = 1.5  # voxels
SCALP_INTENSITY = 300.0
BACKGROUND = 15.0  # mean of the background's noise floor


@dataclass(frozen=True)
class BrainGeometry:
    voxel_mm: float
    mask_ABC: np.ndarray  # bool: the brain
    visual_flat_V: np.ndarray  # int64 flat (C-order) index of each visual voxel, ascending: column v of the betas
    roi_ABC: np.ndarray  # int16: 0 outside the visual ROIs, 1 + index into ROI_NAMES inside
    baseline_ABC: np.ndarray  # float32 noise-free mean image (head and background)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.mask_ABC.shape)

    @property
    def affine(self) -> np.ndarray:
        """Array axes (A, B, C) → RAS millimetres: A runs posterior → anterior (+y), B left → right (+x), C up (+z)."""
        s = self.voxel_mm
        affine = np.zeros((4, 4))
        affine[1, 0], affine[0, 1], affine[2, 2], affine[3, 3] = s, s, s, 1.0
        centre = (np.asarray(self.shape) - 1) / 2 * s
        affine[:3, 3] = -centre[[1, 0, 2]]
        return affine

    def visual_mask_ABC(self) -> np.ndarray:
        mask = np.zeros(self.shape, dtype=bool)
        mask.reshape(-1)[self.visual_flat_V] = True
        return mask


def make_geometry(roi_V: np.ndarray, voxel_mm: float, rng: np.random.Generator) -> BrainGeometry:
    """Place V voxels with ROI codes `roi_V` (grouped in ROI order, as the simulator draws them) in a head."""
    roi_V = np.asarray(roi_V)
    if np.any(np.diff(roi_V) < 0):
        raise DataError(
            "the voxels' ROI codes must be grouped in ROI order (V1 first) to be placed as regions; "
            "sort the voxels by ROI"
        )
    n_visual = len(roi_V)
    # half an ellipsoid of radii r·RADII holds (2/3)π r³ ΠRADII voxels
    r = math.ceil((POSTERIOR_SHARE * n_visual / (2 / 3 * math.pi * np.prod(RADII))) ** (1 / 3)) + 1
    radii = np.asarray(RADII) * r
    shape = tuple(int(2 * math.ceil(x) + 2 * MARGIN + 1) for x in radii)
    centre = (np.asarray(shape) - 1) / 2
    grid = np.indices(shape, dtype=np.float64)
    distance = np.sqrt(sum(((grid[i] - centre[i]) / radii[i]) ** 2 for i in range(3)))
    mask = distance <= 1.0
    scalp = (distance > 1.0) & (distance <= 1.0 + 1.5 / r)
    # cortex lies under a layer of CSF: the visual voxels start one voxel inside the brain's edge
    flat_cortex = np.flatnonzero(ndimage.binary_erosion(mask, iterations=CSF_VOXELS))  # C order: posterior first
    if len(flat_cortex) < n_visual:
        raise DataError(
            f"the head holds {len(flat_cortex)} cortical voxels, fewer than the {n_visual} to place; "
            "raise geometry.POSTERIOR_SHARE"
        )
    visual = flat_cortex[:n_visual]
    roi = np.zeros(shape, dtype=np.int16)
    roi.reshape(-1)[visual] = roi_V.astype(np.int16) + 1
    texture = ndimage.gaussian_filter(rng.standard_normal(shape), TEXTURE_SMOOTHING)
    texture *= TEXTURE_SD / max(float(texture[mask].std()), 1e-6)
    baseline = np.full(shape, BACKGROUND, dtype=np.float64)
    baseline[scalp] = SCALP_INTENSITY
    baseline[mask] = BRAIN_INTENSITY + texture[mask]
    baseline = np.maximum(baseline, BACKGROUND)
    return BrainGeometry(voxel_mm, mask, visual.astype(np.int64), roi, baseline.astype(np.float32))


def roi_table() -> list[tuple[int, str]]:
    """The label table of the ROI segmentation (BIDS `dseg.tsv`): value → name."""
    return [(i + 1, name) for i, name in enumerate(ROI_NAMES)]
