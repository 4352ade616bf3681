"""Which voxels of a volume become the betas' columns, and their ROI labels.

The columns are the nonzero voxels of a mask NIfTI in C order (MindEye2's nsdgeneral voxels are read this way);
the ROI names come from a BIDS segmentation (`dseg.nii.gz` + `dseg.tsv`, index → name) on the same grid.

Shape letters (docs/glossary.md): V voxels; A, B, C the volume's axes.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mindhier.config import ROI_NAMES
from mindhier.data.bold import bids
from mindhier.errors import DataError


@dataclass(frozen=True)
class VoxelSelection:
    shape: tuple[int, int, int]
    flat_V: np.ndarray  # int64 C-order indices of the columns
    roi_labels: tuple[str, ...] | None  # one name per column

    @property
    def n_voxels(self) -> int:
        return int(self.flat_V.shape[0])

    def take(self, volume_ABC: np.ndarray) -> np.ndarray:
        """The columns' values of one volume: float32 [V]."""
        if tuple(volume_ABC.shape) != self.shape:
            raise DataError(
                f"a volume of shape {tuple(volume_ABC.shape)} does not match the voxel mask's {self.shape}; "
                "use the mask made for this scan's grid"
            )
        return np.asarray(volume_ABC, dtype=np.float32).reshape(-1)[self.flat_V]

    def roi_columns(self, *names: str) -> np.ndarray:
        if self.roi_labels is None:
            raise DataError("the voxel selection has no ROI labels; pass a segmentation (--rois)")
        return np.flatnonzero(np.isin(np.asarray(self.roi_labels), names))


def load_selection(mask_path: Path, rois_path: Path | None = None) -> VoxelSelection:
    _, mask = bids.load_volume(mask_path, "voxel mask")
    if mask.ndim != 3:
        raise DataError(f"voxel mask {mask_path} is {mask.ndim}-D; it must be one 3-D volume")
    flat = np.flatnonzero(mask.reshape(-1) != 0).astype(np.int64)
    if len(flat) == 0:
        raise DataError(f"voxel mask {mask_path} selects no voxel; pass the mask of the visual voxels")
    labels = None
    if rois_path is not None and rois_path.exists():
        _, segmentation = bids.load_volume(rois_path, "ROI segmentation")
        if segmentation.shape != mask.shape:
            raise DataError(
                f"ROI segmentation {rois_path} has shape {segmentation.shape}, the mask {mask.shape}; "
                "give both on the same grid"
            )
        names = _label_names(rois_path.with_name(rois_path.name.replace(".nii.gz", ".tsv").replace(".nii", ".tsv")))
        codes = np.rint(segmentation.reshape(-1)[flat]).astype(int)
        unknown = sorted(set(codes.tolist()) - set(names))
        if unknown:
            raise DataError(
                f"ROI segmentation {rois_path} labels masked voxels {unknown[:3]} that its table does "
                "not name; every masked voxel needs a named ROI"
            )
        labels = tuple(names[c] for c in codes)
    return VoxelSelection(tuple(int(s) for s in mask.shape), flat, labels)


def _label_names(table: Path) -> dict[int, str]:
    if not table.is_file():
        raise DataError(f"ROI table {table} is missing; a dseg.nii.gz needs its dseg.tsv (index, name)")
    with open(table, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    try:
        names = {int(r["index"]): r["name"] for r in rows}
    except (KeyError, ValueError):
        raise DataError(f"ROI table {table} needs columns index and name; write it as BIDS dseg.tsv") from None
    strange = sorted(set(names.values()) - set(ROI_NAMES))
    if strange:
        raise DataError(f"ROI table {table} names {strange[0]!r}, not one of {', '.join(ROI_NAMES)}; rename it")
    return names
