"""Token-wise linear probes: how much of a teacher level is linearly readable from an encoder level.

Used to measure alignment of levels that were not supervised (the `single` and `terminal_only`
ablations): a ridge regression W from D-dim tokens to D_m-dim teacher tokens, shared across the Q
token positions, fitted on `train`, with the ridge strength chosen on `val` (by mean cosine of the
flattened predictions) and the result reported on `test`.

Shape letters (docs/glossary.md): N items, Q tokens, D encoder width, D_m teacher width (Dm in names).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mindhier.metrics.identification import cosine_per_item

RIDGE_GRID = (1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0)


@dataclass(frozen=True)
class RidgeProbe:
    weight_DDm: torch.Tensor
    bias_Dm: torch.Tensor
    ridge: float

    def __call__(self, x_NQD: torch.Tensor) -> torch.Tensor:
        return x_NQD.double() @ self.weight_DDm + self.bias_Dm


def fit_ridge(x_NQD: torch.Tensor, y_NQDm: torch.Tensor, ridge: float) -> RidgeProbe:
    x = x_NQD.double().reshape(-1, x_NQD.shape[-1])
    y = y_NQDm.double().reshape(-1, y_NQDm.shape[-1])
    x_mean, y_mean = x.mean(0), y.mean(0)
    xc, yc = x - x_mean, y - y_mean
    gram = xc.T @ xc + ridge * x.shape[0] * torch.eye(x.shape[1], dtype=x.dtype)
    weight = torch.linalg.solve(gram, xc.T @ yc)
    return RidgeProbe(weight, y_mean - x_mean @ weight, ridge)


def fit_probe(
    x_train: torch.Tensor, y_train: torch.Tensor, x_val: torch.Tensor, y_val: torch.Tensor, grid=RIDGE_GRID
) -> RidgeProbe:
    """The ridge probe whose strength (relative to the number of rows) scores best on val."""
    best, best_score = None, -float("inf")
    for ridge in grid:
        probe = fit_ridge(x_train, y_train, ridge)
        score = float(cosine_per_item(probe(x_val), y_val).mean())
        if score > best_score:
            best, best_score = probe, score
    assert best is not None
    return best
