"""AdamW with decoupled weight decay on weight matrices only, and the OneCycle schedule (docs/method.md §3.4).

Biases and normalisation weights (every parameter with fewer than 2 dimensions) are not decayed. (The
authors' code meant to exempt LayerNorms, but matched names PyTorch's decoder layers do not use, so it
decayed them; we exempt them.)
"""

from __future__ import annotations

import math

import torch
from torch import nn


def adamw(model: nn.Module, lr: float, weight_decay: float, betas=(0.9, 0.999)) -> torch.optim.AdamW:
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=betas)


def one_cycle(optimizer: torch.optim.Optimizer, max_lr: float, total_steps: int, pct_start: float):
    """PyTorch's OneCycleLR as the authors configure it: cosine, div 25, final div 1000, β1 cycling. Each of its
    two phases spans at least two steps (PyTorch divides by a phase's length minus one)."""
    pct = min(max(pct_start, 2.0 / total_steps), 1.0 - 2.0 / total_steps)
    return torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=max_lr, total_steps=total_steps, pct_start=pct, final_div_factor=1000.0
    )


def warmup_schedule(
    optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int, kind: str = "constant"
) -> torch.optim.lr_scheduler.LambdaLR:
    """A linear warm-up over `warmup_steps`, then the base rate (`constant`: Stage 2 as the paper's code) or a
    cosine decay to a tenth of it at `total_steps` (`cosine`: long pretraining runs)."""
    warm = max(1, warmup_steps)

    def factor(step: int) -> float:
        if step < warm or kind == "constant":
            return min(1.0, (step + 1) / warm)
        progress = min(1.0, (step - warm) / max(1, total_steps - warm))
        return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
