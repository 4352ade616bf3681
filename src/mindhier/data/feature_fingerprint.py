"""Identity of the images a feature cache covers, and the cache key built from it.

The key is the sha256 of the canonical JSON of the teacher's `describe()` and the image-set fingerprint; a
cache is reused only when the key matches. The fingerprint is the sorted stimulus indices plus the store's
identity:

* PNG store: sha256 over (name, byte size, content sha256) of every referenced image file — cheap at our sizes
  and exact.
* HDF5 store (MindEye2's 22 GB `coco_images_224_float16.hdf5`): the file's name and byte size, the array's
  shape and dtype, and the sha256 of the first and last referenced images. Hashing 22 GB on every run would cost
  minutes, so an edit that keeps the file size and leaves those two images alone goes unnoticed; the published
  file is never edited in place, so we accept that.
* With caption features, the sha256 of the captions too.

Shape letters (docs/glossary.md): N images.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from mindhier.data import layout
from mindhier.data.nsd import SPLIT_NAMES, NSDDataset
from mindhier.errors import DataError
from mindhier.progress import ProgressFn, report

FORMAT_VERSION = 1  # of the feature cache; part of every key


def referenced_stimuli(dataset: NSDDataset) -> np.ndarray:
    """Sorted unique stimulus indices of every split (train, val, test, test_old if present) of every subject."""
    found = []
    for subject in dataset.subjects:
        has_old = dataset.recording(subject).test_old_trials is not None
        for name in SPLIT_NAMES:
            if name != "test_old" or has_old:
                found.append(dataset.split(subject, name).image_index_N)
    return np.unique(np.concatenate(found).astype(np.int64)) if found else np.empty(0, np.int64)


def image_set_fingerprint(
    dataset: NSDDataset, indices_N: np.ndarray, captions: list[str] | None = None, progress: ProgressFn | None = None
) -> dict[str, Any]:
    """Identity of the images (and captions) a cache covers; see the module docstring for what is hashed."""
    indices_N = np.asarray(indices_N, dtype=np.int64)
    store = dataset.images
    fingerprint: dict[str, Any] = {
        "n_images": len(indices_N),
        "indices_sha256": hashlib.sha256(indices_N.astype("<i8").tobytes()).hexdigest(),
    }
    if store.kind == "png":
        fingerprint["store"] = {
            "kind": "png",
            "content_sha256": _png_content_sha256(store.location, indices_N, progress),
        }
    elif store.kind == "hdf5":
        fingerprint["store"] = _hdf5_identity(store.location, indices_N)
    else:
        raise DataError(f"image store kind {store.kind!r} at {store.location} has no fingerprint; use PNG or HDF5")
    if captions is not None:
        fingerprint["captions_sha256"] = hashlib.sha256("\n".join(captions).encode()).hexdigest()
    return fingerprint


def _png_content_sha256(folder: Path, indices_N: np.ndarray, progress: ProgressFn | None) -> str:
    digest = hashlib.sha256()
    for done, index in enumerate(indices_N, start=1):
        name = layout.image_png_name(int(index))
        try:
            data = (folder / name).read_bytes()
        except OSError as err:
            raise DataError(f"cannot read stimulus image {folder / name} ({err}); restore it") from err
        digest.update(f"{name}|{len(data)}|{hashlib.sha256(data).hexdigest()}\n".encode())
        if done % 256 == 0 or done == len(indices_N):
            report(progress, "hashing stimuli", done, len(indices_N))
    return digest.hexdigest()


def _hdf5_identity(path: Path, indices_N: np.ndarray) -> dict[str, Any]:
    import h5py

    identity: dict[str, Any] = {"kind": "hdf5", "file": path.name, "bytes": path.stat().st_size}
    with h5py.File(path, "r") as f:
        images = f[layout.IMAGES_KEY]
        identity["shape"] = list(images.shape)
        identity["dtype"] = str(images.dtype)
        if len(indices_N):
            for which, index in (("first", indices_N[0]), ("last", indices_N[-1])):
                identity[f"{which}_index"] = int(index)
                identity[f"{which}_sha256"] = hashlib.sha256(
                    np.ascontiguousarray(images[int(index)]).tobytes()
                ).hexdigest()
    return identity


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def cache_key(teacher_identity: dict, fingerprint: dict) -> str:
    """sha256 of the canonical JSON of the teacher's identity and the image-set fingerprint."""
    payload = {"format": FORMAT_VERSION, "teacher": teacher_identity, "images": fingerprint}
    return hashlib.sha256(canonical_json(payload).encode()).hexdigest()
