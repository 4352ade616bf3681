"""The DiT block with AdaLN-Zero (Peebles & Xie 2023, §3.2) and cross-attention to a context (PixArt-α, §2.3).

    (β1, γ1, α1, β2, γ2, α2) = Linear(SiLU(c))                       zero-initialised: the block starts as identity
    x ← x + α1 · SelfAttn( LN(x)·(1 + γ1) + β1 )
    x ← x + CrossAttn( LN(x), context )                              output projection zero-initialised
    x ← x + α2 · MLP( LN(x)·(1 + γ2) + β2 )                          MLP: Linear, GELU(tanh), Linear

LayerNorms are non-affine (the modulation supplies scale and shift).

Shape letters (docs/glossary.md): B batch, L tokens, X context tokens, D width, Y context width.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from mindhier.layers.attention import Attention


def modulate(x_BLD: torch.Tensor, shift_B1D: torch.Tensor, scale_B1D: torch.Tensor) -> torch.Tensor:
    return x_BLD * (1 + scale_B1D) + shift_B1D


class DiTBlock(nn.Module):
    def __init__(self, width: int, heads: int, context_width: int, mlp_hidden: int, eps: float = 1e-6):
        super().__init__()
        self.norm1 = nn.LayerNorm(width, eps=eps, elementwise_affine=False)
        self.attn = Attention(width, heads)
        self.norm_cross = nn.LayerNorm(width, eps=eps, elementwise_affine=False)
        self.cross_attn = Attention(width, heads, kv_dim=context_width)
        self.norm2 = nn.LayerNorm(width, eps=eps, elementwise_affine=False)
        self.mlp = nn.Sequential(
            nn.Linear(width, mlp_hidden), nn.GELU(approximate="tanh"), nn.Linear(mlp_hidden, width)
        )
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(width, 6 * width))

    def forward(
        self,
        x_BLD: torch.Tensor,
        cond_BD: torch.Tensor,
        context_kv: tuple[torch.Tensor, torch.Tensor] | None = None,
        context_BXY: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """`context_kv`: the cross-attention's projected keys/values of the context (`cross_attn.project_kv`),
        computed once when sampling; training passes the context itself, projected here inside the block's
        own forward (what FSDP's per-block sharding needs)."""
        if context_kv is None:
            context_kv = self.cross_attn.project_kv(context_BXY.float())
        shift1, scale1, gate1, shift2, scale2, gate2 = rearrange(
            self.adaLN_modulation(cond_BD), "b (six d) -> six b 1 d", six=6
        )
        x = x_BLD + gate1 * self.attn(modulate(self.norm1(x_BLD), shift1, scale1))
        x = x + self.cross_attn(self.norm_cross(x), kv=context_kv)
        return x + gate2 * self.mlp(modulate(self.norm2(x), shift2, scale2))
