"""Brain↔image retrieval, MindEye's protocol: top-1 among random pools of 300 test items, 30 draws.

In each draw a random subset of `pool` items (all N when N < pool) is taken; with cosine
similarities s[i, j] between brain embedding i and image embedding j, forward (brain → image) top-1
is the fraction of rows whose maximum is on the diagonal, backward (image → brain) the same over
columns. Reported: mean and sd over draws, and chance = 1 / pool.

Shape letters (docs/glossary.md): N items, F features.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

MINDEYE_POOL = 300
MINDEYE_DRAWS = 30


def _draws(brain_NF: torch.Tensor, image_NF: torch.Tensor, pool: int, draws: int, generator: torch.Generator | None):
    """Per draw: the items drawn and, for each, whether brain → image and image → brain top-1 hit (bool)."""
    n = brain_NF.shape[0]
    if n < 2:
        raise ValueError("retrieval needs at least 2 items")
    size = min(pool, n)
    generator = generator or torch.Generator().manual_seed(0)
    brain = F.normalize(brain_NF.double().flatten(1), dim=-1)
    image = F.normalize(image_NF.double().flatten(1), dim=-1)
    target = torch.arange(size)
    for _ in range(draws):
        chosen = torch.randperm(n, generator=generator)[:size]
        sims = brain[chosen] @ image[chosen].T
        yield chosen, sims.argmax(dim=1) == target, sims.argmax(dim=0) == target


def retrieval_top1(
    brain_NF: torch.Tensor,
    image_NF: torch.Tensor,
    pool: int = MINDEYE_POOL,
    draws: int = MINDEYE_DRAWS,
    generator: torch.Generator | None = None,
) -> dict[str, Any]:
    forward, backward = [], []
    for _, brain_hits, image_hits in _draws(brain_NF, image_NF, pool, draws, generator):
        forward.append(brain_hits.double().mean())
        backward.append(image_hits.double().mean())
    fwd, bwd = torch.stack(forward), torch.stack(backward)
    size = min(pool, brain_NF.shape[0])
    return {
        "brain_to_image_top1": float(fwd.mean()),
        "brain_to_image_top1_sd": float(fwd.std(unbiased=False)),
        "image_to_brain_top1": float(bwd.mean()),
        "image_to_brain_top1_sd": float(bwd.std(unbiased=False)),
        "pool": size,
        "draws": draws,
        "chance": 1.0 / size,
    }


def retrieval_hits(
    brain_NF: torch.Tensor,
    image_NF: torch.Tensor,
    pool: int = MINDEYE_POOL,
    draws: int = MINDEYE_DRAWS,
    generator: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """Per-item top-1 hit rates under the same protocol as `retrieval_top1` (same draws for the same generator):
    `brain_to_image_N` / `image_to_brain_N` are each item's share of hits over the draws that included it (0 or 1
    when N ≤ pool: every draw is the whole set). Their means are `retrieval_top1`'s figures when every item is in
    every draw; per-item values let a study bootstrap over items and pair two models on the same items."""
    n = brain_NF.shape[0]
    forward, backward = torch.zeros(n, dtype=torch.float64), torch.zeros(n, dtype=torch.float64)
    counts = torch.zeros(n, dtype=torch.float64)
    for chosen, brain_hits, image_hits in _draws(brain_NF, image_NF, pool, draws, generator):
        forward[chosen] += brain_hits.double()
        backward[chosen] += image_hits.double()
        counts[chosen] += 1
    seen = counts.clamp(min=1)
    return {"brain_to_image_N": forward / seen, "image_to_brain_N": backward / seen, "draws_N": counts}
