"""Condition maps: the routed levels' grids, resampled to each scale's side and added to its tokens.

docs/method.md §5.2 says where this departs from MindHier and why.

Cross-attention lets a scale token find the condition it needs, but a small generator trained briefly learns that
search slowly; a CNN teacher's pooled cells hold *where* things are in their grid order only. With
`generator.context_maps=add` every level's G × G grid tokens (the global token is left to cross-attention) pass a
linear map of their own to the generator's width, and the scale-k tokens get, added at their input, the mean of
their routed levels' maps resampled to s_k × s_k — area-averaged to a coarser side, bilinear to a finer one. A token
then reads the condition at its own place before any attention, and routing still decides which levels each scale
sees (the same `levels_for_scale` as the cross-attention mask). Additive spatial conditioning of this kind is
ControlNet's and T2I-Adapter's; it is not in MindHier, whose CLIP patch tokens carry their place in their content.

Both resamplings are linear, so all scales' maps are one product: `resample_LG` [L, G²] (each scale's rows resample a
G × G image to s_k × s_k) times the routing weights `weights_LM` [L, M] (`models/routing.py: routing_weights`:
1/|routed levels| where routed, else 0) times the levels' mapped grids [B, M, G², D].

Shape letters (docs/glossary.md): B batch, L all tokens, M levels, Q tokens per level (1 + G²), G grid side,
D generator width, Y context width.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def grid_side(level_tokens: int) -> int:
    """G of a level laid out as one global token plus a G × G grid; ValueError otherwise."""
    side = round(max(level_tokens - 1, 0) ** 0.5)
    if level_tokens < 2 or side * side != level_tokens - 1:
        raise ValueError(f"condition maps need a global token plus a square grid per level, got {level_tokens} tokens")
    return side


def resample_matrix(grid: int, side: int) -> torch.Tensor:
    """[side², grid²]: a G × G map (row-major) → side × side, area-averaged when coarser, bilinear when finer."""
    basis_GG1gg = torch.eye(grid * grid).reshape(grid * grid, 1, grid, grid)
    if side <= grid:
        resampled = F.adaptive_avg_pool2d(basis_GG1gg, side)
    else:
        resampled = F.interpolate(basis_GG1gg, size=(side, side), mode="bilinear", align_corners=False)
    return resampled.reshape(grid * grid, side * side).T.contiguous()


class ConditionMaps(nn.Module):
    """Per-level linear maps of the grid tokens, resampled to every scale and mixed by the routing: [B, L, D]."""

    def __init__(
        self, level_dims: Sequence[int], level_tokens: int, width: int, scales: Sequence[int], weights_LM: torch.Tensor
    ):
        super().__init__()
        self.level_dims, self.scales = tuple(level_dims), tuple(scales)
        self.grid = grid_side(level_tokens)
        self.maps_in = nn.ModuleList(nn.Linear(d, width) for d in self.level_dims)
        resample = torch.cat([resample_matrix(self.grid, side) for side in self.scales])
        self.register_buffer("resample_LG", resample, persistent=False)
        self.register_buffer("weights_LM", weights_LM.clone(), persistent=False)

    def set_weights(self, weights_LM: torch.Tensor) -> None:
        """Another routing's weights (`models/routing.py: routing_weights`)."""
        self.weights_LM.copy_(weights_LM.to(self.weights_LM))

    def forward(self, levels_BMQY: torch.Tensor) -> torch.Tensor:
        grids_BMGD = torch.stack(
            [adapter(levels_BMQY[:, m, 1:, : self.level_dims[m]].float()) for m, adapter in enumerate(self.maps_in)],
            dim=1,
        )
        return torch.einsum("lg,lm,bmgd->bld", self.resample_LG, self.weights_LM, grids_BMGD)
