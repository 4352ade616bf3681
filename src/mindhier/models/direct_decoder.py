"""A direct decoder from the teacher's levels to pixels: how much of an image the condition holds at all.

The scale-wise generator turns the condition into tokens, one scale at a time, sampling each. Whether a poor
reconstruction is the generator's fault or the condition's cannot be told from the generator alone; this small
convolutional decoder answers it. Trained by regression (mean squared error) on the pretraining stream, it reads a
teacher's levels of an image and paints the image at the tokenizer's side, with no sampling and no tokenizer in
between; its PixCorr, SSIM and judge scores on held-out stream images bound what any decoder of that condition
can show (`train/prior_quality.py`, recorded in the generator prior's model card).

    per level m:  grid tokens [q, D_m] → linear → width, plus the level's global token → linear → width, broadcast
    concatenated over levels: [M·width, G, G] → 2 convs (3 × 3, GELU) → ×2 upsample + conv until the image side
    → conv → sigmoid: RGB in [0, 1]

It needs levels laid out as a global token plus a square G × G grid (`layers/condition_maps.grid_side`), and an
image side of G·2^n.

Shape letters (docs/glossary.md): B images, M levels, Q tokens per level (1 + G²), q = G² grid tokens, D_m level
width, G grid side, H = W = image side.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from mindhier.errors import ConfigError
from mindhier.layers.condition_maps import grid_side


class DirectDecoder(nn.Module):
    def __init__(self, level_dims: Sequence[int], level_tokens: int, image_px: int, width: int = 64, body: int = 128):
        super().__init__()
        try:
            self.grid = grid_side(level_tokens)
        except ValueError as err:
            raise ConfigError(f"the direct decoder: {err}; fix the direct decoder's settings") from err
        upsamples = (image_px // self.grid).bit_length() - 1
        if self.grid << upsamples != image_px:
            raise ConfigError(f"the direct decoder paints G·2^n pixels; grid {self.grid} cannot reach {image_px}")
        self.level_dims, self.image_px = tuple(level_dims), image_px
        self.grid_in = nn.ModuleList(nn.Linear(d, width) for d in self.level_dims)
        self.global_in = nn.ModuleList(nn.Linear(d, width) for d in self.level_dims)
        layers: list[nn.Module] = [
            nn.Conv2d(width * len(self.level_dims), body, 3, padding=1),
            nn.GELU(),
            nn.Conv2d(body, body, 3, padding=1),
            nn.GELU(),
        ]
        channels = body
        for _ in range(upsamples):
            narrower = max(channels // 2, 32)
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(channels, narrower, 3, padding=1)]
            layers.append(nn.GELU())
            channels = narrower
        layers.append(nn.Conv2d(channels, 3, 3, padding=1))
        self.body = nn.Sequential(*layers)

    def forward(self, levels: Sequence[torch.Tensor]) -> torch.Tensor:
        """M levels [B, Q, D_m] → images [B, 3, H, W] in [0, 1]."""
        maps = []
        for level_BQD, grid_in, global_in in zip(levels, self.grid_in, self.global_in, strict=True):
            level_BQD = level_BQD.float()
            cells_BqW = grid_in(level_BQD[:, 1:]) + global_in(level_BQD[:, :1])
            maps.append(cells_BqW.transpose(1, 2).unflatten(2, (self.grid, self.grid)))
        return torch.sigmoid(self.body(torch.cat(maps, dim=1)))
