"""The latent diffusion baseline: a DiT that denoises the tokenizer's continuous latent (the decoder kind
fMRI papers use), conditioned on the same frozen Stage-1 encoder through one static embedding.

    z_0    = (f − μ_c) / σ_c                 f: the tokenizer's pre-quantisation latent, per-channel normalised
    x      = Linear(z_t) + pos               patch size 1: every latent cell is a token; fixed 2-D sin-cos positions
    c      = TimestepMLP(t) + fmri_pooler(p)  p: the encoder's pooled terminal feature
    blocks = DiT AdaLN-Zero blocks (condition c) with cross-attention to the terminal level e_M (Q tokens)
    ε̂      = Linear(LN(x)·(1 + scale) + shift),  (shift, scale) = Linear(SiLU(c)), zero-initialised

Unlike the scale-wise generator, every denoising step sees the same static guidance (no routing): this is
the `static_terminal` condition of diffusion decoders. Sampling is `sampling/ddim.py`; decoding goes through
the same tokenizer decoder (`DiffusionConfig.decode`).

`match_parameters` sizes the backbone (width, then depth) to a target parameter count.

Shape letters (docs/glossary.md): B batch, D width, C latent channels, h/w latent side, L = h·w tokens,
Q terminal tokens, Y context width, P pooled width.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from einops import rearrange
from torch import nn

from mindhier.config import DiffusionConfig
from mindhier.errors import ConfigError
from mindhier.layers.dit_block import DiTBlock, modulate
from mindhier.records import dimension

TIMESTEP_FEATURES = 256  # DiT's frequency embedding size


@dataclass(frozen=True)
class DiffusionShapes:
    """Sizes taken from the tokenizer and the encoder (not from the diffusion config)."""

    latent_channels: int  # C
    latent_side: int  # h = w
    level_tokens: int  # Q, tokens of the terminal level
    context_width: int  # Y
    pooled_width: int  # P

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DiffusionShapes:
        return cls(**{name: dimension(data[name], name) for name in cls.__dataclass_fields__})


def sincos_positions_2d(side: int, width: int) -> torch.Tensor:
    """Fixed 2-D sin-cos positions [side², width]: half the channels encode the row, half the column."""
    quarter = width // 4
    omega = 1.0 / 10_000 ** (torch.arange(quarter, dtype=torch.float64) / quarter)
    grid = torch.arange(side, dtype=torch.float64)
    rows, cols = torch.meshgrid(grid, grid, indexing="ij")

    def encode(pos: torch.Tensor) -> torch.Tensor:
        angles = pos.flatten()[:, None] * omega[None]
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    return torch.cat([encode(rows), encode(cols)], dim=1).float()


def timestep_features(t_B: torch.Tensor, dim: int = TIMESTEP_FEATURES, max_period: float = 10_000.0) -> torch.Tensor:
    """Sinusoidal features [B, dim] of (integer or real) timesteps (Vaswani et al. 2017, as DiT embeds t)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t_B.device) / half)
    angles = t_B.float()[:, None] * freqs[None]
    return torch.cat([angles.cos(), angles.sin()], dim=1)


class LatentDiT(nn.Module):
    def __init__(self, cfg: DiffusionConfig, shapes: DiffusionShapes):
        super().__init__()
        self.cfg, self.shapes = cfg, shapes
        width, channels = cfg.width, shapes.latent_channels
        self.x_embedder = nn.Linear(channels, width)
        self.t_embedder = nn.Sequential(nn.Linear(TIMESTEP_FEATURES, width), nn.SiLU(), nn.Linear(width, width))
        self.fmri_pooler = nn.Linear(shapes.pooled_width, width)
        self.blocks = nn.ModuleList(
            DiTBlock(width, cfg.heads, shapes.context_width, int(width * cfg.mlp_ratio)) for _ in range(cfg.depth)
        )
        self.final_norm = nn.LayerNorm(width, eps=1e-6, elementwise_affine=False)
        self.final_modulation = nn.Sequential(nn.SiLU(), nn.Linear(width, 2 * width))
        self.final_linear = nn.Linear(width, channels)
        # the training latents' per-channel statistics: set once by the trainer, saved with the weights
        self.register_buffer("latent_mean_C", torch.zeros(channels))
        self.register_buffer("latent_std_C", torch.ones(channels))
        self.register_buffer("pos_LD", sincos_positions_2d(shapes.latent_side, width)[None], persistent=False)
        self.init_weights()

    def init_weights(self) -> None:
        """DiT's initialisation: Linear layers Xavier-uniform with zero bias; the timestep MLP normal(0.02); every
        AdaLN modulation, the cross-attention output projections and the final linear zero (blocks start as the
        identity and the model predicts ε̂ = 0)."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        for layer in (self.t_embedder[0], self.t_embedder[2]):
            nn.init.normal_(layer.weight, std=0.02)
        zeroed = [self.final_modulation[-1], self.final_linear]
        for block in self.blocks:
            zeroed += [block.adaLN_modulation[-1], block.cross_attn.to_out]
        for layer in zeroed:
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def set_latent_statistics(self, latents_BChw: torch.Tensor) -> None:
        self.latent_mean_C.copy_(latents_BChw.mean(dim=(0, 2, 3)))
        self.latent_std_C.copy_(latents_BChw.std(dim=(0, 2, 3)).clamp_min(1e-6))

    def normalize(self, f_BChw: torch.Tensor) -> torch.Tensor:
        return (f_BChw - self.latent_mean_C[:, None, None]) / self.latent_std_C[:, None, None]

    def denormalize(self, z_BChw: torch.Tensor) -> torch.Tensor:
        return z_BChw * self.latent_std_C[:, None, None] + self.latent_mean_C[:, None, None]

    def condition(self, t_B: torch.Tensor, pooled_BP: torch.Tensor) -> torch.Tensor:
        return self.t_embedder(timestep_features(t_B)) + self.fmri_pooler(pooled_BP.float())

    def context_kv(self, terminal_BQY: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Every block's cross-attention keys/values of the terminal tokens (fixed across denoising steps)."""
        return [block.cross_attn.project_kv(terminal_BQY.float()) for block in self.blocks]

    def forward(
        self,
        z_t_BChw: torch.Tensor,
        t_B: torch.Tensor,
        terminal_BQY: torch.Tensor,
        pooled_BP: torch.Tensor,
        context_kv: list[tuple[torch.Tensor, torch.Tensor]] | None = None,
    ) -> torch.Tensor:
        """Predicted noise ε̂ [B, C, h, w] of a normalised noisy latent at timesteps t."""
        side = z_t_BChw.shape[-1]
        x = self.x_embedder(rearrange(z_t_BChw.float(), "b c h w -> b (h w) c")) + self.pos_LD
        cond = self.condition(t_B, pooled_BP)
        for i, block in enumerate(self.blocks):
            x = block(x, cond, None if context_kv is None else context_kv[i], terminal_BQY)
        shift, scale = self.final_modulation(cond)[:, None].chunk(2, dim=-1)
        eps = self.final_linear(modulate(self.final_norm(x), shift, scale))
        return rearrange(eps, "b (h w) c -> b c h w", h=side)


def parameter_count(cfg: DiffusionConfig, shapes: DiffusionShapes) -> int:
    """Parameters of a DiT of this config, counted on the meta device (nothing allocated)."""
    with torch.device("meta"):
        return sum(p.numel() for p in LatentDiT(cfg, shapes).parameters())


def match_parameters(cfg: DiffusionConfig, shapes: DiffusionShapes, target: int, tolerance: float = 0.05):
    """The config whose parameter count is closest to `target`: every width (a multiple of 4·heads) at the
    configured depth first, then other depths. Refuses when nothing lands within `tolerance`."""
    step = math.lcm(4, cfg.heads)
    best: tuple[float, DiffusionConfig] | None = None
    depths = [cfg.depth] + [d for d in range(1, 4 * cfg.depth + 9) if d != cfg.depth]
    for depth in depths:
        low, high = step, max(step, min(4096 * step, 100_000 // step * step))
        # the count grows with width: bisect for the crossing, then look at its two neighbours
        while high - low > step:
            mid = (low + high) // (2 * step) * step
            count = parameter_count(dataclasses.replace(cfg, depth=depth, width=mid), shapes)
            low, high = (mid, high) if count < target else (low, mid)
        for width in (low, high):
            candidate = dataclasses.replace(cfg, depth=depth, width=width)
            error = abs(parameter_count(candidate, shapes) - target) / target
            if best is None or error < best[0]:
                best = (error, candidate)
        if best[0] <= tolerance:
            return best[1]
    raise ConfigError(
        f"no diffusion backbone with {cfg.heads} heads comes within {tolerance:.0%} of {target:,} parameters "
        f"(closest {best[1].depth} blocks × width {best[1].width}); change diffusion.heads or set "
        "diffusion.matched=false"
    )
