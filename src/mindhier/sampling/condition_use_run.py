"""Condition use of a trained generator run on a dataset split (`mindhier eval condition`): the run, its encoder and
tokenizer loaded, the split's brain inputs and teacher features scored with `metrics/condition_use.py`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from mindhier import run_layout
from mindhier.data.nsd import open_dataset
from mindhier.errors import ConfigError
from mindhier.fileio import write_json
from mindhier.metrics.condition_use import condition_use
from mindhier.models.brain_condition import TeacherCondition
from mindhier.models.scale_ar import ScaleAR
from mindhier.progress import report
from mindhier.sampling.reconstruct import Reconstructor, oracle_features


def measure_condition_use(
    generator_run,
    data_dir,
    subject: int | None = None,
    split: str = "val",
    inputs: tuple[str, ...] = ("brain", "teacher"),
    device: str | torch.device = "cpu",
    batch_size: int = 64,
    seed: int = 0,
    progress=None,
) -> dict[str, Any]:
    """Condition use of a trained generator run (with the encoder and tokenizer it names) on a dataset split, for
    brain inputs (the encoder on the split's voxels, repetitions averaged) and teacher inputs (the teacher's
    features of the split's images, what a perfect encoder would give). Checkpoints are chosen on `val`; the test
    split is for the final report only."""
    reconstructor = Reconstructor.from_runs(generator_run, device=device)
    model = getattr(reconstructor.decoder, "model", None)
    if not isinstance(model, ScaleAR):
        raise ConfigError(f"{generator_run} is not a scale-wise generator run; condition use is measured per scale")
    subject = subject if subject is not None else next(iter(reconstructor.encoder.shapes.voxels))
    with open_dataset(data_dir, subjects=[int(subject)]) as dataset:
        items = dataset.split(int(subject), split)
        images, voxels, indices = items.images(), items.voxels(), np.asarray(items.image_index_N)
    arms: dict[str, Any] = {}
    for done, name in enumerate(inputs):
        report(progress, "condition use", done, len(inputs))
        if name == "brain":
            condition = reconstructor.condition.of_voxels(voxels, int(subject), "voxels")
            null = reconstructor.null(int(subject))
        elif name == "teacher":
            teacher = TeacherCondition(reconstructor.condition.level_dims, reconstructor.encoder.shapes.queries, device)
            condition = teacher(oracle_features(reconstructor, data_dir).get(indices))
            null = reconstructor.null(int(subject))
        else:
            raise ConfigError(f"unknown condition input {name!r}; use brain and/or teacher")
        arms[name] = condition_use(model, reconstructor.tokenizer, condition, null, images, batch_size, seed)
    report(progress, "condition use", len(inputs), len(inputs))
    return {
        "generator": str(generator_run),
        "data": str(data_dir),
        "subject": int(subject),
        "split": split,
        "trained_on": reconstructor.trained_on,
        "routing": model.routing,
        "inputs": arms,
    }


def write_row_condition_use(
    reconstructor: Reconstructor,
    data_dir,
    recons_dir,
    subject: int,
    split: str = "test",
    condition: str = "brain",
    seed: int = 0,
) -> Path | None:
    """Beside a reconstruction set of a scale-wise generator (not a control): the decoder's condition use per scale
    on the split's images under the condition that row reconstructs from (the brain, or the teacher's features for
    the oracle row), `recons_dir/condition_use.json`, which the evaluation copies into `metrics.json`. It reads the
    split's images (their tokens are what is scored): a step of the pipeline after reconstruction, never part of
    it. Returns the file, or None for a decoder that is not scale-wise."""
    if not isinstance(getattr(reconstructor.decoder, "model", None), ScaleAR):
        return None
    with open_dataset(data_dir, subjects=[int(subject)]) as dataset:
        items = dataset.split(int(subject), split)
        images, voxels, indices = items.images(), items.voxels(), np.asarray(items.image_index_N)
    if condition == "teacher":
        teacher = TeacherCondition(
            reconstructor.condition.level_dims, reconstructor.encoder.shapes.queries, reconstructor.device
        )
        rows = teacher(oracle_features(reconstructor, data_dir).get(indices))
    else:
        rows = reconstructor.condition.of_voxels(voxels, int(subject), "voxels")
    record = condition_use(
        reconstructor.decoder.model, reconstructor.tokenizer, rows, reconstructor.null(int(subject)), images, seed=seed
    )
    path = Path(recons_dir) / run_layout.RECONS_CONDITION_USE
    write_json(path, {"condition": condition, **record})
    return path
