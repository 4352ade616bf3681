"""The last step of an encoder run with `alignment.calibration = moments`: fit the condition calibration
(`models/condition_calibration.py`) with the weights the run publishes, and write it beside them.

The teacher's statistics come from its features of the training images, the predictions' from the encoder's
outputs on each subject's val items (its training trials when it has no val split; the summary says which).
Written (atomically, rank 0) before `train_summary.json`, so a finished run
always has it; a resumed run that had finished its steps fits it again from the same weights.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from mindhier import run_layout
from mindhier.checkpoint import load_weights
from mindhier.config import MindhierConfig
from mindhier.models.brain_condition import aligned_levels
from mindhier.models.brain_encoder import BrainEncoder, EncoderShapes, encode_in_batches
from mindhier.models.condition_calibration import fit_calibration, save_calibration
from mindhier.train.encoder_data import EncoderData
from mindhier.train.session import TrainingSession

CHUNK = 512  # images whose features are read at once


def write_calibration(
    run: TrainingSession, cfg: MindhierConfig, shapes: EncoderShapes, data: EncoderData
) -> dict[str, dict[str, int | str]]:
    """Fit and write the run's calibration when its config asks for one (rank 0; the others skip); returns, for the
    run's summary, which items gave each subject's prediction statistics."""
    if cfg.alignment.calibration == "none":
        return {}
    # each subject's val items; a subject without a val split (data.val_fraction=0) falls back to its training
    # trials, whose predictions the encoder has fitted (less shrunk than a test input's): said in the summary
    sources, used = {}, {}
    for items, val in zip(data.train, data.val, strict=True):
        sources[items.subject] = val if len(val) >= 2 else items
        used[str(items.subject)] = {"items": "val" if len(val) >= 2 else "train", "n": len(sources[items.subject])}
    if not run.keeper.has_best:  # no validation score: the final weights are the published ones
        run.save_weights(run_layout.weights_file(run.kind), run.total_steps)
    if not run.world.is_main:
        return used
    model = BrainEncoder(cfg.encoder, shapes)
    load_weights(run.run_dir / run_layout.weights_file(run.kind), model)
    model.to(run.world.device).eval()
    supervision = cfg.alignment.supervision
    images_N = np.unique(np.concatenate([items.images_N for items in data.train]))

    def teacher_chunks() -> Iterator[list[torch.Tensor]]:
        for start in range(0, len(images_N), CHUNK):
            levels = data.targets.get(images_N[start : start + CHUNK])
            yield [levels[-1]] * len(levels) if supervision == "single" else levels

    def predicted_chunks(items) -> Iterator[list[torch.Tensor]]:
        with torch.no_grad():
            out = encode_in_batches(model, items.voxels_NV, items.subject, device=run.world.device)
        yield aligned_levels(out, supervision)

    calibration = fit_calibration(teacher_chunks(), {s: predicted_chunks(items) for s, items in sources.items()})
    save_calibration(run.run_dir / run_layout.CONDITION_CALIBRATION, calibration)
    return used
