"""Deterministic, resumable batches, split across processes in contiguous slices.

Step k of a run always draws the same global batch: epoch e = k // (N // B) permutes all N items with a
generator seeded by (seed, e), and the batch is the k-th slice of B items (the last partial slice of an
epoch is dropped). Process r of W takes the r-th contiguous slice of B / W items, so the processes'
rows, concatenated in rank order, are exactly the single-process batch (what SoftCLIP's gathered
negatives and the per-sample random draws rely on). A process's share is then cut into micro-batches
of `micro` rows for gradient accumulation.
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


def rank_rows(batch_size: int, rank: int = 0, world_size: int = 1) -> slice:
    """The rows of the global batch that process `rank` trains on."""
    if batch_size % world_size:
        raise ValueError(f"global batch {batch_size} is not divisible by {world_size} ranks")
    share = batch_size // world_size
    return slice(rank * share, (rank + 1) * share)


def rank_batch(n_items: int, batch_size: int, step: int, seed: int, rank: int = 0, world_size: int = 1) -> np.ndarray:
    """This process's share of the global batch of `step`."""
    return global_batch(n_items, batch_size, step, seed)[rank_rows(batch_size, rank, world_size)]


def micro_slices(rows: int, micro: int) -> list[slice]:
    """Consecutive micro-batches of at most `micro` rows (0 = one batch of all rows)."""
    if micro <= 0 or micro >= rows:
        return [slice(0, rows)]
    return [slice(start, min(start + micro, rows)) for start in range(0, rows, micro)]
