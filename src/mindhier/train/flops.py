"""Training FLOPs of one optimisation step, counted by `torch.utils.flop_counter` on the meta device.

The forward and backward passes of the trainable model are traced with tensors that have shapes but no
data, so counting costs no compute even at paper scale. Counted: matrix multiplications, convolutions and
attention (PyTorch's registered formulas; 1 multiply-add = 2 FLOPs). Not counted: the frozen encoder and
tokenizer (the same per sample for both decoders), elementwise ops and the optimizer.

Shape letters (docs/glossary.md): B batch, L tokens, C latent channels, h/w latent side, M levels, Q tokens per
level, Y level width, P pooled width.
"""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from mindhier.config import DiffusionConfig, GeneratorConfig
from mindhier.models.diffusion import DiffusionShapes, LatentDiT
from mindhier.models.scale_ar import GeneratorShapes, ScaleAR


def _count(build, inputs) -> int:
    with torch.device("meta"):
        model = build()
        args = inputs()
    with FlopCounterMode(display=False) as counter:
        model(*args).float().sum().backward()
    return int(counter.get_total_flops())


def generator_step_flops(cfg: GeneratorConfig, shapes: GeneratorShapes, batch: int) -> int:
    """FLOPs of one teacher-forced forward + backward of the scale-wise generator on `batch` samples."""
    return _count(
        lambda: ScaleAR(cfg, shapes),
        lambda: (
            torch.randn(batch, shapes.n_tokens - shapes.scales[0] ** 2, shapes.latent_channels),  # [B, L − 1, C]
            torch.randn(batch, shapes.n_levels, shapes.level_tokens, shapes.context_width),  # [B, M, Q, Y]
            torch.randn(batch, shapes.pooled_width),  # [B, P]
        ),
    )


def diffusion_step_flops(cfg: DiffusionConfig, shapes: DiffusionShapes, batch: int) -> int:
    """FLOPs of one noise-prediction forward + backward of the diffusion baseline on `batch` samples."""
    side = shapes.latent_side
    return _count(
        lambda: LatentDiT(cfg, shapes),
        lambda: (
            torch.randn(batch, shapes.latent_channels, side, side),  # [B, C, h, w]
            torch.zeros(batch, dtype=torch.long),
            torch.randn(batch, shapes.level_tokens, shapes.context_width),  # [B, Q, Y]
            torch.randn(batch, shapes.pooled_width),  # [B, P]
        ),
    )
