"""FastVAR-style token pruning at the largest scales (Guo et al. 2025, "FastVAR", arXiv 2503.23367).

At a large scale most tokens only refine what the coarser map already says. FastVAR runs the blocks on the
*pivotal* tokens only — those whose input deviates most from the scale's mean (the high-frequency part of the
token map) — and restores the others from the cache: the previous scale's last hidden states, upsampled to
this scale. The head then reads all positions, so every token is still drawn.

    score_i   = ‖x_i − mean_j x_j‖₂           x: the scale's input map (f̂ at s_k), per row
    kept      = the n highest scores,  n = ⌈keep · s_k²⌉
    h         = restore(h_{k−1} upsampled to s_k);  h[kept] = blocks(x[kept])

With within-scale attention (Switti's, `block_causal = False`) a kept token attends to the kept tokens only.

Shape letters (docs/glossary.md): B batch, l tokens of one scale (this scale's s_k², or the previous scale's
s_{k−1}²), n kept (pivotal) tokens, C latent channels, D width, E head width.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def kept_count(tokens: int, keep: float) -> int:
    """How many of a scale's tokens run through the blocks (at least one)."""
    return max(1, math.ceil(keep * tokens))


def pivotal_tokens(input_BlC: torch.Tensor, kept: int) -> torch.Tensor:
    """Indices [B, n] of the `kept` tokens whose inputs deviate most from their row's mean, in raster order."""
    deviation_Bl = (input_BlC - input_BlC.mean(dim=1, keepdim=True)).norm(dim=-1)
    return deviation_Bl.topk(kept, dim=1).indices.sort(dim=1).values


def gather_tokens(x_BlD: torch.Tensor, index_Bn: torch.Tensor) -> torch.Tensor:
    return x_BlD.gather(1, index_Bn[..., None].expand(-1, -1, x_BlD.shape[-1]))


def gather_rotations(table_lE: torch.Tensor, index_Bn: torch.Tensor) -> torch.Tensor:
    """A RoPE table's rows for each row's kept tokens, [B, 1, n, E] (broadcast over heads)."""
    return table_lE[index_Bn][:, None]


def restore_tokens(previous_BlD: torch.Tensor, side: int, kept_BnD: torch.Tensor, index_Bn: torch.Tensor):
    """All side² hidden states of this scale: the previous scale's (its l = s_{k−1}² tokens) bilinearly upsampled
    to side × side, with the kept tokens' own states written back at their positions."""
    previous_side = math.isqrt(previous_BlD.shape[1])
    grid = previous_BlD.transpose(1, 2).unflatten(-1, (previous_side, previous_side))
    upsampled = F.interpolate(grid.float(), size=(side, side), mode="bilinear", align_corners=False)
    restored_BlD = upsampled.flatten(2).transpose(1, 2).to(kept_BnD.dtype)
    return restored_BlD.scatter(1, index_Bn[..., None].expand(-1, -1, kept_BnD.shape[-1]), kept_BnD)
