"""The baseline's noise schedule and DDIM sampler: pure tensor math around the denoiser.

Forward process (Ho et al. 2020, "DDPM"): β_1..β_T linear from `beta_start` to `beta_end` (§4), α_t = 1 − β_t,
ᾱ_t = Π_{s≤t} α_s, and

    q(z_t | z_0) = N(√ᾱ_t · z_0, (1 − ᾱ_t)·I),   i.e.  z_t = √ᾱ_t · z_0 + √(1 − ᾱ_t) · ε       (DDPM eq. 4)

The network learns ε̂(z_t, t, c) with the simple loss ‖ε − ε̂‖² (DDPM eq. 14). Timesteps are 0-based here:
index t holds ᾱ_{t+1} of the paper.

DDIM (Song et al. 2021) on S of the T timesteps, "trailing" spacing (the last timestep is always visited;
Lin et al. 2024, Table 2): τ_i = round(T − i·T/S) − 1 for i = 0..S−1. For each step τ → τ' (τ' = the next
timestep, or "before the first", where ᾱ = 1):

1. classifier-free guidance (Ho & Salimans 2022, eq. 6): ε̂ = (1 + w)·ε̂(z, c) − w·ε̂(z, ∅);
2. predicted clean latent:  ẑ_0 = (z_τ − √(1 − ᾱ_τ)·ε̂) / √ᾱ_τ                   (DDIM eq. 12, "predicted x_0")
3. noise level:             σ = η·√((1 − ᾱ_τ')/(1 − ᾱ_τ))·√(1 − ᾱ_τ/ᾱ_τ')     (DDIM eq. 16)
4. step:  z_τ' = √ᾱ_τ'·ẑ_0 + √(1 − ᾱ_τ' − σ²)·ε̂ + σ·n,  n ~ N(0, I) from `generator`   (DDIM eq. 12)

η = 0 is deterministic given the starting noise. Randomness enters only through `generator` (one, or one per
brain input; draws on the generator's device, `sampling/draws.py`).

Shape letters (docs/glossary.md): B batch, C latent channels, h/w latent side, Q terminal tokens, Y context width,
P pooled width.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from mindhier.config import DdimConfig
from mindhier.sampling.draws import as_list, normal_rows


@dataclass(frozen=True)
class NoiseSchedule:
    alphas_cumprod: torch.Tensor  # [timesteps]: ᾱ of the T training timesteps (float64)

    @classmethod
    def linear(cls, timesteps: int, beta_start: float, beta_end: float) -> NoiseSchedule:
        betas = torch.linspace(beta_start, beta_end, timesteps, dtype=torch.float64)
        return cls(torch.cumprod(1.0 - betas, dim=0))

    @property
    def timesteps(self) -> int:
        return len(self.alphas_cumprod)

    def alpha_bar(self, t: int) -> float:
        """ᾱ at 0-based timestep t; t = −1 is the clean end of the chain (ᾱ = 1)."""
        return 1.0 if t < 0 else float(self.alphas_cumprod[t])

    def add_noise(self, z0_BChw: torch.Tensor, noise_BChw: torch.Tensor, t_B: torch.Tensor) -> torch.Tensor:
        """z_t = √ᾱ_t · z_0 + √(1 − ᾱ_t) · ε  (DDPM eq. 4), per sample timestep."""
        alpha_bar = self.alphas_cumprod.to(z0_BChw.device)[t_B].to(z0_BChw.dtype)[:, None, None, None]
        return alpha_bar.sqrt() * z0_BChw + (1 - alpha_bar).sqrt() * noise_BChw


def ddim_timesteps(timesteps: int, steps: int) -> list[int]:
    """The S visited timesteps, high to low, "trailing" spacing: τ_i = round(T − i·T/S) − 1."""
    if not 1 <= steps <= timesteps:
        raise ValueError(f"DDIM steps must be in 1..{timesteps}, got {steps}")
    return [round(timesteps - i * timesteps / steps) - 1 for i in range(steps)]


def ddim_step(
    schedule: NoiseSchedule,
    z_BChw: torch.Tensor,
    eps_BChw: torch.Tensor,
    t: int,
    t_prev: int,
    eta: float,
    generator: torch.Generator | Sequence[torch.Generator] | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One DDIM update z_t → z_{t_prev}; returns (z_{t_prev}, ẑ_0). Steps 2–4 of the module docstring."""
    a_t, a_prev = schedule.alpha_bar(t), schedule.alpha_bar(t_prev)
    z0 = (z_BChw - (1 - a_t) ** 0.5 * eps_BChw) / a_t**0.5  # step 2
    sigma = eta * ((1 - a_prev) / (1 - a_t)) ** 0.5 * (1 - a_t / a_prev) ** 0.5  # step 3
    z_prev = a_prev**0.5 * z0 + max(1 - a_prev - sigma**2, 0.0) ** 0.5 * eps_BChw  # step 4
    if sigma > 0:
        generators = as_list(generator) if generator is not None else [torch.default_generator]
        noise = normal_rows(tuple(z_BChw.shape), generators, z_BChw.device, z_BChw.dtype)
        z_prev = z_prev + sigma * noise
    return z_prev, z0


def guided_noise(model, z_BChw, t_B, terminal_2BQY, pooled_2BP, context_kv, cfg_scale: float) -> torch.Tensor:
    """Step 1: ε̂ of the conditional and unconditional streams in one batch (conditional rows first), combined;
    the conditional stream alone when `cfg_scale` is 0 (then the condition has B rows). One fixed-shape call
    per step: what `DiffusionDecoder` compiles (`sampling/compiled.py`)."""
    if cfg_scale == 0:
        return model(z_BChw, t_B, terminal_2BQY, pooled_2BP, context_kv=context_kv)
    batch = z_BChw.shape[0]
    eps = model(torch.cat([z_BChw, z_BChw]), t_B.repeat(2), terminal_2BQY, pooled_2BP, context_kv=context_kv)
    return (1 + cfg_scale) * eps[:batch] - cfg_scale * eps[batch:]


@torch.no_grad()
def sample_ddim(
    model,
    schedule: NoiseSchedule,
    terminal_BQY: torch.Tensor,
    pooled_BP: torch.Tensor,
    null_terminal_1QY: torch.Tensor,
    null_pooled_1P: torch.Tensor,
    cfg: DdimConfig,
    noise_BChw: torch.Tensor,
    generator: torch.Generator | Sequence[torch.Generator] | None = None,
    step_callback: Callable[[int, torch.Tensor], None] | None = None,
    noise_fn: Callable[..., torch.Tensor] | None = None,
) -> torch.Tensor:
    """Denoise `noise` (z at the last timestep) to a normalised clean latent [B, C, h, w].

    The conditional and unconditional streams run in one batch (step 1, `guided_noise`); the context's
    keys/values are projected once. `step_callback(i, ẑ_0)` sees every step's predicted clean latent (for
    strips); `noise_fn` replaces `guided_noise` (with the model bound: a compiled copy of it).
    """
    model.eval()
    null = (null_terminal_1QY, null_pooled_1P)
    terminal, pooled, context_kv = guided_condition(model, terminal_BQY, pooled_BP, *null, cfg)
    return denoise(model, schedule, terminal, pooled, context_kv, cfg, noise_BChw, generator, step_callback, noise_fn)


def guided_condition(model, terminal_BQY, pooled_BP, null_terminal_1QY, null_pooled_1P, cfg: DdimConfig):
    """The condition of every step: both streams in one batch (conditional rows first) when guided, and the
    context's keys/values, projected once."""
    batch = terminal_BQY.shape[0]
    terminal, pooled = terminal_BQY, pooled_BP
    if cfg.cfg_scale > 0:
        terminal = torch.cat([terminal, null_terminal_1QY.expand(batch, -1, -1).to(terminal)])
        pooled = torch.cat([pooled, null_pooled_1P.expand(batch, -1).to(pooled)])
    return terminal, pooled, model.context_kv(terminal)


def denoise(
    model,
    schedule: NoiseSchedule,
    terminal_2BQY: torch.Tensor,
    pooled_2BP: torch.Tensor,
    context_kv,
    cfg: DdimConfig,
    noise_BChw: torch.Tensor,
    generator: torch.Generator | Sequence[torch.Generator] | None = None,
    step_callback: Callable[[int, torch.Tensor], None] | None = None,
    noise_fn: Callable[..., torch.Tensor] | None = None,
) -> torch.Tensor:
    """The DDIM steps from `noise` under a `guided_condition`: the normalised clean latent [B, C, h, w]."""
    batch = noise_BChw.shape[0]
    terminal, pooled = terminal_2BQY, pooled_2BP
    noise_fn = noise_fn or (lambda *args: guided_noise(model, *args))
    visited = ddim_timesteps(schedule.timesteps, cfg.steps)
    z = noise_BChw
    for i, t in enumerate(visited):
        t_prev = visited[i + 1] if i + 1 < len(visited) else -1
        t_B = torch.full((batch,), t, device=z.device, dtype=torch.long)
        eps = noise_fn(z, t_B, terminal, pooled, context_kv, cfg.cfg_scale)
        z, z0 = ddim_step(schedule, z, eps, t, t_prev, cfg.eta, generator)
        if step_callback is not None:
            step_callback(i, z0)
    return z
