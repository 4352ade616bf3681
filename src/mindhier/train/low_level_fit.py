"""The low-level decoder of an encoder run with `encoder.low_level_px > 0` (`models/low_level.py`): fitted in closed
form on each subject's training trials after the encoder has trained, its penalty chosen on the subject's val items
(its training trials again when it has no val split), and written (atomically, rank 0) before `train_summary.json`,
so a finished run always has it. It does not depend on the encoder's weights, only on the data.
"""

from __future__ import annotations

import numpy as np
import torch

from mindhier import run_layout
from mindhier.config import MindhierConfig
from mindhier.data.nsd import NSDDataset
from mindhier.models.low_level import LowLevelDecoder, fit_subject_ridge, pixels_of, save_low_level
from mindhier.train.encoder_data import EncoderData
from mindhier.train.session import TrainingSession


def write_low_level(
    run: TrainingSession, cfg: MindhierConfig, dataset: NSDDataset, data: EncoderData
) -> dict[str, dict[str, object]]:
    """Fit and write the run's low-level decoder when its config asks for one; returns, for the run's summary, each
    subject's penalty and val pixel correlation per penalty."""
    px = cfg.encoder.low_level_px
    if px == 0 or not run.world.is_main:
        return {}
    ridges, record = {}, {}
    for items, val in zip(data.train, data.val, strict=True):
        held_out = val if len(val) >= 2 else items
        ridge, scores = fit_subject_ridge(
            items.voxels_NV,
            _pixels(dataset, items.images_N, px),
            held_out.voxels_NV,
            _pixels(dataset, held_out.images_N, px),
        )
        ridges[items.subject] = ridge
        record[str(items.subject)] = {
            "penalty": ridge.penalty,
            "chosen_on": "val" if held_out is val else "train",
            "pixel_correlation": scores,
        }
    save_low_level(run.run_dir / run_layout.LOW_LEVEL, LowLevelDecoder(px, ridges))
    return record


def _pixels(dataset: NSDDataset, images_N: np.ndarray, px: int, chunk: int = 512) -> torch.Tensor:
    """The stimuli at px × px, read a chunk at a time (NSD's are 425 px)."""
    return torch.cat(
        [pixels_of(dataset.images.load(images_N[i : i + chunk]), px) for i in range(0, len(images_N), chunk)]
    )
