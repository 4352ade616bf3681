"""The on-disk layout of an NSD dataset as MindEye2 publishes it, shared by the writer and the reader.

MindEye2 (HF dataset `pscotti/mindeyev2`) ships, under one root folder:

    betas_all_subj01_fp32_renorm.hdf5      dataset "betas", float32 [n_trials, n_voxels]
    wds/subj01/train/{0..39}.tar           one WebDataset shard per scanning session
    wds/subj01/new_test/0.tar              every trial of the 1,000 shared test images
    wds/subj01/test/0.tar                  the older 982-image test split (optional here)
    coco_images_224_float16.hdf5           dataset "images", float16 [73000, 3, 224, 224] in [0, 1]
    COCO_73k_annots_curated.npy            captions, indexed by image

Each WebDataset sample carries `behav.npy`, an array of shape [1, 17] (-1 where NSD has NaN) whose
columns are listed in `BEHAV_COLUMNS`; only column 0 (image index) and column 5 (row of the betas
file) are needed to pair brain responses with images.

Our simulator writes the same files, with stimuli either as `images/image_{index:06d}.png` or as one
HDF5 array like MindEye2's, plus `captions.npy`, `stimulus_labels.json` and a `manifest.json` that
real NSD does not have (per-voxel ROI labels and noise ceilings, generation config).
"""

from __future__ import annotations

import re
from pathlib import Path

# Column meanings of MindEye2's behav arrays (from the dataset card of pscotti/mindeyev2).
BEHAV_COLUMNS = (
    "cocoidx",  # 0: image index (0-based NSD 73k id)
    "subject",  # 1
    "session",  # 2: 1-based scan session
    "run",  # 3: 1-based run within the session
    "trial",  # 4: 1-based trial within the run
    "global_trial",  # 5: row of the betas file
    "time",  # 6
    "isold",  # 7: 1 if the image was shown before
    "iscorrect",  # 8
    "rt",  # 9
    "changemind",  # 10
    "isoldcurrent",  # 11
    "iscorrectcurrent",  # 12
    "total1",  # 13
    "total2",  # 14
    "button",  # 15
    "shared1000",  # 16: 1 for the shared test images
)
BEHAV_IMAGE = 0
BEHAV_SESSION = 2
BEHAV_RUN = 3
BEHAV_TRIAL = 4
BEHAV_ROW = 5
BEHAV_ISOLD = 7
BEHAV_SHARED = 16
BEHAV_WIDTH = len(BEHAV_COLUMNS)

BETAS_KEY = "betas"
IMAGES_KEY = "images"
MANIFEST = "manifest.json"
CONFIG = "config.json"
IMAGE_DIR = "images"
CAPTIONS_NPY = "captions.npy"
NSD_CAPTIONS_NPY = "COCO_73k_annots_curated.npy"
STIMULUS_LABELS = "stimulus_labels.json"
NSD_IMAGES_HDF5 = "coco_images_224_float16.hdf5"

# Split name -> folder under wds/subjXX/. "train" also provides "val" (held-out training images).
SHARD_DIRS = {"train": "train", "test": "new_test", "test_old": "test"}

_BETAS_RE = re.compile(r"^betas_all_subj(\d{2})_fp32_renorm\.hdf5$")


def betas_name(subject: int) -> str:
    return f"betas_all_subj{subject:02d}_fp32_renorm.hdf5"


def betas_path(root: Path, subject: int) -> Path:
    return root / betas_name(subject)


def shard_dir(root: Path, subject: int, split: str) -> Path:
    return root / "wds" / f"subj{subject:02d}" / SHARD_DIRS[split]


def image_png_path(root: Path, index: int) -> Path:
    return root / IMAGE_DIR / image_png_name(index)


def image_png_name(index: int) -> str:
    return f"image_{index:06d}.png"


def images_hdf5_name(size: int) -> str:
    """Name of the single-array stimulus store the simulator writes at `size` px."""
    return f"images_{size}_float16.hdf5"


def find_subjects(root: Path) -> list[int]:
    """Subjects that have a betas file under `root`, in ascending order."""
    found = []
    for p in root.iterdir():
        m = _BETAS_RE.match(p.name)
        if m:
            found.append(int(m.group(1)))
    return sorted(found)
