"""`mindhier export`: a reconstruction folder in the forms other methods' evaluation code reads.

From one of our reconstruction folders (`image_{index:06d}.png` per test stimulus + `manifest.json` with the
subject and split, as `mindhier reconstruct` writes it), `export_reconstructions` writes one folder:

    <name>_all_recons.pt         float32 [N, 3, H, W] in [0, 1]: MindEye2's `*_all_recons.pt` (what
                                 `recon_inference.ipynb` saves and `final_evaluations.ipynb` loads); a plain
                                 `torch.save` of one tensor, so `torch.load(weights_only=True)` reads it
    <name>_all_blurryrecons.pt   float32 [N, 3, H, W]: a copy of the reconstructions; our model has no low-level
                                 branch, and the notebook's blend recons · 0.75 + blurry · 0.25 then returns them
    <name>_all_clipvoxels.pt     float16 NaN [N, 256, 1664] each (one value broadcast, so ~1 kB): our model predicts
    <name>_all_backbones.pt      no CLIP ViT-bigG tokens; the notebook's retrieval (cells 10-12) and UMAP (cells
    <name>_all_prior_out.pt      52-55) must be skipped
    <name>_all_predcaptions.pt   numpy str [N], empty strings: no captions; caption metrics (cells 37-50) skipped
    mindeye2_placeholders.json   per stand-in file: shape, dtype, contents, reason, the notebook cells that read it
    README_mindeye2.md           where the folder goes, how to start the notebook, which cells to run and to skip
    <name>_image_indices.npy     int64 [N]: the 0-based NSD stimulus index of each row
    png/nsdNNNNN.png             one 8-bit RGB PNG per image, NNNNN = the 1-based NSD 73k ID (index + 1)
    export_manifest.json         source folder, subject, split, N, H, W, sha256 of every file, what each file is

The `_all_*` files are every file MindEye2's `final_evaluations.ipynb` loads for a model (its cells 5 and 52;
`mindeye2_export.py` cites them and says why each stand-in holds what it holds). For the notebook the folder
must sit at `MindEyeV2/src/evals/<name>/` (`--out` there, or a symlink), and the notebook runs with
`--model_name=<name> --all_recons_path=evals/<name>/<name>_all_recons.pt`.

Row order: ascending stimulus index — the order of our test split (`data/nsd/dataset.py`: `numpy.unique` of
the trials' images) and of MindEye2's rows (`np.unique(test_images_idx)`), so row i of our tensor and of
theirs show the same image. Index base: MindEye2's behav column 0 and our `image_{index:06d}.png` count from
0; NSD's own files count from 1 (its `shared1000/sharedKKKK_nsdNNNNN.png`, nsd_expdesign's `sharedix`), so
the PNGs carry NSD's 1-based ID and the index file the 0-based index.

Values: every tensor value is exactly the PNG's uint8 value / 255 (float32), the conversion our evaluator
applies to PNGs, so `mindhier eval recons` scores the tensor and the PNG folder identically (bit for bit);
the images keep their size (MindEye2 saves 256 px, and its evaluation resizes to each network's input anyway).

The folder is built under a temporary sibling and published with one rename (`fileio.staged_directory`):
a bad input or a crash leaves nothing behind, and an existing folder is replaced only with `overwrite`.

Shape letters (docs/glossary.md): N images, H/W pixels, 3 RGB.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mindhier.errors import DataError
from mindhier.fileio import atomic_path, read_json, sha256_file, staged_directory, write_json
from mindhier.metrics.mindeye2_export import (
    PLACEHOLDERS_FILE,
    README_FILE,
    companion_names,
    write_mindeye2_companions,
)
from mindhier.metrics.recons_eval import RECONS_MANIFEST, load_images
from mindhier.progress import ProgressFn, report
from mindhier.provenance import provenance

EXPORT_MANIFEST = "export_manifest.json"
PNG_DIR = "png"
TENSOR_SUFFIX = "_all_recons.pt"  # MindEye2's: evals/<model>/<model>_all_recons.pt
INDICES_SUFFIX = "_image_indices.npy"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def nsd_png_name(index: int) -> str:
    """`nsdNNNNN.png` of a 0-based stimulus index: NSD's 1-based 73k ID, five digits as in NSD's file names."""
    return f"nsd{index + 1:05d}.png"


def tensor_name(name: str) -> str:
    return f"{name}{TENSOR_SUFFIX}"


def indices_name(name: str) -> str:
    return f"{name}{INDICES_SUFFIX}"


def export_reconstructions(
    recons_dir: str | Path,
    out: str | Path,
    name: str | None = None,
    overwrite: bool = False,
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Write `recons_dir`'s images as MindEye2's tensor, an index file and NSD-named PNGs into `out` (see the
    module docstring); returns the export manifest. `name` defaults to the folder's name."""
    recons_dir, out = Path(recons_dir), Path(out)
    name = recons_dir.resolve().name if name is None else name
    if not _NAME.fullmatch(name):
        raise DataError(f"--name {name!r} is not a plain file name; use letters, digits, '.', '_' or '-'")
    if not recons_dir.is_dir():
        raise DataError(f"reconstruction folder {recons_dir} not found; pass the --out folder of mindhier reconstruct")
    _refuse_overlap(recons_dir, out)
    manifest = read_json(recons_dir / RECONS_MANIFEST, "reconstruction manifest")
    if not isinstance(manifest, dict):
        raise DataError(f"{recons_dir / RECONS_MANIFEST} is not a JSON object; regenerate it with mindhier reconstruct")
    for key in ("subject", "split"):
        if manifest.get(key) is None:
            raise DataError(
                f"{recons_dir / RECONS_MANIFEST} names no {key}; add it (mindhier reconstruct writes subject and split)"
            )
    indices_N = _stimulus_indices(recons_dir, manifest)
    report(progress, "export reconstructions", 0, 2)
    images_NHW3 = load_images(recons_dir, indices_N)  # every listed image present, readable, one size
    report(progress, "export reconstructions", 1, 2)
    # the same uint8 → float conversion as the evaluator's (`metrics/image.py`), so the values are identical
    images_N3HW = torch.from_numpy(images_NHW3).permute(0, 3, 1, 2).float().div(255.0).contiguous()
    n, _, height, width = images_N3HW.shape
    with staged_directory(out, overwrite=overwrite) as staging:
        with atomic_path(staging / tensor_name(name)) as tmp:
            torch.save(images_N3HW, tmp)
        with atomic_path(staging / indices_name(name)) as tmp, open(tmp, "wb") as f:
            np.save(f, indices_N)
        mindeye2 = write_mindeye2_companions(staging, name, tensor_name(name), indices_name(name), images_N3HW)
        (staging / PNG_DIR).mkdir()
        for index, image_HW3 in zip(indices_N, images_NHW3, strict=True):
            _save_png(staging / PNG_DIR / nsd_png_name(int(index)), image_HW3)
        record = {
            "format": "mindhier export 2: MindEye2's all_recons tensor, the other files its final_evaluations.ipynb "
            "loads, NSD-named PNGs",
            "source": str(recons_dir.resolve()),
            "source_manifest_sha256": sha256_file(recons_dir / RECONS_MANIFEST),
            "subject": int(manifest["subject"]),
            "split": str(manifest["split"]),
            "n_images": int(n),
            "height": int(height),
            "width": int(width),
            "tensor_file": tensor_name(name),
            "indices_file": indices_name(name),
            "order": "rows in ascending stimulus index: our test split's order and MindEye2's np.unique order",
            "files": {
                tensor_name(name): f"float32 [{n}, 3, {height}, {width}] in [0, 1] (MindEye2's *_all_recons.pt): "
                "torch.save of one tensor, read with torch.load(weights_only=True); every value is the PNG's "
                "uint8 / 255",
                indices_name(name): f"int64 [{n}]: the 0-based NSD stimulus index (73k id − 1) of each tensor row",
                f"{PNG_DIR}/": "one 8-bit RGB PNG per image, nsdNNNNN.png with NNNNN the 1-based NSD 73k ID "
                "(index + 1, as NSD's shared1000 file names)",
                **{
                    file: f"{entry['dtype']} {entry['shape']}: {entry['contents']}"
                    for file, entry in mindeye2["files"].items()
                },
                PLACEHOLDERS_FILE: "per stand-in file above: shape, dtype, contents, reason, the notebook cells that "
                "read it; the cells to skip",
                README_FILE: "for MindEye2's final_evaluations.ipynb: where this folder goes, how to start the "
                "notebook, which cells to run and to skip",
            },
            "tensor_sha256": sha256_file(staging / tensor_name(name)),
            "sha256": {
                file: sha256_file(staging / file)
                for file in (tensor_name(name), indices_name(name), *companion_names(name))
            },
            "mindeye2": {key: mindeye2[key] for key in ("notebook", "folder", "all_recons_path", "skip_cells")},
            "stimulus_indices": [int(i) for i in indices_N],
            "protocol": manifest.get("protocol"),
            "provenance": provenance(),
        }
        write_json(staging / EXPORT_MANIFEST, record)
    report(progress, "export reconstructions", 2, 2)
    return record


def _stimulus_indices(recons_dir: Path, manifest: dict) -> np.ndarray:
    """int64 [N] in ascending order: the manifest's `stimulus_indices` (every one must have its image), or, for a
    folder whose manifest lists none, the indices of its `image_XXXXXX.png` files."""
    listed = manifest.get("stimulus_indices")
    if listed is None:
        found = [p.name for p in recons_dir.glob("image_*.png")]
        listed = [int(m.group(1)) for m in map(re.compile(r"image_(\d+)\.png").fullmatch, found) if m]
    if not listed:
        raise DataError(f"{recons_dir} holds no image_XXXXXX.png; reconstruct every test stimulus first")
    indices_N = np.asarray(listed)
    if indices_N.ndim != 1 or not np.issubdtype(indices_N.dtype, np.integer) or (indices_N < 0).any():
        raise DataError(
            f"{recons_dir / RECONS_MANIFEST} has stimulus_indices that are not non-negative integers; regenerate it"
        )
    if len(np.unique(indices_N)) != len(indices_N):
        raise DataError(f"{recons_dir / RECONS_MANIFEST} lists a stimulus index twice; regenerate it")
    return np.sort(indices_N).astype(np.int64)


def _refuse_overlap(recons_dir: Path, out: Path) -> None:
    """The export folder may neither be nor contain nor lie inside the folder it reads (`overwrite` would
    delete the source)."""
    source, target = recons_dir.resolve(), out.resolve()
    if source == target or source.is_relative_to(target) or target.is_relative_to(source):
        raise DataError(f"--out {out} overlaps the reconstruction folder {recons_dir}; choose an --out outside it")


def _save_png(path: Path, image_HW3: np.ndarray) -> None:
    from PIL import Image

    with atomic_path(path) as tmp:
        Image.fromarray(image_HW3).save(tmp, format="PNG")
