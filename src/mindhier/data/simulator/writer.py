"""Write a simulated dataset in MindEye2's layout (see `mindhier.data.layout`).

Everything is written into a staging folder that the caller publishes atomically, and with fixed
timestamps, so the same seed gives byte-identical files.

Shape letters (docs/glossary.md): N images, T trials, V voxels.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from PIL import Image

from mindhier.data import layout
from mindhier.data.simulator.design import TrialDesign
from mindhier.progress import ProgressFn, report

TAR_MTIME = 0.0  # fixed member timestamps: reproducible shards


def write_images(root: Path, images_NHWC: np.ndarray, store: str, progress: ProgressFn | None = None) -> str:
    """Write the stimuli by index; returns the store's path relative to `root`."""
    n = images_NHWC.shape[0]
    if store == "png":
        folder = root / layout.IMAGE_DIR
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray(images_NHWC[i]).save(folder / layout.image_png_name(i), format="PNG", optimize=False)
            if (i + 1) % 256 == 0 or i + 1 == n:
                report(progress, "write images", i + 1, n)
        return layout.IMAGE_DIR + "/"
    name = layout.images_hdf5_name(images_NHWC.shape[1])
    with h5py.File(root / name, "w", track_order=False) as f:
        dset = f.create_dataset(
            layout.IMAGES_KEY, shape=(n, 3, *images_NHWC.shape[1:3]), dtype=np.float16, track_times=False
        )
        for start in range(0, n, 512):
            chunk = images_NHWC[start : start + 512].transpose(0, 3, 1, 2).astype(np.float32) / 255.0
            dset[start : start + len(chunk)] = chunk.astype(np.float16)
            report(progress, "write images", min(start + 512, n), n)
    return name


def write_captions(root: Path, captions: list[str]) -> None:
    """Captions as a fixed-width unicode array [N, 1] (loadable without pickle)."""
    array = np.asarray(captions, dtype=str).reshape(-1, 1)
    np.save(root / layout.CAPTIONS_NPY, array, allow_pickle=False)


def write_stimulus_labels(
    root: Path, source: str, category_names: tuple[str, ...] | None, records: list[dict[str, Any]]
) -> None:
    payload = {
        "source": source,
        "category_names": list(category_names) if category_names else None,
        "images": records,
    }
    (root / layout.STIMULUS_LABELS).write_text(json.dumps(payload, separators=(",", ":")) + "\n")


class BetasWriter:
    """Fill `betas_all_subjXX_fp32_renorm.hdf5` session by session (float32 [T, V], key "betas")."""

    def __init__(self, root: Path, subject: int, n_trials: int, n_voxels: int) -> None:
        self._file = h5py.File(layout.betas_path(root, subject), "w")
        self._dset = self._file.create_dataset(
            layout.BETAS_KEY, shape=(n_trials, n_voxels), dtype=np.float32, track_times=False
        )

    def write_rows(self, rows: np.ndarray, betas_TV: np.ndarray) -> None:
        # session rows are contiguous, so one slice write suffices
        self._dset[int(rows[0]) : int(rows[-1]) + 1] = betas_TV

    def close(self) -> None:
        self._file.close()


OLD_TEST_SHARE = 982 / 1000  # MindEye1's test split kept 982 of the 1,000 shared images


def write_shards(root: Path, subject: int, design: TrialDesign) -> None:
    """`wds/subjXX/train/{session-1}.tar` (training trials per session), `new_test/0.tar` (every test trial) and
    `test/0.tar`, the older split: the trials of the first `OLD_TEST_SHARE` of the test images (by index), a
    subset as on NSD, so that both splits exist and differ."""
    import webdataset as wds

    behav = design.behav(subject)
    train_dir = layout.shard_dir(root, subject, "train")
    test_dir = layout.shard_dir(root, subject, "test")
    train_dir.mkdir(parents=True, exist_ok=True)
    test_dir.mkdir(parents=True, exist_ok=True)

    def write(path: Path, rows: np.ndarray) -> None:
        with wds.TarWriter(str(path), mtime=TAR_MTIME) as sink:
            for row in rows:
                sink.write({"__key__": f"sample{row:09d}", "behav.npy": _npy_bytes(behav[row : row + 1])})

    for session in range(1, design.n_sessions + 1):
        rows = np.flatnonzero((design.session_T == session) & ~design.is_test_T)
        if len(rows):
            write(train_dir / f"{session - 1}.tar", rows)
    write(test_dir / "0.tar", np.flatnonzero(design.is_test_T))
    test_images = np.unique(design.image_T[design.is_test_T])
    old_images = test_images[: max(1, int(len(test_images) * OLD_TEST_SHARE))]
    old_dir = layout.shard_dir(root, subject, "test_old")
    old_dir.mkdir(parents=True, exist_ok=True)
    write(old_dir / "0.tar", np.flatnonzero(design.is_test_T & np.isin(design.image_T, old_images)))


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def write_voxel_table(root: Path, subject: int, columns: dict[str, np.ndarray]) -> str:
    """Per-voxel parameters (ROI code, pRF, ncsnr, noise ceilings) as an npz without pickles."""
    import zipfile

    name = f"voxels_subj{subject:02d}.npz"
    with zipfile.ZipFile(root / name, "w", compression=zipfile.ZIP_STORED) as archive:
        for key, values in columns.items():
            # a fixed member date (np.savez stamps the current time), so reruns are byte-identical
            archive.writestr(zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0)), _npy_bytes(values))
    return name
