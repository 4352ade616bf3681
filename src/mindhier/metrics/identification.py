"""Exhaustive two-way identification (MindEye2's protocol, docs/method.md §7).

With Pearson correlations r[i, j] = corr(target_i, pred_j), prediction j scores the fraction of the
other N − 1 targets i ≠ j it correlates with less than with its own target: mean over j of
#{i ≠ j : r[i, j] < r[j, j]} / (N − 1). Chance is 50 %. (Not a random-pair 2AFC.)

Shape letters (docs/glossary.md): N items, F features.
"""

from __future__ import annotations

import numpy as np
import torch


def _zscore_rows(x_NF: torch.Tensor) -> torch.Tensor:
    x = x_NF.double().flatten(1)
    x = x - x.mean(dim=1, keepdim=True)
    return x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)


def correlation_matrix(target_NF: torch.Tensor, pred_NF: torch.Tensor) -> torch.Tensor:
    """r[i, j] = Pearson correlation of target i and prediction j (float64)."""
    return _zscore_rows(target_NF) @ _zscore_rows(pred_NF).T


def two_way_identification(pred_NF: torch.Tensor, target_NF: torch.Tensor) -> np.ndarray:
    """Per-prediction scores in [0, 1] (their mean is the reported percentage / 100)."""
    n = pred_NF.shape[0]
    if n < 2:
        raise ValueError("two-way identification needs at least 2 items")
    r = correlation_matrix(target_NF, pred_NF)
    own = r.diagonal()
    wins = (r < own[None, :]).sum(dim=0)  # the diagonal never counts: r[j, j] < r[j, j] is false
    return (wins.double() / (n - 1)).numpy()


def cosine_per_item(pred_NF: torch.Tensor, target_NF: torch.Tensor) -> np.ndarray:
    """Cosine similarity of each flattened prediction with its target."""
    p, t = pred_NF.double().flatten(1), target_NF.double().flatten(1)
    return torch.nn.functional.cosine_similarity(p, t, dim=1).numpy()
