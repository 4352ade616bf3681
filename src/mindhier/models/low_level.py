"""A low-level decoder: voxels → a blurry image by ridge regression, one per subject (`encoder.low_level_px`).

The encoder's route to the picture passes through the teacher's features, and on the embedded world those are much
harder to predict from the brain than the image's layout is (docs/method.md §5.2: a ridge regression from the same
voxels to a 32 × 32 image reaches PixCorr 0.60 on the validation split, the feature path 0.30). MindEye2 trains a
low-level branch for this reason and the paper's † rows borrow its images (§6.6). Ours is the simplest such branch:

    image = clamp((x − μ_x) · W + μ_y, 0, 1),   W = argmin ‖(X − μ_x) W − (Y − μ_y)‖² + λ‖W‖²

fitted in closed form on each subject's training trials (Y: the seen images at `px` × `px`, RGB in [0, 1]), with λ
chosen among `PENALTIES` by the mean per-image pixel correlation on the subject's **val** items. The sampler can
take the first scales' tokens from its image (`sampler.low_level_scales`, §6.3) — the brain's layout and colours
at the coarse scales, the generator's detail at the fine ones.

Shape letters (docs/glossary.md): N items, B inputs, V voxels, P = 3·px² pixel values.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mindhier.errors import ConfigError, WeightsError

PENALTIES = (1e2, 1e3, 3e3, 1e4, 3e4, 1e5)  # relative to nothing: voxels are z-scored per session


@dataclass(frozen=True)
class SubjectRidge:
    weight_VP: torch.Tensor  # float32
    voxel_mean_V: torch.Tensor
    pixel_mean_P: torch.Tensor
    penalty: float


@dataclass(frozen=True)
class LowLevelDecoder:
    px: int
    subjects: dict[int, SubjectRidge]

    def predict(self, voxels_BV: torch.Tensor, subject: int) -> torch.Tensor:
        """float32 [B, 3, px, px] in [0, 1]."""
        if subject not in self.subjects:
            raise ConfigError(
                f"the encoder's low-level decoder has no subject {subject} (it has {sorted(self.subjects)}); "
                "adapt or retrain the encoder for this subject"
            )
        ridge = self.subjects[subject]
        voxels_BV = torch.as_tensor(voxels_BV, dtype=torch.float32)
        if voxels_BV.shape[-1] != ridge.weight_VP.shape[0]:
            raise ConfigError(
                f"subject {subject}: got {voxels_BV.shape[-1]} voxels, the low-level decoder expects "
                f"{ridge.weight_VP.shape[0]}; pass data with the encoder run's voxels"
            )
        weight = ridge.weight_VP.to(voxels_BV.device)
        flat_BP = (voxels_BV - ridge.voxel_mean_V.to(voxels_BV.device)) @ weight + ridge.pixel_mean_P.to(weight.device)
        return flat_BP.clamp(0, 1).reshape(len(voxels_BV), self.px, self.px, 3).permute(0, 3, 1, 2).contiguous()

    def tensors(self) -> dict[str, torch.Tensor]:
        out = {"px": torch.tensor([self.px])}
        for s, ridge in self.subjects.items():
            out[f"subject{s}.weight"] = ridge.weight_VP.clone().contiguous()  # safetensors refuses shared storage
            out[f"subject{s}.voxel_mean"] = ridge.voxel_mean_V.clone().contiguous()
            out[f"subject{s}.pixel_mean"] = ridge.pixel_mean_P.clone().contiguous()
            out[f"subject{s}.penalty"] = torch.tensor([ridge.penalty], dtype=torch.float64)
        return out

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor], source: str) -> LowLevelDecoder:
        try:
            px = int(tensors["px"][0])
            subjects = sorted({int(k.split(".")[0].removeprefix("subject")) for k in tensors if k != "px"})
            ridges = {
                s: SubjectRidge(
                    tensors[f"subject{s}.weight"].float(),
                    tensors[f"subject{s}.voxel_mean"].float(),
                    tensors[f"subject{s}.pixel_mean"].float(),
                    float(tensors[f"subject{s}.penalty"][0]),
                )
                for s in subjects
            }
        except (KeyError, ValueError, IndexError) as exc:
            raise ConfigError(f"{source} is not a low-level decoder this version writes; retrain the encoder") from exc
        if not ridges or any(r.weight_VP.shape[1] != 3 * px * px for r in ridges.values()):
            raise ConfigError(f"{source} is not a low-level decoder this version writes; retrain the encoder")
        return cls(px, ridges)


def image_correlation(a_NP: torch.Tensor, b_NP: torch.Tensor) -> torch.Tensor:
    """Pearson correlation of every row pair (flattened images) [N]."""
    a = a_NP - a_NP.mean(1, keepdim=True)
    b = b_NP - b_NP.mean(1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp_min(1e-12)


def fit_subject_ridge(
    train_voxels_NV: torch.Tensor,
    train_pixels_NP: torch.Tensor,
    val_voxels_NV: torch.Tensor,
    val_pixels_NP: torch.Tensor,
    penalties: tuple[float, ...] = PENALTIES,
) -> tuple[SubjectRidge, dict[str, float]]:
    """Ridge weights for every penalty from one SVD (float64); the penalty with the best val correlation is kept.
    Returns the ridge and the val correlation of every penalty."""
    x = train_voxels_NV.double()
    voxel_mean, pixel_mean = x.mean(0), train_pixels_NP.double().mean(0)
    u, s, vh = torch.linalg.svd(x - voxel_mean, full_matrices=False)
    projected = u.T @ (train_pixels_NP.double() - pixel_mean)
    val_x = val_voxels_NV.double() - voxel_mean
    scores, best = {}, None
    for penalty in penalties:
        weight = vh.T @ ((s / (s * s + penalty))[:, None] * projected)
        predicted = (val_x @ weight + pixel_mean).clamp(0, 1)
        score = float(image_correlation(predicted, val_pixels_NP.double()).mean())
        scores[f"{penalty:g}"] = round(score, 4)
        if best is None or score > best[0]:
            best = (score, penalty, weight)
    assert best is not None
    ridge = SubjectRidge(best[2].float(), voxel_mean.float(), pixel_mean.float(), best[1])
    return ridge, scores


def pixels_of(images_NHW3: np.ndarray, px: int) -> torch.Tensor:
    """uint8 images → float [N, px·px·3] in [0, 1] (the layout `predict` reshapes)."""
    from mindhier.data.image_tensors import resize_uint8

    small = resize_uint8(images_NHW3, px)
    return torch.from_numpy(small.reshape(len(small), -1).astype(np.float32) / 255.0)


def save_low_level(path: str | Path, decoder: LowLevelDecoder) -> None:
    from mindhier.checkpoint import save_state  # safetensors: only where files are written (the GPU check needs none)

    save_state(path, decoder.tensors())


def load_low_level(path: str | Path) -> LowLevelDecoder:
    from mindhier.checkpoint import read_state_dict

    try:
        tensors = read_state_dict(path, "low-level decoder")
    except WeightsError as exc:
        raise ConfigError(f"cannot read the low-level decoder {path} ({exc}); retrain the encoder") from exc
    return LowLevelDecoder.from_tensors(tensors, str(path))
