"""The other files MindEye2's `final_evaluations.ipynb` loads beside a model's reconstructions, for a model that
has nothing but reconstructions.

Read from MedARC-AI/MindEyeV2 at commit c1847188 (`src/final_evaluations.ipynb`; "cell k" counts every cell of
the .ipynb from 0). For a model NAME the notebook's cell 5 loads, each with a bare `torch.load`, from
`evals/NAME/`: `NAME_all_clipvoxels.pt`, `NAME_all_blurryrecons.pt` and `NAME_all_predcaptions.pt` (the
reconstructions come from `--all_recons_path`, `recons_export.py` writes them); its UMAP cell 52 also loads
`NAME_all_backbones.pt` and `NAME_all_prior_out.pt`. What MindEye2's `recon_inference.ipynb` saves there, and
what we write instead:

    NAME_all_blurryrecons.pt  theirs: float32 [N, 3, 256, 256] in [0, 1], the low-level branch's images. Cell 7
                              resizes it to 256 px and, because cell 5 fixes the suffix `_all_enhancedrecons`,
                              always blends `recons · 0.75 + blurry · 0.25`. Ours: a copy of the reconstructions
                              (same tensor, bit for bit), so the blend returns our reconstructions and the
                              low-level metrics score them alone. Our model has no low-level branch, and a blurred
                              or downscaled copy would be a second image it never produced.
    NAME_all_clipvoxels.pt    theirs: [N, 256, 1664], the retrieval head's CLIP ViT-bigG/14 tokens (float16: the
    NAME_all_backbones.pt     output of linear layers run under autocast(float16), kept as is); the backbone and
    NAME_all_prior_out.pt     the diffusion prior's output have the same shape. Cell 11 (retrieval) compares
                              clipvoxels with the ViT-bigG tokens of the true images; cells 52-55 (UMAP) plot all
                              three. Ours: float16 NaN of that shape, stored as one value broadcast over it
                              (stride 0, so the file is about 1 kB and loads as a full-shape tensor). Our model
                              predicts no ViT-bigG tokens, so cells 10-12 and 52-55 must be skipped. NaN rather
                              than zeros, so the values read as "no prediction"; cell 11 still prints a number for
                              them (its argsort ranks NaN last: about 1 / 300 correct), which measures nothing.
    NAME_all_predcaptions.pt  theirs: a numpy array of N str (`np.hstack` of the GIT captions, dtype `<U…`). Ours:
                              the same container holding N empty strings; we generate no captions, so the
                              caption metrics (cells 37-50) must be skipped. Cell 8 uses the captions only as
                              figure titles.

`mindeye2_placeholders.json` records this per file (shape, dtype, contents, reason, the cells that read it) and
`README_mindeye2.md` tells which cells to run and which to skip.

Loading with torch ≥ 2.6: a bare `torch.load` defaults to `weights_only=True`, which loads every tensor here but
refuses any pickled numpy array, MindEye2's own predcaptions file included; read that one with
`weights_only=False` (a plain numpy str array, no code) or inside `torch.serialization.safe_globals` naming
numpy's `_reconstruct`, `ndarray`, `dtype` and `dtypes.StrDType`. Written under numpy 2, it unpickles under numpy
1.26 too.

Shape letters (docs/glossary.md): N images, 3 RGB, H/W pixels, Q tokens (CLIP ViT-bigG's 256), D width (1664).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from mindhier.fileio import atomic_path, write_json

NOTEBOOK = "MedARC-AI/MindEyeV2 src/final_evaluations.ipynb at commit c1847188200e075b960ad6b87333e51ea17be1b1"
BLURRY_SUFFIX = "_all_blurryrecons.pt"
CLIPVOXELS_SUFFIX = "_all_clipvoxels.pt"
BACKBONES_SUFFIX = "_all_backbones.pt"
PRIOR_OUT_SUFFIX = "_all_prior_out.pt"
PREDCAPTIONS_SUFFIX = "_all_predcaptions.pt"
PLACEHOLDERS_FILE = "mindeye2_placeholders.json"
README_FILE = "README_mindeye2.md"
CLIP_TOKENS_QD = (256, 1664)  # ViT-bigG/14's tokens × width: the notebook's clip_seq_dim, clip_emb_dim (cell 10)

# the notebook's cells (0-based) that read files we cannot fill, and what follows for each
RETRIEVAL_CELLS = "10-12"  # ViT-bigG image embedder, forward / backward retrieval, its figure
CAPTION_CELLS = "37-50"  # METEOR, ROUGE, sentence-transformer and CLIP-B/L caption similarity, their table
UMAP_CELLS = "52-55"  # UMAP of clipvoxels, prior_out and backbones against the images' ViT-bigG tokens
_TOKEN_FILES = {
    CLIPVOXELS_SUFFIX: ("the retrieval head's CLIP ViT-bigG/14 tokens", f"{RETRIEVAL_CELLS} and {UMAP_CELLS}"),
    BACKBONES_SUFFIX: ("the MLP backbone's output (the diffusion prior's input)", UMAP_CELLS),
    PRIOR_OUT_SUFFIX: ("the diffusion prior's predicted ViT-bigG/14 tokens", UMAP_CELLS),
}


def companion_names(name: str) -> list[str]:
    """Every file `write_mindeye2_companions` writes for model `name`, in the order it writes them."""
    suffixes = [BLURRY_SUFFIX, *_TOKEN_FILES, PREDCAPTIONS_SUFFIX]
    return [f"{name}{suffix}" for suffix in suffixes] + [PLACEHOLDERS_FILE, README_FILE]


def write_mindeye2_companions(
    folder: Path, name: str, recons_name: str, indices_name: str, images_N3HW: torch.Tensor
) -> dict[str, Any]:
    """Write into `folder` the files the notebook loads for model `name` beside the reconstructions (saved there
    as `recons_name`, their stimulus indices as `indices_name`; `images_N3HW` float32 in [0, 1]), the sidecar and
    the README (see the module docstring). Returns the sidecar's record."""
    n = len(images_N3HW)
    with atomic_path(folder / f"{name}{BLURRY_SUFFIX}") as tmp:
        torch.save(images_N3HW, tmp)
    for suffix in _TOKEN_FILES:
        with atomic_path(folder / f"{name}{suffix}") as tmp:
            torch.save(no_tokens_NQD(n), tmp)
    with atomic_path(folder / f"{name}{PREDCAPTIONS_SUFFIX}") as tmp:
        torch.save(np.full(n, "", dtype="<U1"), tmp)
    record = _placeholders_record(name, recons_name, images_N3HW)
    write_json(folder / PLACEHOLDERS_FILE, record)
    with atomic_path(folder / README_FILE) as tmp:
        tmp.write_text(_readme(name, recons_name, indices_name, n))
    return record


def no_tokens_NQD(n: int) -> torch.Tensor:
    """float16 NaN [n, 256, 1664] backed by one element (stride 0): a full-shape stand-in that saves in ~1 kB."""
    return torch.full((1, 1, 1), float("nan"), dtype=torch.float16).expand(n, *CLIP_TOKENS_QD)


def _placeholders_record(name: str, recons_name: str, images_N3HW: torch.Tensor) -> dict[str, Any]:
    n, _, height, width = images_N3HW.shape
    tokens_shape = [n, *CLIP_TOKENS_QD]
    files: dict[str, Any] = {
        f"{name}{BLURRY_SUFFIX}": {
            "shape": [n, 3, height, width],
            "dtype": "float32",
            "contents": f"a copy of {recons_name} (bit for bit)",
            "reason": "our model has no low-level (blurry) branch; cell 7 always blends recons * 0.75 + "
            "blurryrecons * 0.25, and with a copy the blend returns our reconstructions, so the low-level "
            "metrics score them alone",
            "notebook_cells": "5 (load), 7 (resize, blend)",
            "skip": False,
        },
    }
    for suffix, (theirs, cells) in _TOKEN_FILES.items():
        files[f"{name}{suffix}"] = {
            "shape": tokens_shape,
            "dtype": "float16",
            "contents": "NaN everywhere (one value broadcast over the shape, stride 0)",
            "reason": f"MindEye2's file holds {theirs}; our model predicts no CLIP ViT-bigG tokens",
            "notebook_cells": cells,
            "skip": True,
        }
    files[f"{name}{PREDCAPTIONS_SUFFIX}"] = {
        "shape": [n],
        "dtype": "numpy <U1 (str)",
        "contents": "empty strings",
        "reason": "MindEye2's file holds GIT captions decoded from its predicted tokens; our model generates no "
        "captions",
        "notebook_cells": f"5 (load), 8 (figure titles), {CAPTION_CELLS} (caption metrics)",
        "skip": True,
    }
    return {
        "notebook": NOTEBOOK,
        "model_name": name,
        "folder": f"evals/{name}/",  # the notebook reads evals/{model_name}/ from MindEyeV2/src, where it runs
        "all_recons_path": f"evals/{name}/{recons_name}",
        "skip_cells": {
            RETRIEVAL_CELLS: "retrieval: no CLIP ViT-bigG tokens; set percent_correct_fwd = percent_correct_bwd = "
            "float('nan') instead, which cell 35's table reads",
            CAPTION_CELLS: "caption metrics: no captions",
            UMAP_CELLS: "UMAP: no CLIP ViT-bigG tokens, backbone or prior output",
        },
        "files": files,
        "loading": "torch >= 2.6 loads the tensors with a bare torch.load (weights_only=True); the predcaptions "
        "numpy array needs weights_only=False or torch.serialization.safe_globals([numpy's _reconstruct, ndarray, "
        "dtype, dtypes.StrDType]), as MindEye2's own file does",
    }


def _readme(name: str, recons_name: str, indices_name: str, n: int) -> str:
    return f"""# {name}: for MindEye2's final_evaluations.ipynb

Read against {NOTEBOOK}; cell numbers count every cell of the .ipynb from 0.

Place this folder at `MindEyeV2/src/evals/{name}/` (copy or symlink; the folder's name must be `{name}`), put
MindEye2's ground truth beside it (`evals/all_images.pt`, `evals/all_captions.pt`), and start the notebook with

    --model_name={name} --all_recons_path=evals/{name}/{recons_name} --subj=S

(when run interactively, set these in cell 1, which otherwise points at `*_all_enhancedrecons.pt`).
The {n} rows follow ascending NSD stimulus index, as MindEye2's `np.unique(test_images_idx)`, the row order of
`all_images.pt`; `{indices_name}` holds the 0-based index of each row: check it equals
`np.unique(test_images_idx)` (cell 31) before trusting any score.

Run: cells 0-2, 4, 5, 7, 8, 14-28 (two-way identification, PixCorr, SSIM, AlexNet, InceptionV3, CLIP, EffNet-B,
SwAV), 30-34 (brain correlation) and 35 (the table).

Skip:
- cells {RETRIEVAL_CELLS} (retrieval): our model predicts no CLIP ViT-bigG tokens; `{name}_all_clipvoxels.pt` is
  NaN. Set `percent_correct_fwd = percent_correct_bwd = float('nan')` before cell 35, whose table reads them.
- cells {CAPTION_CELLS} (caption metrics): our model generates no captions; `{name}_all_predcaptions.pt` holds
  empty strings.
- cells {UMAP_CELLS} (UMAP): `{name}_all_backbones.pt` and `{name}_all_prior_out.pt` are NaN as well.

Cell 7 blends `all_recons * .75 + all_blurryrecons * .25`; `{name}_all_blurryrecons.pt` is a copy of the
reconstructions (our model has no low-level branch), so the blend leaves them as they are and every image metric
scores our reconstructions alone. Cell 35 names its table `{name}_all_enhancedrecons.csv`: the suffix is fixed
in cell 5; our images are not refined.

Under the notebook's pinned torch 2.1 every file loads as it is. From torch 2.6 on, `torch.load` defaults to
`weights_only=True`: the tensors still load, but cell 5's load of the predcaptions file, a numpy array like
MindEye2's own, fails; load that one inside `torch.serialization.safe_globals([...])` naming numpy's
`_reconstruct`, `ndarray`, `dtype` and `dtypes.StrDType`, which admits a numpy string array and nothing else
(`weights_only=False` would unpickle anything: use it only on a file you made).

`{PLACEHOLDERS_FILE}` records, per file, its shape, dtype, contents and the reason.
"""
