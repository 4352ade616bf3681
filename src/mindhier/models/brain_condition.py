"""The brain condition of a Stage-2 decoder: what a frozen encoder hands the generator (docs/method.md §5.2).

For brain inputs the encoder gives

    levels    e_1..e_M [B, M, Q, D]  the cross-attention context, routed per scale (for the `single`
                                     ablation, e_M in every level slot: one fixed terminal feature)
    pooled    mean of ê [B, P]       the start token and AdaLN condition
    terminal  ê [B, Q, P]            the projected terminal output (brain-only best-of-N selection)

and the **null condition** — the encoder's output for all-zero voxels — is the unconditional stream of
classifier-free guidance (training zeroes a sample's voxels with probability `cfg_dropout`, so the
decoder learns it). Training and sampling both build the condition here, so they cannot drift apart.

Trials of a test image ([B, T, V]) are averaged as voxels (default) or as encoder outputs
(MindEye2's choice).

Shape letters (docs/glossary.md): B inputs, T trials, V voxels, M levels, Q tokens per level,
D level width, P pooled width.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch

from mindhier.errors import ConfigError
from mindhier.models.brain_encoder import BrainEncoder, EncoderOutput

AVERAGING = ("voxels", "outputs")


class Condition(NamedTuple):
    levels_BMQD: torch.Tensor
    pooled_BP: torch.Tensor
    terminal_BQP: torch.Tensor


def guidance_levels(out: EncoderOutput, supervision: str) -> torch.Tensor:
    """The levels the generator cross-attends to: e_1..e_M, or for the `single` ablation (one fixed
    terminal feature, the paper's Table 2, docs/method.md §4) e_M in every level slot, whatever the routing."""
    if supervision == "single":
        terminal = out.levels_BMQD[:, -1:]
        return terminal.expand_as(out.levels_BMQD).contiguous()
    return out.levels_BMQD


class BrainCondition:
    """A frozen encoder seen as the decoder's condition."""

    def __init__(self, encoder: BrainEncoder, supervision: str):
        self.encoder, self.supervision = encoder, supervision

    @property
    def device(self) -> torch.device:
        return next(self.encoder.parameters()).device

    @torch.no_grad()
    def __call__(self, groups: Sequence[tuple[int, torch.Tensor]]) -> Condition:
        """The condition of (subject, voxels [n_s, V_s]) groups, rows in group order."""
        self.encoder.eval()
        out = self.encoder(list(groups))
        return Condition(guidance_levels(out, self.supervision), out.pooled_BD, out.terminal_BQD)

    @torch.no_grad()
    def of_voxels(self, voxels, subject: int, average: str = "voxels") -> Condition:
        """The condition of one subject's [B, V] voxels, or of [B, T, V] trials."""
        if average not in AVERAGING:
            raise ConfigError(f"average must be one of {', '.join(AVERAGING)}, got {average!r}")
        voxels = torch.as_tensor(np.asarray(voxels) if not isinstance(voxels, torch.Tensor) else voxels).float()
        voxels = voxels.to(self.device)
        if voxels.ndim == 3 and average == "voxels":
            voxels = voxels.mean(dim=1)
        if voxels.ndim == 3:  # average the encoder's outputs over trials
            b, t, v = voxels.shape
            out = self(((subject, voxels.reshape(b * t, v)),))
            return Condition(*(x.reshape(b, t, *x.shape[1:]).mean(1) for x in out))
        if voxels.ndim != 2:
            raise ConfigError(f"voxels must be [B, V] or [B, T, V], got shape {tuple(voxels.shape)}")
        return self(((subject, voxels),))

    def null(self, subject: int) -> Condition:
        """The unconditional stream: the encoder's output for all-zero voxels, [1, …]."""
        if subject not in self.encoder.shapes.voxels:
            raise ConfigError(f"the encoder has no input layer for subject {subject}; it knows {self.encoder.subjects}")
        return self(((subject, torch.zeros(1, self.encoder.shapes.voxels[subject], device=self.device)),))
