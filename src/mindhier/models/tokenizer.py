"""The multi-scale residual VQ tokenizer: VAR's VQ-VAE (conv encoder → quantizer → conv decoder).

    image [-1, 1] ─ Encoder (conv_in, per resolution: res blocks [+ attention at the lowest], downsample;
                     mid: res, attention, res; GN, SiLU, conv_out) ─ quant_conv ─ f [B, C, h, w]
    f ─ MultiScaleQuantizer ─ tokens r_1..r_K, f̂
    f̂ ─ post_quant_conv ─ Decoder (mirror, one extra res block per resolution, nearest ×2 upsampling) ─ image

Module and parameter names follow VAR's `VQVAE`, so the checkpoint VAR and Switti publish maps onto the
`nsd-paper` configuration one to one (checked against a committed manifest in the tests).

Shape letters (docs/glossary.md): B batch, H/W image pixels, C latent channels, h/w latent side, l tokens of a scale.
"""

from __future__ import annotations

import torch
from torch import nn

from mindhier.config import TokenizerConfig
from mindhier.layers.conv_blocks import AttnBlock, Downsample2x, ResnetBlock, Upsample2x, group_norm
from mindhier.models.quantizer import MultiScaleQuantizer


class _Level(nn.Module):
    """One resolution: `block` res blocks, optional `attn` after each, and a resampler."""

    def __init__(self):
        super().__init__()
        self.block = nn.ModuleList()
        self.attn = nn.ModuleList()


class _Mid(nn.Module):
    def __init__(self, channels: int, groups: int, attention: bool):
        super().__init__()
        self.block_1 = ResnetBlock(channels, channels, groups)
        self.attn_1 = AttnBlock(channels, groups) if attention else nn.Identity()
        self.block_2 = ResnetBlock(channels, channels, groups)

    def forward(self, x):
        return self.block_2(self.attn_1(self.block_1(x)))


class Encoder(nn.Module):
    def __init__(self, cfg: TokenizerConfig):
        super().__init__()
        ch, mult, groups, n_levels = cfg.channels, cfg.channel_mult, cfg.norm_groups, len(cfg.channel_mult)
        self.conv_in = nn.Conv2d(3, ch, 3, padding=1)
        self.down = nn.ModuleList()
        c_in = ch
        for i, m in enumerate(mult):
            level, c_out = _Level(), ch * m
            for _ in range(cfg.res_blocks):
                level.block.append(ResnetBlock(c_in, c_out, groups))
                c_in = c_out
                if i == n_levels - 1 and cfg.attention:
                    level.attn.append(AttnBlock(c_in, groups))
            if i != n_levels - 1:
                level.downsample = Downsample2x(c_in)
            self.down.append(level)
        self.mid = _Mid(c_in, groups, cfg.attention)
        self.norm_out = group_norm(c_in, groups)
        self.conv_out = nn.Conv2d(c_in, cfg.latent_channels, 3, padding=1)

    def forward(self, x_B3HW: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x_B3HW)
        for level in self.down:
            for j, block in enumerate(level.block):
                h = block(h)
                if len(level.attn):
                    h = level.attn[j](h)
            if hasattr(level, "downsample"):
                h = level.downsample(h)
        return self.conv_out(nn.functional.silu(self.norm_out(self.mid(h))))


class Decoder(nn.Module):
    def __init__(self, cfg: TokenizerConfig):
        super().__init__()
        ch, mult, groups, n_levels = cfg.channels, cfg.channel_mult, cfg.norm_groups, len(cfg.channel_mult)
        c_in = ch * mult[-1]
        self.conv_in = nn.Conv2d(cfg.latent_channels, c_in, 3, padding=1)
        self.mid = _Mid(c_in, groups, cfg.attention)
        levels: list[_Level] = []
        for i in reversed(range(n_levels)):  # deepest first; stored shallow-first like VAR's `up`
            level, c_out = _Level(), ch * mult[i]
            for _ in range(cfg.res_blocks + 1):
                level.block.append(ResnetBlock(c_in, c_out, groups))
                c_in = c_out
                if i == n_levels - 1 and cfg.attention:
                    level.attn.append(AttnBlock(c_in, groups))
            if i != 0:
                level.upsample = Upsample2x(c_in)
            levels.insert(0, level)
        self.up = nn.ModuleList(levels)
        self.norm_out = group_norm(c_in, groups)
        self.conv_out = nn.Conv2d(c_in, 3, 3, padding=1)

    def forward(self, z_BChw: torch.Tensor) -> torch.Tensor:
        h = self.mid(self.conv_in(z_BChw))
        for level in reversed(self.up):
            for j, block in enumerate(level.block):
                h = block(h)
                if len(level.attn):
                    h = level.attn[j](h)
            if hasattr(level, "upsample"):
                h = level.upsample(h)
        return self.conv_out(nn.functional.silu(self.norm_out(h)))


class Tokenizer(nn.Module):
    def __init__(self, cfg: TokenizerConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        self.quantize = MultiScaleQuantizer(
            cfg.vocab, cfg.latent_channels, cfg.scales, cfg.phi_convs, cfg.phi_ratio, cfg.beta
        )
        self.quant_conv = nn.Conv2d(cfg.latent_channels, cfg.latent_channels, 3, padding=1)
        self.post_quant_conv = nn.Conv2d(cfg.latent_channels, cfg.latent_channels, 3, padding=1)
        self.init_weights()

    def init_weights(self) -> None:
        """Convs: PyTorch's default (Kaiming-uniform) as VAR keeps; codebook uniform in ±1/V (VAR's `eini=-1`)."""
        nn.init.uniform_(self.quantize.embedding.weight, -1.0 / self.cfg.vocab, 1.0 / self.cfg.vocab)

    def latent(self, images_B3HW: torch.Tensor) -> torch.Tensor:
        """Pre-quantisation latent f [B, C, h, w] of images in [-1, 1]."""
        return self.quant_conv(self.encoder(images_B3HW))

    def forward(self, images_B3HW: torch.Tensor):
        """Training pass: reconstruction, VQ loss, tokens, and the latent f (for dead-code restarts)."""
        f = self.latent(images_B3HW)
        f_hat, vq_loss, tokens = self.quantize(f)
        return self.decoder(self.post_quant_conv(f_hat)), vq_loss, tokens, f

    @torch.no_grad()
    def encode(self, images_B3HW: torch.Tensor) -> list[torch.Tensor]:
        """Token maps [B, s_k²] of every scale."""
        return self.quantize.encode(self.latent(images_B3HW))

    @torch.no_grad()
    def decode_latent(self, f_hat_BChw: torch.Tensor) -> torch.Tensor:
        """Image in [-1, 1] from an accumulated latent f̂."""
        return self.decoder(self.post_quant_conv(f_hat_BChw)).clamp(-1, 1)

    @torch.no_grad()
    def decode(self, tokens: list[torch.Tensor]) -> torch.Tensor:
        return self.decode_latent(self.quantize.decode(tokens))

    @torch.no_grad()
    def coarse_to_fine(self, tokens: list[torch.Tensor]) -> list[torch.Tensor]:
        """The image after each scale's tokens are added, coarse to fine."""
        return [self.decode_latent(f_hat) for f_hat in self.quantize.accumulated(tokens)]
