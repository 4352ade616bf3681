"""One trial's beta → its reconstruction (single shot) and, over a candidate set, its retrieval top-5.

Retrieval follows the encoder evaluation's rule (metrics/encoder_eval.py): cosine between the encoder's projected
terminal output and the teacher's terminal level of each candidate image, embedded once at start-up.

Shape letters (docs/glossary.md): V voxels, N candidates, H/W pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from mindhier.data.image_tensors import uint8_to_unit
from mindhier.errors import ConfigError

RETRIEVAL_TOP = 5


@dataclass
class Decoded:
    image_HW3: np.ndarray  # uint8
    top_indices: list[int]  # candidate stimulus indices, best first
    top_scores: list[float]


def resolve_generator_run(model: Path) -> Path:
    """A generator run folder, or a `mindhier demo` folder (its coarse-to-fine generator)."""
    if (model / "pipeline.json").is_file():
        model = model / "generators" / "coarse_to_fine"
    if not model.is_dir():
        raise ConfigError(f"model run not found: {model}; pass a generator run or a `mindhier demo` output folder")
    return model


class TrialDecoder:
    def __init__(self, model: Path, subject: int, seed: int = 0, device: str = "cpu") -> None:
        from mindhier.sampling.reconstruct import Reconstructor

        self.reconstructor = Reconstructor.from_runs(resolve_generator_run(model), device=device)
        voxels = self.reconstructor.encoder.shapes.voxels
        if subject not in voxels:
            raise ConfigError(f"the model's encoder knows subjects {sorted(voxels)}, not {subject}; pass --subject")
        self.subject, self.n_voxels, self.seed = subject, int(voxels[subject]), seed
        self.candidates_N = np.zeros(0, dtype=np.int64)
        self._candidate_NF: torch.Tensor | None = None

    def set_candidates(self, indices_N: np.ndarray, images_NHW3: np.ndarray, batch: int = 64) -> None:
        teacher = self.reconstructor.teacher
        rows = []
        with torch.no_grad():
            for start in range(0, len(images_NHW3), batch):
                pixels = uint8_to_unit(images_NHW3[start : start + batch], self.reconstructor.device)
                rows.append(F.normalize(teacher(pixels)[-1].flatten(1).float(), dim=-1).cpu())
        self.candidates_N = np.asarray(indices_N, dtype=np.int64)
        self._candidate_NF = torch.cat(rows) if rows else None

    @torch.no_grad()
    def decode(self, beta_V: np.ndarray, key: int) -> Decoded:
        if beta_V.shape[-1] != self.n_voxels:
            raise ConfigError(
                f"a beta of {beta_V.shape[-1]} voxels, the encoder takes {self.n_voxels} for subject "
                f"{self.subject}; use the mask the model was trained with"
            )
        voxels = torch.from_numpy(np.asarray(beta_V, dtype=np.float32))[None]
        out = self.reconstructor.reconstruct(voxels, self.subject, seed=self.seed, keys=[key])
        top, scores = [], []
        if self._candidate_NF is not None:
            _, _, predicted = self.reconstructor.condition.of_voxels(voxels, self.subject)
            similarity = self._candidate_NF @ F.normalize(predicted.flatten(1).float().cpu(), dim=-1)[0]
            best = torch.topk(similarity, min(RETRIEVAL_TOP, len(similarity)))
            top = [int(self.candidates_N[i]) for i in best.indices]
            scores = [round(float(s), 4) for s in best.values]
        return Decoded(out.images_BHW3[0], top, scores)
