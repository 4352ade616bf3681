"""The simulated subject's encoding model on disk: the true model of the synthetic brain, saved beside the
dataset so that any image — a reconstruction — can be mapped to the voxel responses it would evoke.

`encoding_subjXX.safetensors` holds the subject's voxel parameters (ROI, pRFs, channel and semantic weights)
and its calibration (channel gains, deep-feature statistics, response scales); its metadata the scalar
settings the features need (retina side, feature grid, semantic network input side, CSS exponent, category
weight). `load_encoding_model` rebuilds the `SubjectModel`; `predicted_signal` runs it on images, computing
the stimulus features exactly as the simulator did (`compute_features`). Real NSD has no such file: there a
user-supplied encoding model stands in (`metrics/brain_correlation.py`).

Shape letters (docs/glossary.md): N images, V voxels, J categories.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from mindhier.config import SimulatorConfig
from mindhier.data.simulator.features import compute_features, lite2_semantic_fn
from mindhier.data.simulator.voxels import Calibration, SubjectModel
from mindhier.errors import DataError
from mindhier.fileio import atomic_path

_ARRAYS = ("roi_V", "prf_xy_V2", "prf_sd_V", "early_weights_VC", "mid_weights_VC", "semantic_weights_DV", "ncsnr_V")


def encoding_model_name(subject: int) -> str:
    return f"encoding_subj{subject:02d}.safetensors"


def save_encoding_model(root: Path, model: SubjectModel, sim: SimulatorConfig) -> str:
    tensors = {name: torch.from_numpy(np.ascontiguousarray(getattr(model, name))) for name in _ARRAYS}
    if model.category_weights_JV is not None:
        tensors["category_weights_JV"] = torch.from_numpy(np.ascontiguousarray(model.category_weights_JV))
    for field in fields(Calibration):
        tensors[f"calibration.{field.name}"] = getattr(model.calibration, field.name).contiguous()
    settings = {
        "subject": model.subject,
        "compressive_exponent": model.compressive_exponent,
        "category_weight": model.category_weight,
        "retina_px": sim.retina_px,
        "feature_grid": sim.feature_grid,
        "semantic_px": sim.semantic_px,
    }
    name = encoding_model_name(model.subject)
    with atomic_path(root / name) as tmp:
        # one metadata key: safetensors writes a metadata map in hash order, and same-seed datasets must be
        # byte-identical
        save_file(
            tensors, str(tmp), metadata={"settings": json.dumps({"format": "mindhier-encoding-model", **settings})}
        )
    return name


@dataclass(frozen=True)
class EncodingModel:
    model: SubjectModel
    retina_px: int
    feature_grid: int
    semantic_px: int

    def predicted_signal(self, images_NHWC: np.ndarray, categories_NJ: np.ndarray | None) -> np.ndarray:
        """The noise-free voxel signal [N, V] these images evoke (`categories_NJ`: what each shows, or None to
        leave out the category part of the semantic voxels)."""
        model = self.model
        if categories_NJ is None and model.category_weights_JV is not None:
            model = _without_categories(model)
        features = compute_features(
            images_NHWC, categories_NJ, self.retina_px, self.feature_grid, lite2_semantic_fn(self.semantic_px)
        )
        return model.signal(features).numpy()


def _without_categories(model: SubjectModel) -> SubjectModel:
    from dataclasses import replace

    return replace(model, category_weights_JV=None, category_weight=0.0)


def load_encoding_model(root: Path, subject: int) -> EncodingModel | None:
    """The subject's encoding model saved by the simulator, or None when the dataset has none (real NSD)."""
    path = Path(root) / encoding_model_name(subject)
    if not path.is_file():
        return None
    try:
        tensors = load_file(str(path))
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            settings = json.loads(f.metadata()["settings"])
    except Exception as err:  # safetensors raises its own error types
        raise DataError(f"cannot read the encoding model {path} ({err}); re-run `mindhier simulate`") from err
    calibration = Calibration(**{f.name: tensors[f"calibration.{f.name}"] for f in fields(Calibration)})
    category = tensors.get("category_weights_JV")
    model = SubjectModel(
        subject=settings["subject"],
        **{name: tensors[name].numpy() for name in _ARRAYS},
        category_weights_JV=None if category is None else category.numpy(),
        compressive_exponent=settings["compressive_exponent"],
        category_weight=settings["category_weight"],
        calibration=calibration,
    )
    return EncodingModel(model, settings["retina_px"], settings["feature_grid"], settings["semantic_px"])
