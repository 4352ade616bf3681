"""Multi-scale residual vector quantisation, as in VAR (docs/method.md §5.1).

A latent map f [B, C, h, w] becomes K token maps r_1..r_K of growing side s_1 < … < s_K = h:

    f_rest ← f,  f̂ ← 0
    for k = 1..K:
        z_k  = area-downsample(f_rest, s_k)                          (no resampling at the last scale)
        r_k  = argmin_v ‖z_k − e_v‖²                                 token map [B, s_k, s_k]
        h_k  = φ_k(bicubic-upsample(e[r_k], h))                      (no resampling at the last scale)
        f̂   ← f̂ + h_k;   f_rest ← f_rest − h_k

with φ(h) = (1 − ρ)·h + ρ·Conv3×3(h): a few convs shared across scales, scale k using the one whose
tick in [0, 1] is nearest to (k − 1)/(K − 1). Decoding sums the h_k of given tokens. The input of the
generator for scale k + 1 (teacher forcing) is f̂ after k scales, area-downsampled to s_{k+1}.

Parameter and buffer names follow the published VAR/Switti checkpoints (`quantize.embedding`,
`quantize.quant_resi.qresi_ls.{i}`, `quantize.ema_vocab_hit_SV`), so those load one to one.

Shape letters (docs/glossary.md): B batch, C latent channels, h = w latent side, Z codebook size, K scales,
s a scale's side, l = s² tokens of a scale, L all tokens, N flattened vectors.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from mindhier.distributed import all_reduce_sum_


class Phi(nn.Conv2d):
    """φ(h) = (1 − ρ)·h + ρ·Conv3×3(h)."""

    def __init__(self, channels: int, ratio: float):
        super().__init__(channels, channels, kernel_size=3, stride=1, padding=1)
        self.ratio = ratio

    def forward(self, h_BChw: torch.Tensor) -> torch.Tensor:
        return h_BChw * (1 - self.ratio) + super().forward(h_BChw) * self.ratio


class SharedPhi(nn.Module):
    """`count` φ convs shared across the scales, picked by the nearest tick (VAR's partial sharing)."""

    def __init__(self, channels: int, ratio: float, count: int):
        super().__init__()
        self.qresi_ls = nn.ModuleList(Phi(channels, ratio) for _ in range(count))
        # written as VAR writes it: scale 3 of 10 sits exactly between two ticks, and this float order
        # resolves the tie the way the published checkpoints were trained
        lo = 1 / 3 / count if count == 4 else 1 / 2 / count
        self.ticks = np.linspace(lo, 1 - lo, count)

    def index_for(self, position: float) -> int:
        """The conv used at a relative scale position in [0, 1]."""
        return int(np.argmin(np.abs(self.ticks - position)))


class MultiScaleQuantizer(nn.Module):
    def __init__(
        self,
        vocab: int,
        channels: int,
        scales: tuple[int, ...],
        phi_convs: int = 4,
        phi_ratio: float = 0.5,
        beta: float = 0.25,
    ):
        super().__init__()
        if list(scales) != sorted(set(scales)):
            raise ValueError(f"scales must be strictly increasing, got {list(scales)}")
        self.vocab, self.channels, self.scales, self.beta = vocab, channels, tuple(scales), beta
        self.embedding = nn.Embedding(vocab, channels)
        self.quant_resi = SharedPhi(channels, phi_ratio, phi_convs)
        # the φ of every scale, fixed by the scales: plain ints, so a compiled sampling step needs no numpy
        self.phi_of_scale = [self.quant_resi.index_for(self.position(k)) for k in range(len(self.scales))]
        # EMA of code hits per scale during training (VAR keeps the same buffer in its checkpoints)
        self.register_buffer("ema_vocab_hit_SV", torch.zeros(len(scales), vocab))
        # hits since the last usage update; a training loop with gradient accumulation sets `defer_usage` and
        # calls `update_usage` once per optimiser step, so micro-batching does not change the statistics
        self.register_buffer("pending_hits_KZ", torch.zeros(len(scales), vocab), persistent=False)
        self.defer_usage = False

    @property
    def side(self) -> int:
        return self.scales[-1]

    def position(self, k: int) -> float:
        return k / (len(self.scales) - 1) if len(self.scales) > 1 else 0.0

    # --------------------------------------------------------------------------- building blocks

    def nearest(self, z_NC: torch.Tensor) -> torch.Tensor:
        """Index of the nearest code (squared L2) of each vector."""
        codes_ZC = self.embedding.weight.detach().float()
        d_NZ = z_NC.float().square().sum(1, keepdim=True) + codes_ZC.square().sum(1) - 2 * z_NC.float() @ codes_ZC.T
        return d_NZ.argmin(dim=1)

    def downsample(self, f_BChw: torch.Tensor, side: int) -> torch.Tensor:
        return f_BChw if side == f_BChw.shape[-1] else F.interpolate(f_BChw, size=(side, side), mode="area")

    def upsample(self, h_BChw: torch.Tensor) -> torch.Tensor:
        if h_BChw.shape[-1] == self.side:
            return h_BChw
        return F.interpolate(h_BChw, size=(self.side, self.side), mode="bicubic")

    def codes(self, idx_Bl: torch.Tensor) -> torch.Tensor:
        """Token map → code map [B, C, s, s]."""
        side = round(idx_Bl.shape[1] ** 0.5)
        return rearrange(self.embedding(idx_Bl), "b (h w) c -> b c h w", h=side, w=side)

    def scale_contribution(self, k: int, codes_BChw: torch.Tensor) -> torch.Tensor:
        """h_k = φ_k(upsample(codes)) at full latent resolution."""
        return self.quant_resi.qresi_ls[self.phi_of_scale[k]](self.upsample(codes_BChw))

    # ------------------------------------------------------------------------------------ encode

    def _quantize(self, f_BChw: torch.Tensor, keep_fhats: bool):
        f_rest = f_BChw.detach().float().clone()
        f_hat = torch.zeros_like(f_rest)
        tokens, fhats = [], []
        for k, side in enumerate(self.scales):
            z = rearrange(self.downsample(f_rest, side), "b c h w -> (b h w) c")
            idx_Bl = rearrange(self.nearest(z), "(b l) -> b l", b=f_BChw.shape[0])
            h = self.scale_contribution(k, self.codes(idx_Bl))
            f_hat = f_hat + h
            f_rest = f_rest - h.detach()
            tokens.append(idx_Bl)
            if keep_fhats:
                fhats.append(f_hat)
        return tokens, f_hat, fhats

    @torch.no_grad()
    def encode(self, f_BChw: torch.Tensor) -> list[torch.Tensor]:
        """Token maps [B, s_k²] of every scale."""
        return self._quantize(f_BChw, keep_fhats=False)[0]

    def forward(self, f_BChw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """Training pass: straight-through f̂, the VQ loss, and the tokens.

        VQ loss, averaged over scales: ‖f̂_k − f‖² (codebook and φ learn, f fixed) + β‖sg(f̂_k) − f‖²
        (commitment: the encoder moves towards its codes), as VAR computes it.
        """
        f = f_BChw.float()
        tokens, _, fhats = self._quantize(f, keep_fhats=True)
        loss = sum(F.mse_loss(fh, f.detach()) + self.beta * F.mse_loss(fh.detach(), f) for fh in fhats)
        if self.training:
            with torch.no_grad():
                hits_KZ = torch.stack([t.flatten().bincount(minlength=self.vocab).float() for t in tokens])
                self.pending_hits_KZ += hits_KZ
            if not self.defer_usage:
                self.update_usage()
        # straight-through: the decoder's gradient reaches the encoder as if quantisation were the identity
        return f + (fhats[-1] - f).detach(), loss / len(self.scales), tokens

    # ------------------------------------------------------------------------------------ decode

    def accumulated(self, tokens: list[torch.Tensor]) -> list[torch.Tensor]:
        """f̂ after each of the given scales (coarse-to-fine pictures); fewer tokens than scales is fine."""
        f_hat, out = None, []
        for k, idx_Bl in enumerate(tokens):
            h = self.scale_contribution(k, self.codes(idx_Bl))
            f_hat = h if f_hat is None else f_hat + h
            out.append(f_hat)
        return out

    def decode(self, tokens: list[torch.Tensor]) -> torch.Tensor:
        """f̂ [B, C, h, w] from the tokens of every scale."""
        if len(tokens) != len(self.scales):
            raise ValueError(f"expected tokens for {len(self.scales)} scales, got {len(tokens)}")
        return self.accumulated(tokens)[-1]

    def teacher_forcing_inputs(self, tokens: list[torch.Tensor]) -> torch.Tensor:
        """Generator inputs for scales 2..K: f̂ after scale k area-downsampled to s_{k+1}, [B, L − s_1², C]."""
        fhats = self.accumulated(tokens[:-1])
        inputs = [
            rearrange(self.downsample(f_hat, self.scales[k + 1]), "b c h w -> b (h w) c")
            for k, f_hat in enumerate(fhats)
        ]
        return torch.cat(inputs, dim=1)

    def next_input(self, k: int, f_hat: torch.Tensor | None, codes_BChw: torch.Tensor):
        """Sampler step: add scale k's codes to f̂; return f̂ and the next scale's input map (f̂ at the end)."""
        h = self.scale_contribution(k, codes_BChw)
        f_hat = h if f_hat is None else f_hat + h
        if k == len(self.scales) - 1:
            return f_hat, f_hat
        return f_hat, self.downsample(f_hat, self.scales[k + 1])

    # ----------------------------------------------------------------------------- codebook upkeep

    @torch.no_grad()
    def update_usage(self) -> None:
        """Fold the pending code hits into the EMA: the hits of every process (summed under torchrun), so the
        codebooks of all processes see the same statistics and stay identical."""
        hits_KZ = all_reduce_sum_(self.pending_hits_KZ.clone())
        self.ema_vocab_hit_SV.mul_(0.9).add_(hits_KZ, alpha=0.1)
        self.pending_hits_KZ.zero_()

    @torch.no_grad()
    def restart_dead_codes(self, vectors_NC: torch.Tensor, threshold: float, generator: torch.Generator) -> int:
        """Re-initialise codes whose EMA hits (summed over scales) fell below `threshold` to random input vectors.

        Under torchrun every process must pass the same vectors (those of all processes, `all_gather_rows`)
        and an identically seeded `generator`, so every codebook restarts the same codes the same way."""
        dead = (self.ema_vocab_hit_SV.sum(0) < threshold).nonzero().flatten()
        if len(dead) == 0 or len(vectors_NC) == 0:
            return 0
        pick = torch.randint(len(vectors_NC), (len(dead),), generator=generator)
        self.embedding.weight[dead] = vectors_NC[pick].to(self.embedding.weight.dtype)
        self.ema_vocab_hit_SV[:, dead] = threshold  # give the new codes time to be used
        return len(dead)
