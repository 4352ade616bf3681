"""2-D axial rotary position embedding for scale-wise token maps (Switti's variant).

For a token at column x and row y of an s × s map and a head of E dims, the first E/4 complex pairs rotate
by x·ω_j·c_s and the next E/4 by y·ω_j·c_s, with ω_j = θ^(−4j/E) and c_s = size / max(s − 1, 1): every
scale's grid is stretched over the same span [0, size], so coarse and fine maps share a coordinate frame.
Pairs are consecutive elements (x[2i], x[2i+1]).

Shape letters (docs/glossary.md): B batch, A heads, l tokens of a scale, L all tokens, E head dim,
e = E/2 complex pairs.
"""

from __future__ import annotations

import torch


def scale_frequencies(side: int, head_dim: int, theta: float, size: float) -> torch.Tensor:
    """Unit complex rotations [s², E/2] for one scale (row-major tokens)."""
    if head_dim % 4:
        raise ValueError(f"2-D RoPE needs a head dim divisible by 4, got {head_dim}")
    quarter = head_dim // 4
    omega = theta ** (-torch.arange(0, head_dim, 4)[:quarter].float() / head_dim) * (size / max(side - 1, 1))
    index = torch.arange(side * side)
    x, y = (index % side).float(), (index // side).float()
    angles = torch.cat([torch.outer(x, omega), torch.outer(y, omega)], dim=-1)
    return torch.polar(torch.ones_like(angles), angles)


def context_frequencies(n_levels: int, level_tokens: int, head_dim: int, theta: float, size: float) -> torch.Tensor:
    """Rotations [M·Q, E/2] of condition tokens laid out as one global token followed by a G × G grid (row-major,
    Q = G² + 1) per level: the global token is not rotated (angle 0), grid cell (row, column) is rotated as the
    token of an s = G scale at that row and column, so a context cell and the scale tokens over the same place of
    the image share a position. Raises ValueError when Q − 1 is not a square."""
    side = round((level_tokens - 1) ** 0.5)
    if level_tokens < 2 or side * side != level_tokens - 1:
        raise ValueError(f"context positions need a global token plus a square grid per level, got {level_tokens}")
    grid = scale_frequencies(side, head_dim, theta, size)
    level = torch.cat([torch.ones_like(grid[:1]), grid])  # the global token: rotation by 1 (angle 0)
    return level.repeat(n_levels, 1)


def sequence_frequencies(scales: tuple[int, ...], head_dim: int, theta: float, size: float) -> torch.Tensor:
    """Rotations [L, E/2] for all scales, coarse to fine."""
    return torch.cat([scale_frequencies(s, head_dim, theta, size) for s in scales])


def apply_rotary(x_BAlE: torch.Tensor, freqs_le: torch.Tensor) -> torch.Tensor:
    """Rotate consecutive pairs of the last dim by the given unit complex numbers (float32 maths)."""
    pairs = torch.view_as_complex(x_BAlE.float().reshape(*x_BAlE.shape[:-1], -1, 2))
    return torch.view_as_real(pairs * freqs_le).flatten(-2).type_as(x_BAlE)


def rotation_tables(freqs_le: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The rotations as real tables (cos, sin) [l, E], each value repeated for its pair: what `apply_rotary_real`
    reads. Real arithmetic compiles into fused kernels (TorchInductor generates no code for complex numbers)."""
    return freqs_le.real.repeat_interleave(2, -1).contiguous(), freqs_le.imag.repeat_interleave(2, -1).contiguous()


def apply_rotary_real(x_BAlE: torch.Tensor, cos_lE: torch.Tensor, sin_lE: torch.Tensor) -> torch.Tensor:
    """`apply_rotary` in real arithmetic: (x₀, x₁) → (x₀·cos − x₁·sin, x₁·cos + x₀·sin) per consecutive pair."""
    x = x_BAlE.float()
    pairs = x.unflatten(-1, (-1, 2))
    swapped = torch.stack([-pairs[..., 1], pairs[..., 0]], dim=-1).flatten(-2)
    return (x * cos_lE + swapped * sin_lE).type_as(x_BAlE)
