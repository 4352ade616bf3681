"""The post-norm transformer decoder layer of the paper's hierarchical fMRI encoder (docs/method.md §3.1).

Same computation and parameters as `torch.nn.TransformerDecoderLayer(norm_first=False, activation="gelu")`:

    x ← LN1(x + Drop(SelfAttn(x)))
    x ← LN2(x + Drop(CrossAttn(x, memory)))
    x ← LN3(x + Drop(W2 · Drop(GELU(W1 · x))))

Shape letters (docs/glossary.md): B batch, Q queries, X memory tokens, D width.
"""

from __future__ import annotations

import torch
from torch import nn

from mindhier.layers.attention import Attention


class DecoderBlock(nn.Module):
    def __init__(self, dim: int, heads: int, ffn_dim: int, dropout: float):
        super().__init__()
        self.self_attn = Attention(dim, heads, dropout=dropout)
        self.cross_attn = Attention(dim, heads, dropout=dropout)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(ffn_dim, dim))
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x_BQD: torch.Tensor, memory_BXD: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x_BQD + self.drop(self.self_attn(x_BQD)))
        x = self.norm2(x + self.drop(self.cross_attn(x, memory_BXD)))
        return self.norm3(x + self.drop(self.ffn(x)))
