"""Teacher targets computed on the fly: the frozen teacher runs inside the training step (`teacher.cache=false`).

At paper scale the feature cache (`data/feature_cache.py`) holds CLIP ViT-L/14's four levels for every stimulus:
4 × 257 × 768 float16 values, 1.6 MB per image, ≈ 60 GB for the ~37,000 stimuli of four subjects, and a
training step at global batch 512 reads ≈ 0.8 GB of it. MindEye2 and the authors' code instead run the teacher on
the training GPU, batched with the step. `OnlineTargets` does that with the same interface as the cache's
`TargetLookup` (`get`, `get_text`, `levels`), so the training loop does not know which one it holds:

* the images of the requested stimuli are read from the dataset's image store (0.15–0.3 MB each),
* the teacher runs without gradients on its device (CUDA: under bf16 autocast, as the recipe's GPUs run it),
* the outputs are rounded to the cache's storage dtype (float16) and returned as float32, so on a CPU, where the
  teacher computes each image independently of its batch, the targets equal the cache's bit for bit (tested:
  `tests/train/test_teacher_on_the_fly.py`, the same loss curve and weights on 1 and 2 processes).

Shape letters (docs/glossary.md): N images, Q tokens, D teacher dim, U text tokens, H/W pixels.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

import numpy as np
import torch

from mindhier.data.feature_cache import STORAGE_DTYPE
from mindhier.data.feature_fingerprint import canonical_json, referenced_stimuli
from mindhier.data.nsd import NSDDataset
from mindhier.errors import DataError
from mindhier.teachers.base import Teacher, TeacherLevel

DEFAULT_BATCH = 64  # images per teacher call when more are asked for at once (evaluation sets)


class OnlineTargets:
    """The teacher's features of any stimuli of `dataset`, computed when asked (see the module doc)."""

    def __init__(self, dataset: NSDDataset, teacher: Teacher, batch_size: int = DEFAULT_BATCH):
        if batch_size < 1:
            raise DataError(f"batch_size must be positive, got {batch_size}; pass a positive value")
        self.dataset, self.teacher, self.batch_size = dataset, teacher, batch_size
        self.levels: tuple[TeacherLevel, ...] = tuple(teacher.levels)
        self.identity = json.loads(canonical_json(teacher.describe()))  # as the cache's meta.json records it
        self._text_shape: tuple[int, int] | None = None
        if teacher.has_text:
            captions = dataset.captions(referenced_stimuli(dataset))
            if any(captions):  # as the cache decides: no caption file, no text
                probe_1UD = teacher.encode_text(captions[:1])
                self._text_shape = (int(probe_1UD.shape[1]), int(probe_1UD.shape[2]))

    @property
    def has_text(self) -> bool:
        return self._text_shape is not None

    @property
    def text_shape(self) -> tuple[int, int] | None:
        """(U, D_text) of the caption features, None without text."""
        return self._text_shape

    def get(self, images_N: np.ndarray) -> list[torch.Tensor]:
        """float32 [N, Q_m, D_m] per level on the CPU (as the cache gives them), in the order of `images_N` (repeats
        allowed), computed `batch_size` images at a time."""
        images_N = np.asarray(images_N, dtype=np.int64).reshape(-1)
        chunks = [
            [level.cpu() for level in self._levels(images_N[b : b + self.batch_size])]
            for b in range(0, len(images_N), self.batch_size)
        ]
        if not chunks:
            return [torch.empty((0, level.tokens, level.dim)) for level in self.levels]
        return [torch.cat(parts) for parts in zip(*chunks, strict=True)]

    def step_targets(self, images_N: np.ndarray) -> list[torch.Tensor]:
        """`get` for a training step's micro-batch: one teacher call, the results left on the teacher's device."""
        return self._levels(np.asarray(images_N, dtype=np.int64).reshape(-1))

    def get_text(self, images_N: np.ndarray) -> torch.Tensor | None:
        """Caption features [N, U, D_text] of the stimuli's first captions, None without text."""
        if not self.has_text:
            return None
        captions = self.dataset.captions(np.asarray(images_N, dtype=np.int64))
        with self._autocast():
            return _as_stored(self.teacher.encode_text(captions), f"{self.teacher.name} text").cpu()

    def record(self) -> dict[str, Any]:
        """The run's `features.json`: no cache folder, the teacher's identity (what `eval encoder` compares)."""
        return {"path": None, "key": None, "teacher": self.identity, "on_the_fly": True}

    def _levels(self, batch_N: np.ndarray) -> list[torch.Tensor]:
        images_NCHW = torch.from_numpy(self.dataset.images.load(batch_N)).permute(0, 3, 1, 2).float() / 255.0
        with self._autocast():
            outputs = self.teacher(images_NCHW)
        if len(outputs) != len(self.levels):
            raise RuntimeError(f"teacher {self.teacher.name} returned {len(outputs)} levels, not {len(self.levels)}")
        return [_as_stored(out_NQD, f"{self.teacher.name} level {m}") for m, out_NQD in enumerate(outputs, start=1)]

    def _autocast(self):
        device = _device_of(self.teacher)
        if device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()  # CPU: float32, so the targets match the cache's exactly


def _as_stored(x: torch.Tensor, what: str) -> torch.Tensor:
    """The value the cache would hold (float16), as float32, on x's device."""
    stored = x.detach().to(STORAGE_DTYPE)
    if not torch.isfinite(stored).all():
        raise DataError(f"{what} features are not finite in float16 (overflow or NaN); check the teacher's weights")
    return stored.float()


def _device_of(teacher: Teacher) -> torch.device:
    model = getattr(teacher, "model", None)
    parameter = next(model.parameters(), None) if model is not None else None
    return parameter.device if parameter is not None else torch.device("cpu")
