"""Stage-1 data: brain responses per subject, paired with the teacher's cached features of the images.

Training items are single trials of the `train` split of every subject, pooled (a batch mixes subjects;
each subject's rows pass through its own input layer). `val` items are per-image averages. Teacher targets
come from the feature cache or the teacher on the fly (`data/teacher_targets.py`).

Shape letters (docs/glossary.md): N items, Q tokens, D teacher dim, U text tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mindhier.data.nsd import NSDDataset
from mindhier.data.subject_items import PooledBatch, SubjectItems, pooled_batch, subject_items
from mindhier.data.teacher_targets import TeacherTargets


@dataclass(frozen=True)
class EncoderBatch:
    rows: PooledBatch  # (subject, voxels) groups
    targets: list[torch.Tensor]  # per level [N, Q, D_m], rows in group order (on the teacher's device on the fly)
    text_NUD: torch.Tensor | None


@dataclass
class EncoderData:
    train: list[SubjectItems]
    val: list[SubjectItems]
    targets: TeacherTargets  # the feature cache's, or the teacher's on the fly

    @property
    def n_train(self) -> int:
        return sum(len(items) for items in self.train)

    def train_batch(self, pooled_N: np.ndarray) -> EncoderBatch:
        rows = pooled_batch(self.train, pooled_N)
        return EncoderBatch(rows, self.targets.step_targets(rows.images_N), self.targets.get_text(rows.images_N))


def load_encoder_data(dataset: NSDDataset, subjects: tuple[int, ...], targets: TeacherTargets) -> EncoderData:
    train = [subject_items(dataset, s, "train") for s in subjects]
    val = [subject_items(dataset, s, "val") for s in subjects]
    return EncoderData(train, val, targets)
