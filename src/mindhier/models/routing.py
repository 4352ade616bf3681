"""Scale-to-level routing: which brain level each generated scale may cross-attend to (docs/method.md §5.4).

With K scales (k = 1..K, coarse to fine) and M levels (m = 1..M, shallow to deep, e_M terminal):

    coarse_to_fine   h_k = M − ⌊M(k − 1)/K⌋      deep levels steer coarse scales (the paper)
    fine_to_coarse   h_k = 1 + ⌊M(k − 1)/K⌋      the inverted ablation (paper Table 4)
    all_levels       every scale sees every level
    static_terminal  every scale sees only e_M   the single static guidance of diffusion decoders

The routing becomes a boolean cross-attention mask built from each token's scale index — the same
function in training (all L rows at once) and in sampling (the rows of one scale), so the authors'
sampling-time bug (slicing the first rows of a full-sequence mask, docs/method.md §9) cannot happen. The
context is the levels concatenated in order e_1 … e_M, Q tokens each.

Shape letters (docs/glossary.md): L tokens of all scales, X = M·Q context tokens.
"""

from __future__ import annotations

import torch

ROUTINGS = ("coarse_to_fine", "fine_to_coarse", "all_levels", "static_terminal")


def levels_for_scale(routing: str, k: int, n_scales: int, n_levels: int) -> tuple[int, ...]:
    """The 1-based levels that scale k (1-based) attends to."""
    if not 1 <= k <= n_scales:
        raise ValueError(f"scale {k} outside 1..{n_scales}")
    step = (n_levels * (k - 1)) // n_scales
    if routing == "coarse_to_fine":
        return (n_levels - step,)
    if routing == "fine_to_coarse":
        return (1 + step,)
    if routing == "all_levels":
        return tuple(range(1, n_levels + 1))
    if routing == "static_terminal":
        return (n_levels,)
    raise ValueError(f"unknown routing {routing!r}; valid: {', '.join(ROUTINGS)}")


def routing_table(routing: str, n_scales: int, n_levels: int) -> list[tuple[int, ...]]:
    return [levels_for_scale(routing, k, n_scales, n_levels) for k in range(1, n_scales + 1)]


def scale_cross_mask(routing: str, k: int, n_scales: int, n_levels: int, level_tokens: int) -> torch.Tensor:
    """Boolean [1, X]: the context tokens scale k (1-based) may attend to."""
    level_of_token = torch.arange(n_levels * level_tokens) // level_tokens + 1
    allowed = torch.tensor(levels_for_scale(routing, k, n_scales, n_levels))
    return torch.isin(level_of_token, allowed)[None]


def sequence_cross_mask(routing: str, scales: tuple[int, ...], n_levels: int, level_tokens: int) -> torch.Tensor:
    """Boolean [L, X] for the whole teacher-forced sequence: each row is its scale's mask."""
    rows = [
        scale_cross_mask(routing, k + 1, len(scales), n_levels, level_tokens).expand(side * side, -1)
        for k, side in enumerate(scales)
    ]
    return torch.cat(rows)


def routing_weights(routing: str, scales: tuple[int, ...], n_levels: int) -> torch.Tensor:
    """[L, M]: per token, 1/|routed levels| for each level its scale is routed to, else 0 (how condition maps mix
    the levels, `layers/condition_maps.py`)."""
    rows = []
    for k, side in enumerate(scales):
        levels = levels_for_scale(routing, k + 1, len(scales), n_levels)
        weights = torch.zeros(n_levels)
        weights[[m - 1 for m in levels]] = 1.0 / len(levels)
        rows.append(weights.expand(side * side, -1))
    return torch.cat(rows)


def sequence_self_mask(scales: tuple[int, ...], block_causal: bool) -> torch.Tensor:
    """Boolean [L, L]: within-scale (block-diagonal) or block-causal self-attention."""
    scale_of = torch.cat([torch.full((side * side,), k) for k, side in enumerate(scales)])
    return scale_of[:, None] >= scale_of[None, :] if block_causal else scale_of[:, None] == scale_of[None, :]
