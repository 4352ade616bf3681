"""Brain items of a split, per subject, and pooled batches across subjects.

Training items are single trials of every subject, pooled into one index range (subject 1's items
first, then subject 2's, …): a global batch draws pooled indices, and each subject's rows pass through
its own encoder input layer. `val` and `test` items are per-image averages of the repetitions.

Shape letters (docs/glossary.md): N items, V voxels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mindhier.data.nsd import NSDDataset


@dataclass(frozen=True)
class SubjectItems:
    subject: int
    voxels_NV: torch.Tensor  # float32
    images_N: np.ndarray  # int64 stimulus indices

    def __len__(self) -> int:
        return int(self.images_N.shape[0])

    def take(self, rows_N: np.ndarray) -> SubjectItems:
        return SubjectItems(self.subject, self.voxels_NV[torch.from_numpy(rows_N)], self.images_N[rows_N])


def subject_items(dataset: NSDDataset, subject: int, split: str) -> SubjectItems:
    part = dataset.split(subject, split)
    return SubjectItems(subject, torch.from_numpy(part.voxels()), np.asarray(part.image_index_N, dtype=np.int64))


@dataclass(frozen=True)
class PooledBatch:
    """One batch of pooled items, grouped by subject (groups in subject order, each in batch order)."""

    groups: list[tuple[int, torch.Tensor]]  # (subject, voxels [n_s, V_s])
    images_N: np.ndarray  # stimulus index of every row, in group order
    order_N: np.ndarray  # position in the requested indices of every row, in group order

    def __len__(self) -> int:
        return int(self.images_N.shape[0])


def pooled_batch(items: list[SubjectItems], pooled_N: np.ndarray) -> PooledBatch:
    """The rows of the pooled indices `pooled_N`, grouped by subject.

    `order_N` says where each row came from, so per-sample draws made in the order of `pooled_N` (CFG
    dropout, noise) can follow their sample: `draws[order_N]`.
    """
    pooled_N = np.asarray(pooled_N, dtype=np.int64)
    offsets = np.cumsum([0] + [len(x) for x in items])
    groups, images, order = [], [], []
    for k, subject_items_ in enumerate(items):
        positions = np.flatnonzero((pooled_N >= offsets[k]) & (pooled_N < offsets[k + 1]))
        if len(positions):
            local = pooled_N[positions] - offsets[k]
            groups.append((subject_items_.subject, subject_items_.voxels_NV[torch.from_numpy(local)]))
            images.append(subject_items_.images_N[local])
            order.append(positions)
    return PooledBatch(groups, np.concatenate(images), np.concatenate(order))
