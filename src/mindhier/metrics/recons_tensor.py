"""Another method's reconstructions as one tensor file, read for `mindhier eval recons --recons X.pt`.

The field's peers hand their reconstructions over as MindEye2 does: `torch.save` of one tensor
`<model>_all_recons.pt`, float32 [N, 3, H, W] in [0, 1], row i the i-th test image in ascending NSD index
(MindEye2's `np.unique(test_images_idx)` in `recon_inference.ipynb`, read back by `final_evaluations.ipynb`;
the order of our `test` split, `data/nsd/dataset.py`). `mindhier export` writes ours in that form
(`metrics/recons_export.py`).

What is accepted, and how it is scored:

* the file is read with `torch.load(weights_only=True)` only (never unpickling code) and must hold one tensor
  [N, 3, H, W] (channels first, RGB);
* float tensors (any float dtype, converted to float32) must be finite and in [0, 1]; values outside by at
  most `RANGE_TOLERANCE` (floating-point rounding of a resize, e.g. 1.0000001) are clamped and counted;
* uint8 tensors are 8-bit levels 0..255 and are divided by 255;
* a tensor whose every value is an 8-bit level (v == round(255 v) / 255 in float32, as every exported one is)
  is scored as the uint8 images it holds, through exactly the path of a PNG folder, so the scores equal those
  of the PNGs; any other float tensor is scored as given (no quantisation), except by the simulator's
  encoding model (brain correlation), which reads 8-bit images: it sees round(255 v).

An optional index file (`.npy` int array, or `.json`: a list, or a record with `stimulus_indices` such as
`export_manifest.json`) is compared with the split's order.

Shape letters (docs/glossary.md): N images, H/W pixels, 3 RGB.
"""

from __future__ import annotations

import json
import pickle
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mindhier.errors import DataError
from mindhier.fileio import sha256_file

RANGE_TOLERANCE = 1e-3  # a quarter of an 8-bit level: rounding of a resize of clamped images, never a scale error
_REFUSED_GLOBAL = re.compile(r"Unsupported global: GLOBAL (\S+)")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # torch colours some of its messages
FORMAT_HINT = "torch.save one tensor [N, 3, H, W], float in [0, 1] or uint8 (MindEye2's *_all_recons.pt)"


@dataclass(frozen=True)
class ReconsTensor:
    """A checked reconstruction tensor: `images` is uint8 [N, H, W, 3] when every value is an 8-bit level
    (scored as PNGs would be), else float32 [N, 3, H, W] in [0, 1] (scored as given)."""

    images: np.ndarray | torch.Tensor
    source: dict[str, Any]  # path, sha256, dtype, shape, how its values are scored: for the metrics record

    def __len__(self) -> int:
        return len(self.images)

    def as_uint8_NHWC(self) -> np.ndarray:
        """The images as 8-bit RGB (rounded when they are float), for what reads 8-bit images only."""
        if isinstance(self.images, np.ndarray):
            return self.images
        levels_N3HW = torch.round(self.images * 255).to(torch.uint8)
        return levels_N3HW.permute(0, 2, 3, 1).contiguous().numpy()  # (N, H, W, 3)


def read_recons_tensor(path: str | Path) -> ReconsTensor:
    """Load and check a reconstruction tensor file (see the module docstring); a bad file is one `DataError` line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"reconstruction tensor {path} not found; pass a folder or a tensor file ({FORMAT_HINT})")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types, often over several lines
        refused = _REFUSED_GLOBAL.search(str(err)) if isinstance(err, pickle.UnpicklingError) else None
        if refused is not None:  # weights_only refused an object
            raise DataError(
                f"{path} holds a Python object ({refused.group(1)}), which is never unpickled here; save a tensor "
                f"(torch.from_numpy for a numpy array): {FORMAT_HINT}"
            ) from err
        reason = _ANSI.sub("", (str(err).strip().splitlines() or [type(err).__name__])[0])[:80]
        raise DataError(f"cannot read {path}: not a torch.save file, or truncated ({reason}); {FORMAT_HINT}") from err
    if not isinstance(loaded, torch.Tensor):
        raise DataError(f"{path} holds a {type(loaded).__name__}, not a tensor; {FORMAT_HINT}")
    values_N3HW = loaded.detach()
    shape = tuple(values_N3HW.shape)
    if values_N3HW.ndim != 4 or shape[1] != 3:
        hint = " (channels last? save x.permute(0, 3, 1, 2))" if values_N3HW.ndim == 4 and shape[-1] == 3 else ""
        raise DataError(f"{path} has shape {list(shape)}; expected [N, 3, H, W] (RGB, channels first){hint}")
    if shape[0] < 2 or shape[2] < 1 or shape[3] < 1:
        raise DataError(f"{path} has shape {list(shape)}; it needs at least 2 images of at least 1 × 1 px")
    source: dict[str, Any] = {
        "kind": "tensor",
        "path": str(path.resolve()),
        "sha256": sha256_file(path),
        "dtype": str(values_N3HW.dtype).removeprefix("torch."),
        "shape": list(shape),
        "protocol": "external: unknown (a tensor file, no manifest)",
    }
    if values_N3HW.dtype == torch.uint8:
        source["values"] = "uint8 0..255, divided by 255; scored as 8-bit images, exactly as PNGs"
        return ReconsTensor(values_N3HW.permute(0, 2, 3, 1).contiguous().numpy(), source)  # (N, H, W, 3)
    if not values_N3HW.is_floating_point():
        raise DataError(
            f"{path} holds {source['dtype']} values; expected float in [0, 1] or uint8 0..255 (convert with x.float())"
        )
    values_N3HW = values_N3HW.float().contiguous()
    finite = torch.isfinite(values_N3HW)
    if not bool(finite.all()):
        bad = int((~finite).sum())
        first = int((~finite).flatten(1).any(1).nonzero()[0])
        raise DataError(f"{path} has {bad} NaN or infinite values (first in image {first}); fix or regenerate them")
    low, high = float(values_N3HW.min()), float(values_N3HW.max())
    if low < -RANGE_TOLERANCE or high > 1 + RANGE_TOLERANCE:
        raise DataError(
            f"{path} has values in [{low:.4g}, {high:.4g}], outside [0, 1]; save images in [0, 1] "
            "(from [-1, 1]: (x + 1) / 2; from 0..255: x / 255)"
        )
    outside = int(((values_N3HW < 0) | (values_N3HW > 1)).sum())
    values_N3HW = values_N3HW.clamp(0, 1)
    source["clamped_values"] = outside  # within RANGE_TOLERANCE of [0, 1]: rounding, clamped
    levels_N3HW = torch.round(values_N3HW * 255)
    if torch.equal(levels_N3HW / 255, values_N3HW):
        source["values"] = "float, every value an 8-bit level v = k / 255; scored as 8-bit images, exactly as PNGs"
        return ReconsTensor(levels_N3HW.to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy(), source)
    source["values"] = "float in [0, 1], scored as given (brain correlation: the encoding model sees round(255 v))"
    return ReconsTensor(values_N3HW, source)


def read_index_order(path: str | Path) -> np.ndarray:
    """int64 [N] stimulus indices from an index file: `.npy` (an integer array) or `.json` (a list of integers,
    or a record with `stimulus_indices`, as `export_manifest.json`)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"index file {path} not found; pass the *_image_indices.npy that `mindhier export` wrote")
    try:
        if path.suffix == ".json":
            record = json.loads(path.read_text())
            listed = record.get("stimulus_indices") if isinstance(record, dict) else record
            indices_N = np.asarray(listed)
        else:
            indices_N = np.load(path, allow_pickle=False)
    except (ValueError, OSError, UnicodeDecodeError) as err:
        raise DataError(f"cannot read index file {path} ({err}); write it with numpy.save or as a JSON list") from err
    if indices_N.ndim != 1 or indices_N.size == 0 or not np.issubdtype(indices_N.dtype, np.integer):
        raise DataError(
            f"index file {path} holds {indices_N.dtype} {list(indices_N.shape)}; expected a list of integer "
            "stimulus indices, one per reconstruction"
        )
    return indices_N.astype(np.int64)


def check_index_order(indices_file: str | Path, expected_N: np.ndarray, split_name: str) -> None:
    """Refuse an index file whose order differs from the split's (`expected_N`, ascending stimulus index)."""
    given_N = read_index_order(indices_file)
    if len(given_N) != len(expected_N):
        raise DataError(
            f"index file {indices_file} lists {len(given_N)} images but split {split_name} has {len(expected_N)}; "
            "pass the index file of these reconstructions"
        )
    differ = np.flatnonzero(given_N != expected_N)
    if differ.size:
        row = int(differ[0])
        raise DataError(
            f"index file {indices_file} differs from split {split_name}'s order at row {row} (file: "
            f"{int(given_N[row])}, split: {int(expected_N[row])}); reorder the tensor to ascending stimulus index"
        )
