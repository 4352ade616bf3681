"""Multi-head attention on `torch.nn.functional.scaled_dot_product_attention`.

Queries and keys/values have separate projections, so cross-attention can read a context of another
width and a sampler can cache the projected keys/values of a fixed context. With biases, the parameter
count equals `torch.nn.MultiheadAttention`'s (4·D² + 4·D for D = kv_dim).

Shape letters (docs/glossary.md): B batch, L query tokens, X context tokens, D width, Y context width (kv_dim),
A heads, E head dim (D / A).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, kv_dim: int | None = None, dropout: float = 0.0, bias: bool = True):
        super().__init__()
        if dim % heads:
            raise ValueError(f"attention width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.dropout = dropout
        self.to_q = nn.Linear(dim, dim, bias=bias)
        self.to_kv = nn.Linear(kv_dim or dim, 2 * dim, bias=bias)
        self.to_out = nn.Linear(dim, dim, bias=bias)

    def project_kv(self, context_BXY: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values [B, A, X, E] of a context (cacheable when the context is fixed)."""
        k, v = self.to_kv(context_BXY).chunk(2, dim=-1)
        return tuple(rearrange(t, "b x (a e) -> b a x e", a=self.heads) for t in (k, v))

    def forward(
        self,
        x_BLD: torch.Tensor,
        context_BXY: torch.Tensor | None = None,
        mask_LX: torch.Tensor | None = None,
        kv: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Self-attention when no context is given; `mask_LX` is boolean (True = may attend)."""
        q = rearrange(self.to_q(x_BLD), "b l (a e) -> b a l e", a=self.heads)
        k, v = kv if kv is not None else self.project_kv(x_BLD if context_BXY is None else context_BXY)
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask_LX, dropout_p=self.dropout if self.training else 0.0
        )
        return self.to_out(rearrange(out, "b a l e -> b l (a e)"))
