"""Root-mean-square normalisation (Zhang & Sennrich 2019), as in Switti's blocks.

Shape letters (docs/glossary.md): D width (after any leading axes).
"""

from __future__ import annotations

import torch
from torch import nn


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x_D: torch.Tensor) -> torch.Tensor:
        x = x_D if x_D.dtype == torch.float32 else x_D.float()  # statistics in float32, without a copy when possible
        normed = x * torch.rsqrt(x.square().mean(-1, keepdim=True) + self.eps)
        return (normed if x_D.dtype == torch.float32 else normed.type_as(x_D)) * self.weight
