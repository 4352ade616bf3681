"""What a Stage-2 decoder is conditioned on while it trains: the brain (through the frozen encoder) or the
teacher's own features of the seen image (the oracle, and the pretraining of the embedded world's prior).

Both give, for a batch of pooled item indices, the condition (`models/brain_condition.py`: levels in the
teacher's space, pooled vector, terminal level) and the stimulus index of every row, with classifier-free-
guidance dropout applied per sample: a dropped brain sample has its voxels zeroed (its condition is the
encoder's null output), a dropped teacher sample has all-zero features (the teacher's null).

Shape letters (docs/glossary.md): N items, M levels, Q tokens per level, D_m level width.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

from mindhier.data.subject_items import PooledBatch, SubjectItems, pooled_batch
from mindhier.models.brain_condition import BrainCondition, Condition, TeacherCondition


class ConditionSource(Protocol):
    level_dims: tuple[int, ...]
    level_tokens: int
    pooled_width: int
    n_train: int
    train_images_N: np.ndarray  # the stimulus of every training item, in pooled order

    def batch(self, pooled_N: np.ndarray, keep_N: torch.Tensor) -> tuple[Condition, np.ndarray, np.ndarray]:
        """The condition of the items `pooled_N` with dropout `keep_N`, their stimuli, and the order of the rows:
        row j is item `pooled_N[order_N[j]]` (a brain batch groups its rows by subject)."""
        ...

    def val_batches(self, batch_size: int) -> Iterator[tuple[Condition, np.ndarray]]: ...

    def record(self) -> dict[str, Any]: ...


class FeatureLookup(Protocol):
    def get(self, images_N: np.ndarray) -> list[torch.Tensor]: ...


@dataclass
class BrainSource:
    """Single trials of every subject's `train` split; the frozen encoder gives the condition."""

    condition: BrainCondition
    train: list[SubjectItems]
    val: list[SubjectItems]

    @property
    def level_dims(self) -> tuple[int, ...]:
        return self.condition.level_dims

    @property
    def level_tokens(self) -> int:
        return self.condition.encoder.shapes.queries

    @property
    def pooled_width(self) -> int:
        return self.condition.encoder.shapes.level_dims[-1]

    @property
    def n_train(self) -> int:
        return sum(len(items) for items in self.train)

    @property
    def train_images_N(self) -> np.ndarray:
        return np.concatenate([items.images_N for items in self.train])

    def batch(self, pooled_N: np.ndarray, keep_N: torch.Tensor) -> tuple[Condition, np.ndarray, np.ndarray]:
        rows = pooled_batch(self.train, pooled_N)
        return with_dropout(self.condition, rows, keep_N[rows.order_N]), rows.images_N, np.asarray(rows.order_N)

    def val_batches(self, batch_size: int) -> Iterator[tuple[Condition, np.ndarray]]:
        for items in self.val:
            for start in range(0, len(items), batch_size):
                voxels = items.voxels_NV[start : start + batch_size].to(self.condition.device)
                yield self.condition([(items.subject, voxels)]), items.images_N[start : start + batch_size]

    def record(self) -> dict[str, Any]:
        return {"condition": "brain", "subjects": [items.subject for items in self.train]}


@dataclass
class TeacherSource:
    """Images with the teacher's features of each (the oracle condition)."""

    condition: TeacherCondition
    features: FeatureLookup  # stimulus index → M levels [n, Q, D_m]
    train_images_N: np.ndarray
    val_images_N: np.ndarray
    origin: str  # where the images come from, for the record

    @property
    def level_dims(self) -> tuple[int, ...]:
        return self.condition.level_dims

    @property
    def level_tokens(self) -> int:
        return self.condition.level_tokens

    @property
    def pooled_width(self) -> int:
        return self.condition.level_dims[-1]

    @property
    def n_train(self) -> int:
        return len(self.train_images_N)

    def batch(self, pooled_N: np.ndarray, keep_N: torch.Tensor) -> tuple[Condition, np.ndarray, np.ndarray]:
        images_N = self.train_images_N[pooled_N]
        keep = keep_N.to(self.condition.device, torch.float32)[:, None, None]
        levels = [level.to(self.condition.device) * keep for level in self.features.get(images_N)]
        return self.condition(levels), images_N, np.arange(len(pooled_N))

    def val_batches(self, batch_size: int) -> Iterator[tuple[Condition, np.ndarray]]:
        for start in range(0, len(self.val_images_N), batch_size):
            images_N = self.val_images_N[start : start + batch_size]
            yield self.condition(self.features.get(images_N)), images_N

    def record(self) -> dict[str, Any]:
        return {"condition": "teacher", "images": self.origin}


def teacher_source(
    features: FeatureLookup,
    level_dims: Sequence[int],
    level_tokens: int,
    train_images_N: np.ndarray,
    val_images_N: np.ndarray,
    origin: str,
    device: str | torch.device,
) -> TeacherSource:
    condition = TeacherCondition(level_dims, level_tokens, device)
    return TeacherSource(condition, features, np.asarray(train_images_N), np.asarray(val_images_N), origin)


def with_dropout(condition: BrainCondition, rows: PooledBatch, keep_N: torch.Tensor) -> Condition:
    """The brain condition of a batch (keep in its row order) whose dropped samples have zeroed voxels: their
    condition is the encoder's null output, the unconditional stream of guidance."""
    groups, start, device = [], 0, condition.device
    for subject, voxels in rows.groups:
        keep = keep_N[start : start + len(voxels)].to(device=device, dtype=voxels.dtype)
        groups.append((subject, voxels.to(device) * keep[:, None]))
        start += len(voxels)
    return condition(groups)


def terminal_level(levels_BMQD: torch.Tensor, level_dims: Sequence[int]) -> torch.Tensor:
    """The terminal level's real channels [B, Q, D_M] (the diffusion baseline's one static condition)."""
    return levels_BMQD[:, -1, :, : level_dims[-1]]
