"""Brain predictions moment-matched to the teacher's features (`alignment.calibration = moments`).

Stage 1 aligns L2-normalised token sequences (docs/method.md §3.3), so an encoder's predicted levels have the
teacher's direction but no particular scale — on the embedded world they come out about ten times shorter than
the teacher's features, and shrunk towards their mean, as every regression from noisy data is. A generator
trained on the teacher's own features (the embedded prior) then reads them as a faint, generic image.

Calibration maps each predicted level, channel by channel, onto the teacher's statistics, as Brain-Diffuser
(Ozcelik & VanRullen 2023) does for its predicted CLIP features:

    x̃_m = (x_m − μ_pred,m,s) / σ_pred,m,s · σ_teacher,m + μ_teacher,m

μ, σ per level m and channel, over items and tokens: the teacher's from its features of the training images,
the prediction's from the encoder's outputs on each subject s's **val** items (held out of training, so their
spread is the one test inputs have — a model's predictions on its own training data are less shrunk). The
encoder run stores them (`condition_calibration.safetensors`); `BrainCondition` applies them to every level it
gives, the null condition included, and takes the pooled vector as the calibrated terminal level's token mean,
as the teacher's pooled vector is. The paper feeds e_m as it is (its generator is fine-tuned on the brain); the
embedded presets calibrate because their brain rows read the teacher-trained prior (docs/method.md §5.2).

Shape letters (docs/glossary.md): N items, B rows, M levels, Q tokens, D_m level width.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from mindhier.errors import ConfigError, WeightsError

EPS = 1e-6


@dataclass(frozen=True)
class Moments:
    """Per-channel mean and standard deviation of each level: M tensors [D_m] each."""

    mean: tuple[torch.Tensor, ...]
    std: tuple[torch.Tensor, ...]


class MomentSum:
    """Running per-channel sums over items and tokens, level by level (float64: a whole dataset's features)."""

    def __init__(self) -> None:
        self.count = 0
        self.sums: list[torch.Tensor] = []
        self.squares: list[torch.Tensor] = []

    def add(self, levels: Sequence[torch.Tensor]) -> None:
        """M tensors [N, Q, D_m]."""
        flat = [level.detach().double().cpu().flatten(0, -2) for level in levels]
        if not self.sums:
            self.sums = [torch.zeros(x.shape[-1], dtype=torch.float64) for x in flat]
            self.squares = [torch.zeros_like(s) for s in self.sums]
        for m, x in enumerate(flat):
            self.sums[m] += x.sum(0)
            self.squares[m] += (x * x).sum(0)
        self.count += flat[0].shape[0]

    def moments(self) -> Moments:
        if self.count < 2:
            raise ConfigError("calibration needs at least two items with features; give the data a val split")
        mean = [s / self.count for s in self.sums]
        var = [
            (q / self.count - mu * mu).clamp_min(0.0) * self.count / (self.count - 1)
            for q, mu in zip(self.squares, mean, strict=True)
        ]
        return Moments(tuple(m.float() for m in mean), tuple(v.sqrt().float() for v in var))


@dataclass(frozen=True)
class ConditionCalibration:
    teacher: Moments
    predicted: dict[int, Moments]  # per subject

    @property
    def level_dims(self) -> tuple[int, ...]:
        return tuple(int(m.shape[0]) for m in self.teacher.mean)

    def apply(self, levels_BMQD: torch.Tensor, subject: int) -> torch.Tensor:
        """Zero-padded levels [B, M, Q, D] of one subject's rows → the same, calibrated (padding stays zero)."""
        if subject not in self.predicted:
            raise ConfigError(
                f"the encoder's condition calibration has no statistics for subject {subject} "
                f"(it has {sorted(self.predicted)}); adapt or retrain the encoder for this subject"
            )
        pred = self.predicted[subject]
        out = levels_BMQD.clone()
        for m, d in enumerate(self.level_dims):
            dev = dict(device=out.device, dtype=out.dtype)
            scale = self.teacher.std[m].to(**dev) / (pred.std[m].to(**dev) + EPS)
            out[:, m, :, :d] = (out[:, m, :, :d] - pred.mean[m].to(**dev)) * scale + self.teacher.mean[m].to(**dev)
        return out

    def tensors(self) -> dict[str, torch.Tensor]:
        """Flat name → tensor, for a safetensors file."""
        out = {}
        for who, moments in [("teacher", self.teacher), *((f"subject{s}", m) for s, m in self.predicted.items())]:
            for m in range(len(moments.mean)):
                out[f"{who}.mean.{m}"] = moments.mean[m].clone().contiguous()  # safetensors refuses shared storage
                out[f"{who}.std.{m}"] = moments.std[m].clone().contiguous()
        return out

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor], source: str) -> ConditionCalibration:
        def moments(who: str) -> Moments:
            m = 0
            mean, std = [], []
            while f"{who}.mean.{m}" in tensors:
                mean.append(tensors[f"{who}.mean.{m}"].float())
                std.append(tensors[f"{who}.std.{m}"].float())
                m += 1
            return Moments(tuple(mean), tuple(std))

        teacher = moments("teacher")
        subjects = sorted({int(k.split(".")[0].removeprefix("subject")) for k in tensors if k.startswith("subject")})
        predicted = {s: moments(f"subject{s}") for s in subjects}
        dims = [tuple(x.shape) for x in teacher.mean]
        if not dims or any([tuple(x.shape) for x in p.mean] != dims for p in predicted.values()) or not predicted:
            raise ConfigError(f"{source} is not a condition calibration this version writes; retrain the encoder")
        return cls(teacher, predicted)


def fit_calibration(
    teacher_levels: Iterable[Sequence[torch.Tensor]],
    predicted_levels: dict[int, Iterable[Sequence[torch.Tensor]]],
) -> ConditionCalibration:
    """From chunks of the teacher's levels (M tensors [N, Q, D_m] each) and, per subject, chunks of the encoder's
    aligned predictions in the same layout."""
    teacher = MomentSum()
    for chunk in teacher_levels:
        teacher.add(chunk)
    predicted = {}
    for subject, chunks in predicted_levels.items():
        total = MomentSum()
        for chunk in chunks:
            total.add(chunk)
        predicted[subject] = total.moments()
    return ConditionCalibration(teacher.moments(), predicted)


def save_calibration(path: str | Path, calibration: ConditionCalibration) -> None:
    from mindhier.checkpoint import save_state  # safetensors: only where files are written (the GPU check needs none)

    save_state(path, calibration.tensors())


def load_calibration(path: str | Path) -> ConditionCalibration:
    from mindhier.checkpoint import read_state_dict

    try:
        tensors = read_state_dict(path, "condition calibration")
    except WeightsError as exc:
        raise ConfigError(f"cannot read the condition calibration {path} ({exc}); retrain the encoder") from exc
    return ConditionCalibration.from_tensors(tensors, str(path))
