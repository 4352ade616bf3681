"""The condition of a Stage-2 decoder: brain levels in the teacher's feature space (docs/method.md §5.2).

The generator cross-attends to M levels and starts from a pooled vector. Both live in the **teacher's
feature space**, so the same generator can be conditioned on the brain or on the teacher's own features
of an image (the *oracle*, what a perfect encoder would give):

    brain   levels  head_m(e_m) [B, Q, D_m]   the encoder's aligned prediction of teacher level m
            pooled  mean of ê [B, P]          ê = P(e_M), aligned to the teacher's terminal level
            null    the same for all-zero voxels (the unconditional stream of classifier-free guidance;
                    training zeroes a sample's voxels with probability `cfg_dropout`)
    teacher levels  v_m [B, Q, D_m]           the teacher's level m of the image itself
            pooled  mean of v_M over tokens
            null    zeros

With the paper's CLIP targets every level is 768-wide and the heads are identities, so head_m(e_m) = e_m:
this is exactly the paper's context. Where the teacher's levels differ in width (EfficientNet-Lite0:
40/80/112/320), the levels are zero-padded to the widest into one tensor [B, M, Q, D] and `level_dims`
says how many channels of each are real; the generator maps each level to its width with its own linear
adapter. For the `single` ablation (one fixed terminal feature, the paper's Table 2, docs/method.md §4)
every level slot holds ê. Training and sampling build the condition here, so they cannot drift apart.

Trials of a test image ([B, T, V]) are averaged as voxels (default) or as encoder outputs (MindEye2's
choice).

Shape letters (docs/glossary.md): B inputs, T trials, V voxels, M levels, Q tokens per level,
D (padded) level width, P pooled width.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from mindhier.errors import ConfigError
from mindhier.models.brain_encoder import BrainEncoder, EncoderOutput
from mindhier.models.condition_calibration import ConditionCalibration

AVERAGING = ("voxels", "outputs")


class Condition(NamedTuple):
    levels_BMQD: torch.Tensor  # zero-padded to the widest level; `level_dims` of the source say how many are real
    pooled_BP: torch.Tensor
    terminal_BQP: torch.Tensor


def over_trials(voxels, average: str, predict):
    """`predict` of [B, V] voxels, or of [B, T, V] trials averaged as `average` says: "voxels" predicts from the
    trials' mean, "outputs" averages the predictions (a tensor, or each tensor of a named tuple) over trials."""
    if average not in AVERAGING:
        raise ConfigError(f"average must be one of {', '.join(AVERAGING)}, got {average!r}; use one of those")
    if voxels.ndim == 3 and average == "voxels":
        voxels = voxels.mean(dim=1)
    if voxels.ndim == 2:
        return predict(voxels)
    if voxels.ndim != 3:
        raise ConfigError(
            f"voxels must be [B, V] or [B, T, V], got shape {tuple(voxels.shape)}; pass voxels in one of those shapes"
        )
    b, t, v = voxels.shape
    out = predict(voxels.reshape(b * t, v))
    if isinstance(out, torch.Tensor):
        return out.reshape(b, t, *out.shape[1:]).mean(1)
    return type(out)(*(x.reshape(b, t, *x.shape[1:]).mean(1) for x in out))


def stack_levels(levels: Sequence[torch.Tensor]) -> torch.Tensor:
    """M tensors [B, Q, D_m] → one [B, M, Q, max D_m], each zero-padded on its last axis."""
    width = max(level.shape[-1] for level in levels)
    return torch.stack([F.pad(level, (0, width - level.shape[-1])) for level in levels], dim=1)


def aligned_levels(out: EncoderOutput, supervision: str) -> list[torch.Tensor]:
    """The encoder's levels in the teacher's space: head_m(e_m), or ê in every slot for `single`."""
    if supervision == "single":
        return [out.terminal_BQD] * len(out.heads)
    return list(out.heads)


class BrainCondition:
    """A frozen encoder seen as the decoder's condition; with a calibration (`models/condition_calibration.py`),
    its levels moment-matched to the teacher's and the pooled vector their terminal level's token mean."""

    def __init__(self, encoder: BrainEncoder, supervision: str, calibration: ConditionCalibration | None = None):
        self.encoder, self.supervision, self.calibration = encoder, supervision, calibration

    @property
    def device(self) -> torch.device:
        return next(self.encoder.parameters()).device

    @property
    def level_dims(self) -> tuple[int, ...]:
        dims = self.encoder.shapes.level_dims
        return (dims[-1],) * len(dims) if self.supervision == "single" else tuple(dims)

    @torch.no_grad()
    def __call__(self, groups: Sequence[tuple[int, torch.Tensor]]) -> Condition:
        """The condition of (subject, voxels [n_s, V_s]) groups, rows in group order."""
        self.encoder.eval()
        return self.compute(groups)

    def compute(self, groups: Sequence[tuple[int, torch.Tensor]]) -> Condition:
        """`__call__` without switching the encoder to eval mode or gradients off (what a compiled graph traces)."""
        groups = list(groups)
        out = self.encoder(groups)
        levels_BMQD = stack_levels(aligned_levels(out, self.supervision))
        if self.calibration is None:
            return Condition(levels_BMQD, out.pooled_BD, out.terminal_BQD)
        start, parts = 0, []
        for subject, voxels in groups:
            parts.append(self.calibration.apply(levels_BMQD[start : start + len(voxels)], subject))
            start += len(voxels)
        levels_BMQD = torch.cat(parts)
        terminal_width = self.level_dims[-1]
        return Condition(levels_BMQD, levels_BMQD[:, -1, :, :terminal_width].mean(dim=1), out.terminal_BQD)

    @torch.no_grad()
    def of_voxels(self, voxels, subject: int, average: str = "voxels") -> Condition:
        """The condition of one subject's [B, V] voxels, or of [B, T, V] trials (`over_trials`)."""
        voxels = torch.as_tensor(np.asarray(voxels) if not isinstance(voxels, torch.Tensor) else voxels).float()
        return over_trials(voxels.to(self.device), average, lambda rows: self(((subject, rows),)))

    def null(self, subject: int) -> Condition:
        """The unconditional stream: the encoder's output for all-zero voxels, [1, …]."""
        if subject not in self.encoder.shapes.voxels:
            raise ConfigError(f"the encoder has no input layer for subject {subject}; it knows {self.encoder.subjects}")
        return self(((subject, torch.zeros(1, self.encoder.shapes.voxels[subject], device=self.device)),))


class TeacherCondition:
    """The oracle: the teacher's own feature levels of an image as the decoder's condition."""

    def __init__(self, level_dims: Sequence[int], level_tokens: int, device: str | torch.device = "cpu"):
        self.level_dims, self.level_tokens = tuple(level_dims), level_tokens
        self.device = torch.device(device)

    def __call__(self, levels: Sequence[torch.Tensor]) -> Condition:
        """The condition of M teacher levels [B, Q, D_m] (a feature cache's `get` output)."""
        levels = [level.to(self.device, torch.float32) for level in levels]
        return Condition(stack_levels(levels), levels[-1].mean(dim=1), levels[-1])

    def null(self, rows: int = 1) -> Condition:
        """The unconditional stream: all-zero features, [rows, …]."""
        zeros = [torch.zeros(rows, self.level_tokens, d, device=self.device) for d in self.level_dims]
        return self(zeros)
