"""The Switti transformer block with AdaLN, as MindHier fine-tunes it (docs/method.md §5.1–5.2).

    (γ1, γ2, α1, α2, β1, β2) = Linear(SiLU(c))                                     AdaLN from the condition c
    x ← x + RMS_sa2( SelfAttn( RMS_sa1(x)·(1 + α1) + β1 ) ) · γ1                   RoPE on q, k
    x ← x + RMS_ca2( CrossAttn( q = RMS_ca1(x), kv = RMS_y(context), routing mask ) )    optional RoPE on q, k
    x ← x + RMS_f2( SwiGLU( RMS_f1(x)·(1 + α2) + β2 ) ) · γ2

QK-normalisation is a non-affine LayerNorm over the full width of q and k before the heads are split.
Attribute names follow Switti's checkpoints (`attn.to_qkv`, `cross_attn.to_kv`, `ada_lin.1`, ...).

Shape letters (docs/glossary.md): B batch, l query tokens, L all tokens, X context tokens, D width (of the
tokens and of the condition), A heads, E head dim, e = E/2 RoPE pairs, Y context width.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from mindhier.layers.norms import RMSNorm
from mindhier.layers.rope import apply_rotary, apply_rotary_real


class SelfAttention(nn.Module):
    def __init__(self, width: int, heads: int, eps: float = 1e-6):
        super().__init__()
        self.heads = heads
        self.to_qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.q_norm = nn.LayerNorm(width, eps=eps, elementwise_affine=False)
        self.k_norm = nn.LayerNorm(width, eps=eps, elementwise_affine=False)

    def qkv(self, x_BlD: torch.Tensor, freqs_le):
        """`freqs_le`: RoPE as complex rotations [l, e], or as real tables (cos, sin) [l, E] or [B, 1, l, E]
        (the sampler's form, `rope.rotation_tables`), or None."""
        q, k, v = self.to_qkv(x_BlD).chunk(3, dim=-1)
        q, k = self.q_norm(q), self.k_norm(k)
        q, k, v = (rearrange(t, "b l (a e) -> b a l e", a=self.heads) for t in (q, k, v))
        if isinstance(freqs_le, tuple):
            q, k = apply_rotary_real(q, *freqs_le), apply_rotary_real(k, *freqs_le)
        elif freqs_le is not None:
            q, k = apply_rotary(q, freqs_le), apply_rotary(k, freqs_le)
        return q, k, v

    def forward(self, x_BlD, freqs_le=None, mask_lL=None, past_kv=None):
        """`past_kv` (block-causal sampling) holds earlier scales' keys/values; returns output and new k, v."""
        q, k, v = self.qkv(x_BlD, freqs_le)
        if past_kv is not None:
            k, v = torch.cat([past_kv[0], k], dim=2), torch.cat([past_kv[1], v], dim=2)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask_lL)
        return self.proj(rearrange(out, "b a l e -> b l (a e)")), (k, v)


class CrossAttention(nn.Module):
    """Attention from the scale tokens to the context. With `positional` (generator.context_positions=rope) the
    keys are rotated at their context token's place (`rope.context_frequencies`) and the queries at theirs, so the
    scores depend on where a context cell is relative to the query token (docs/method.md §5.2)."""

    def __init__(self, width: int, context_width: int, heads: int, eps: float = 1e-6, positional: bool = False):
        super().__init__()
        self.heads = heads
        self.positional = positional
        self.to_q = nn.Linear(width, width)
        self.to_kv = nn.Linear(context_width, 2 * width)
        self.proj = nn.Linear(width, width)
        self.q_norm = nn.LayerNorm(width, eps=eps, elementwise_affine=False)
        self.k_norm = nn.LayerNorm(width, eps=eps, elementwise_affine=False)

    def context_kv(self, context_BXY: torch.Tensor, freqs_Xe=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values of the (normed) context, [B, A, X, E] each: computed once per sample in sampling.
        `freqs_Xe`: the context tokens' rotations (complex [X, e] or real tables), used when `positional`."""
        k, v = self.to_kv(context_BXY).chunk(2, dim=-1)
        k = self.k_norm(k)
        k, v = (rearrange(t, "b x (a e) -> b a x e", a=self.heads) for t in (k, v))
        if self.positional:
            k = _rotate(k, freqs_Xe)
        return k, v

    def forward(self, x_BlD, kv, mask_lX=None, freqs_le=None):
        """`freqs_le`: the query tokens' rotations (the self-attention's), used when `positional`."""
        q = rearrange(self.q_norm(self.to_q(x_BlD)), "b l (a e) -> b a l e", a=self.heads)
        if self.positional:
            q = _rotate(q, freqs_le)
        out = F.scaled_dot_product_attention(q, kv[0], kv[1], attn_mask=mask_lX)
        return self.proj(rearrange(out, "b a l e -> b l (a e)"))


def _rotate(t_BAlE: torch.Tensor, freqs) -> torch.Tensor:
    """RoPE by complex rotations [l, e] or by real (cos, sin) tables; a positional attention needs them."""
    if freqs is None:
        raise ValueError("positional cross-attention needs the tokens' rotations")
    return apply_rotary_real(t_BAlE, *freqs) if isinstance(freqs, tuple) else apply_rotary(t_BAlE, freqs)


class SwiGLU(nn.Module):
    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.up_proj = nn.Linear(width, hidden, bias=False)
        self.gate_proj = nn.Linear(width, hidden, bias=False)
        self.down_proj = nn.Linear(hidden, width, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class AdaLNSelfCrossBlock(nn.Module):
    def __init__(
        self,
        width: int,
        heads: int,
        context_width: int,
        cond_width: int,
        ffn_hidden: int,
        eps: float,
        context_positions: bool = False,
    ):
        super().__init__()
        self.width = width
        self.attn = SelfAttention(width, heads, eps)
        self.cross_attn = CrossAttention(width, context_width, heads, eps, positional=context_positions)
        self.ffn = SwiGLU(width, ffn_hidden)
        self.self_attention_norm1, self.self_attention_norm2 = RMSNorm(width, eps), RMSNorm(width, eps)
        self.cross_attention_norm1, self.cross_attention_norm2 = RMSNorm(width, eps), RMSNorm(width, eps)
        self.ffn_norm1, self.ffn_norm2 = RMSNorm(width, eps), RMSNorm(width, eps)
        self.attention_y_norm = RMSNorm(context_width, eps)
        self.ada_lin = nn.Sequential(nn.SiLU(), nn.Linear(cond_width, 6 * width))

    def modulation(self, cond_BD: torch.Tensor) -> torch.Tensor:
        """AdaLN parameters [B, 1, 6, D] (γ1, γ2, α1, α2, β1, β2): computed once per sample in sampling."""
        return rearrange(self.ada_lin(cond_BD), "b (six d) -> b 1 six d", six=6)

    def context_kv(self, context_BXY: torch.Tensor, context_freqs=None):
        return self.cross_attn.context_kv(self.attention_y_norm(context_BXY), context_freqs)

    def forward(
        self,
        x_BlD,
        modulation=None,
        context_kv=None,
        freqs_le=None,
        self_mask=None,
        cross_mask=None,
        past_kv=None,
        *,
        cond_BD=None,
        context_BXY=None,
        context_freqs=None,
    ):
        """Sampling passes the per-sample `modulation` and `context_kv` computed once (`modulation`,
        `context_kv`); training passes `cond_BD` and `context_BXY` (and `context_freqs`, the context tokens'
        rotations, with positional cross-attention), so every use of the block's parameters happens inside its own
        forward (what FSDP's per-block sharding needs). The queries of the cross-attention rotate with `freqs_le`."""
        if modulation is None:
            modulation = self.modulation(cond_BD)
        if context_kv is None:
            context_kv = self.context_kv(context_BXY, context_freqs)
        gamma1, gamma2, scale1, scale2, shift1, shift2 = modulation.unbind(2)
        h, new_kv = self.attn(self.self_attention_norm1(x_BlD) * (1 + scale1) + shift1, freqs_le, self_mask, past_kv)
        x = x_BlD + self.self_attention_norm2(h) * gamma1
        cross = self.cross_attn(self.cross_attention_norm1(x), context_kv, cross_mask, freqs_le)
        x = x + self.cross_attention_norm2(cross)
        x = x + self.ffn_norm2(self.ffn(self.ffn_norm1(x) * (1 + scale2) + shift2)) * gamma2
        return x, new_kv
