"""Where a run's teacher targets come from: the feature cache (`teacher.cache=true`, the default) or the teacher
itself, run on the fly inside the training step (`teacher.cache=false`, the `nsd-paper` default).

Both give the same targets (float16 values as float32; `data/online_targets.py`), behind one interface
(`TeacherTargets`), so the stages that align to the teacher — `train encoder`, `eval encoder`, `adapt`, the
teacher-conditioned generator — take either. The cache pays its disk once (1.6 MB per image at paper scale) and
then reads; on the fly pays the teacher's forward in every step and reads only the images.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from mindhier.config import TeacherConfig
from mindhier.data.feature_cache import build_feature_cache
from mindhier.data.nsd import NSDDataset
from mindhier.data.online_targets import OnlineTargets
from mindhier.data.target_lookup import TargetLookup
from mindhier.errors import ConfigError
from mindhier.progress import ProgressFn
from mindhier.teachers.base import Teacher, TeacherLevel


class TeacherTargets(Protocol):
    """The teacher's features by stimulus index (`TargetLookup` over the cache, or `OnlineTargets`)."""

    levels: tuple[TeacherLevel, ...]

    def get(self, images_N: np.ndarray) -> list[torch.Tensor]:
        """float32 [N, Q_m, D_m] per level, on the CPU, in the order of `images_N`."""
        ...

    def step_targets(self, images_N: np.ndarray) -> list[torch.Tensor]:
        """`get` for one training micro-batch, on whichever device it was computed (the teacher's, on the fly)."""
        ...

    def get_text(self, images_N: np.ndarray) -> torch.Tensor | None: ...

    @property
    def has_text(self) -> bool: ...

    @property
    def text_shape(self) -> tuple[int, int] | None: ...

    def record(self) -> dict[str, Any]: ...


def teacher_targets(
    cfg: TeacherConfig,
    data_dir: str | os.PathLike[str],
    dataset: NSDDataset,
    teacher: Teacher,
    *,
    features: str | os.PathLike[str] | None = None,
    progress: ProgressFn | None = None,
) -> TeacherTargets:
    """The targets `cfg.cache` asks for: the cache at `features` (default: under `data_dir`, built when missing,
    reused when its key matches), or the teacher on the fly."""
    if cfg.cache:
        return TargetLookup(build_feature_cache(data_dir, teacher, out=features, progress=progress))
    if features is not None:
        raise ConfigError(
            f"--features {Path(features)} names a feature cache, but teacher.cache=false runs the teacher on the fly;"
            " drop --features or set teacher.cache=true"
        )
    return OnlineTargets(dataset, teacher)
