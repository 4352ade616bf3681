"""Deterministic, resumable, rank-sharded batches.

Step k of a run always draws the same global batch: epoch e = k // (N // B) permutes all N items with
a generator seeded by (seed, e), and the batch is the k-th slice of B items (the last partial slice
of an epoch is dropped). Rank r of W takes every W-th item of the global batch. So a resumed run
continues exactly where it stopped, and W ranks together see exactly the single-process batch.
"""

from __future__ import annotations

import numpy as np


def global_batch(n_items: int, batch_size: int, step: int, seed: int) -> np.ndarray:
    if batch_size > n_items:
        raise ValueError(f"batch size {batch_size} exceeds the {n_items} training items; lower the batch size")
    per_epoch = n_items // batch_size
    epoch, position = divmod(step, per_epoch)
    order = np.random.default_rng([seed, epoch]).permutation(n_items)
    return order[position * batch_size : (position + 1) * batch_size]


def rank_batch(n_items: int, batch_size: int, step: int, seed: int, rank: int = 0, world_size: int = 1) -> np.ndarray:
    """This rank's share of the global batch of `step`."""
    if batch_size % world_size:
        raise ValueError(f"global batch {batch_size} is not divisible by {world_size} ranks")
    return global_batch(n_items, batch_size, step, seed)[rank::world_size]
