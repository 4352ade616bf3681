"""Multi-head attention on `torch.nn.functional.scaled_dot_product_attention`.

Queries and keys/values have separate projections, so cross-attention can read a context of another
width and a sampler can cache the projected keys/values of a fixed context. With biases, the parameter
count equals `torch.nn.MultiheadAttention`'s (4·D² + 4·D for D = kv_dim).

Shape letters: B batch, L query tokens, S context tokens, D width, H heads, E head dim (D / H).
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

    def project_kv(self, context_BSD: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values [B, H, S, E] of a context (cacheable when the context is fixed)."""
        k, v = self.to_kv(context_BSD).chunk(2, dim=-1)
        return tuple(rearrange(t, "b s (h e) -> b h s e", h=self.heads) for t in (k, v))

    def forward(
        self,
        x_BLD: torch.Tensor,
        context_BSD: torch.Tensor | None = None,
        mask_LS: torch.Tensor | None = None,
        kv: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Self-attention when no context is given; `mask_LS` is boolean (True = may attend)."""
        q = rearrange(self.to_q(x_BLD), "b l (h e) -> b h l e", h=self.heads)
        k, v = kv if kv is not None else self.project_kv(x_BLD if context_BSD is None else context_BSD)
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask_LS, dropout_p=self.dropout if self.training else 0.0
        )
        return self.to_out(rearrange(out, "b h l e -> b l (h e)"))
