"""Stage-1 data: brain responses per subject, paired with the teacher's cached features of the images.

Training items are single trials of the `train` split of every subject, pooled (a batch mixes
subjects; each subject's rows pass through its own input layer). `val` items are per-image averages.
Teacher targets are looked up by stimulus index in the feature cache, from RAM when the cache is small
and lazily from the memory-mapped shards when it is not.

Shape letters: N items, V voxels, Q tokens, D teacher dim, S text tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mindhier.data.feature_cache import FeatureCache
from mindhier.data.nsd import NSDDataset
from mindhier.errors import DataError

IN_MEMORY_LIMIT_BYTES = 2 * 2**30  # caches up to this size are held in RAM (float16)


@dataclass(frozen=True)
class SubjectItems:
    subject: int
    voxels_NV: torch.Tensor  # float32
    images_N: np.ndarray  # int64 stimulus indices

    def __len__(self) -> int:
        return int(self.images_N.shape[0])


class TargetLookup:
    """Teacher features (and text features, when cached) by stimulus index."""

    def __init__(self, cache: FeatureCache):
        self.cache = cache
        self.levels = cache.levels
        n_bytes = sum(cache.n_images * lvl.tokens * lvl.dim * 2 for lvl in cache.levels)
        self._in_memory = n_bytes <= IN_MEMORY_LIMIT_BYTES
        if self._in_memory:
            self._tables = [t.to(torch.float16) for t in cache.load_all()]
            indices = np.asarray(cache.indices, dtype=np.int64)
            self._row_of = np.full(int(indices.max()) + 1, -1, dtype=np.int64)
            self._row_of[indices] = np.arange(len(indices))

    def get(self, images_N: np.ndarray) -> list[torch.Tensor]:
        """float32 [N, Q, D_m] per level, in the order of `images_N`."""
        if not self._in_memory:
            return self.cache.get(images_N)
        images_N = np.asarray(images_N, dtype=np.int64)
        rows = self._row_of[images_N] if images_N.max() < len(self._row_of) else np.array([-1])
        if (rows < 0).any():
            raise DataError("a stimulus has no cached teacher features; rebuild the cache (`mindhier features`)")
        rows_t = torch.from_numpy(rows)
        return [table[rows_t].float() for table in self._tables]

    def get_text(self, images_N: np.ndarray) -> torch.Tensor | None:
        return self.cache.get_text(images_N) if self.cache.has_text else None


def subject_items(dataset: NSDDataset, subject: int, split: str) -> SubjectItems:
    part = dataset.split(subject, split)
    return SubjectItems(subject, torch.from_numpy(part.voxels()), np.asarray(part.image_index_N, dtype=np.int64))


@dataclass
class EncoderData:
    train: list[SubjectItems]
    val: list[SubjectItems]
    targets: TargetLookup

    @property
    def n_train(self) -> int:
        return sum(len(items) for items in self.train)

    def train_batch(self, pooled_indices: np.ndarray):
        """(subject, voxels) groups in subject order, the matching stimulus indices, and the targets."""
        offsets = np.cumsum([0] + [len(items) for items in self.train])
        groups, images = [], []
        for k, items in enumerate(self.train):
            local = pooled_indices[(pooled_indices >= offsets[k]) & (pooled_indices < offsets[k + 1])] - offsets[k]
            if len(local):
                local_t = torch.from_numpy(np.sort(local))
                groups.append((items.subject, items.voxels_NV[local_t]))
                images.append(items.images_N[local_t.numpy()])
        images_N = np.concatenate(images)
        return groups, images_N, self.targets.get(images_N), self.targets.get_text(images_N)


def load_encoder_data(dataset: NSDDataset, subjects: tuple[int, ...], cache: FeatureCache) -> EncoderData:
    train = [subject_items(dataset, s, "train") for s in subjects]
    val = [subject_items(dataset, s, "val") for s in subjects]
    return EncoderData(train, val, TargetLookup(cache))
