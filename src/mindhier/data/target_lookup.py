"""Teacher targets by stimulus index: the feature cache held in RAM when small, read lazily when not.

Shape letters (docs/glossary.md): N items, Q tokens, D teacher dim, U text tokens.
"""

from __future__ import annotations

import numpy as np
import torch

from mindhier.data.feature_cache import FeatureCache
from mindhier.errors import DataError

IN_MEMORY_LIMIT_BYTES = 2 * 2**30  # caches up to this size are held in RAM (float16)


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

    def step_targets(self, images_N: np.ndarray) -> list[torch.Tensor]:
        """`get` (the cache's values are read on the CPU; the step moves them to its device)."""
        return self.get(images_N)

    def get_text(self, images_N: np.ndarray) -> torch.Tensor | None:
        return self.cache.get_text(images_N) if self.cache.has_text else None

    @property
    def has_text(self) -> bool:
        return self.cache.has_text

    @property
    def text_shape(self) -> tuple[int, int] | None:
        return self.cache.text_shape

    def record(self) -> dict:
        """The run's `features.json`: which cache gave the targets."""
        return {"path": str(self.cache.path), "key": self.cache.key, "teacher": self.cache.teacher}
