"""Stimulus stores: one PNG per image (MindHier's export, our simulator) or one HDF5 array (MindEye2).

Both return uint8 RGB images [N, H, W, 3] by stimulus index and report missing or unreadable images
as one clear `DataError` line naming the image and the fix.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image, UnidentifiedImageError

from mindhier.data import layout
from mindhier.data.image_decode import MAX_IMAGE_PIXELS, check_pixels, read_rgb
from mindhier.errors import DataError
from mindhier.records import contained_path


class ImageStore(Protocol):
    kind: str
    location: Path

    def check_indices(self, indices: np.ndarray) -> None:
        """Raise `DataError` if any of these stimuli is absent from the store."""
        ...

    def verify(self, indices: np.ndarray) -> None:
        """Raise `DataError` if any of these stimuli cannot be decoded."""
        ...

    def load(self, indices: np.ndarray) -> np.ndarray: ...


class PngImageStore:
    """`images/image_{index:06d}.png`."""

    kind = "png"

    def __init__(self, folder: Path, max_pixels: int = MAX_IMAGE_PIXELS) -> None:
        self.location, self.max_pixels = folder, max_pixels

    def path(self, index: int) -> Path:
        return self.location / layout.image_png_name(int(index))

    def check_indices(self, indices: np.ndarray) -> None:
        present = set(os.listdir(self.location))
        missing = [int(i) for i in np.unique(indices) if layout.image_png_name(int(i)) not in present]
        if missing:
            raise DataError(
                f"{len(missing)} stimulus images are missing from {self.location} (first: "
                f"{layout.image_png_name(missing[0])}); restore them or re-export the stimuli"
            )

    def verify(self, indices: np.ndarray) -> None:
        for index in np.unique(indices):
            path = self.path(index)
            try:
                with warnings.catch_warnings():  # PIL's bomb warning: our bound decides, with one line
                    warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                    with Image.open(path) as image:
                        check_pixels(image.size, path, self.max_pixels)
                        image.verify()
            except (OSError, UnidentifiedImageError, SyntaxError, Image.DecompressionBombError) as err:
                raise DataError(f"cannot read stimulus image {path} ({err}); replace the file") from err

    def load(self, indices: np.ndarray) -> np.ndarray:
        images = []
        for index in np.asarray(indices).reshape(-1):
            images.append(read_rgb(self.path(index), max_pixels=self.max_pixels))
        sizes = {im.shape for im in images}
        if len(sizes) > 1:
            raise DataError(f"stimulus images in {self.location} have different sizes {sorted(sizes)}; resize them")
        return np.stack(images) if images else np.zeros((0, 1, 1, 3), np.uint8)


class Hdf5ImageStore:
    """One array `images` [N, 3, H, W] (float in [0, 1], or uint8), as MindEye2's coco_images_224_float16.hdf5."""

    kind = "hdf5"

    def __init__(self, path: Path) -> None:
        import h5py

        self.location = path
        try:
            with h5py.File(path, "r") as f:
                if layout.IMAGES_KEY not in f:
                    raise DataError(
                        f"stimulus file {path} has no dataset '{layout.IMAGES_KEY}' (found: {', '.join(f.keys())}); "
                        "use MindEye2's coco_images_224_float16.hdf5 or re-export"
                    )
                dset = f[layout.IMAGES_KEY]
                self.shape = tuple(dset.shape)
                self.dtype = dset.dtype
        except OSError as err:
            raise DataError(f"cannot open stimulus file {path} as HDF5 ({err}); re-download or re-export it") from err
        if len(self.shape) != 4 or self.shape[1] != 3:
            raise DataError(f"stimulus array in {path} has shape {self.shape}; expected [N, 3, H, W]")
        if not (np.issubdtype(self.dtype, np.floating) or self.dtype == np.uint8):
            raise DataError(f"stimulus array in {path} has dtype {self.dtype}; expected float16/float32 or uint8")
        self._file = None
        self._pid = -1

    def check_indices(self, indices: np.ndarray) -> None:
        if len(indices) and int(np.max(indices)) >= self.shape[0]:
            raise DataError(
                f"stimulus index {int(np.max(indices))} is out of range for {self.location} "
                f"({self.shape[0]} images); the behav files and the image store do not belong together"
            )

    def verify(self, indices: np.ndarray) -> None:
        self.check_indices(indices)

    def _dataset(self):
        import h5py

        if self._file is None or self._pid != os.getpid():  # reopen after fork (DataLoader workers)
            self._file = h5py.File(self.location, "r")
            self._pid = os.getpid()
        return self._file[layout.IMAGES_KEY]

    def load(self, indices: np.ndarray) -> np.ndarray:
        indices = np.asarray(indices).reshape(-1)
        unique, inverse = np.unique(indices, return_inverse=True)
        block = self._dataset()[unique]  # h5py needs increasing indices
        if block.dtype == np.uint8:
            images = block
        else:
            images = np.clip(np.rint(block.astype(np.float32) * 255.0), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(images[inverse].transpose(0, 2, 3, 1))


def find_image_store(root: Path, manifest: dict | None, max_pixels: int = MAX_IMAGE_PIXELS) -> ImageStore:
    """The manifest's store if named, else `images/`, else a single `*images*.hdf5` array."""
    if manifest and manifest.get("image_store"):
        named = contained_path(root, manifest["image_store"], "the manifest's image_store")
        if not named.exists():
            raise DataError(f"the manifest names the image store {named}, which is missing; restore it")
        return PngImageStore(named, max_pixels) if named.is_dir() else Hdf5ImageStore(named)
    if (root / layout.IMAGE_DIR).is_dir():
        return PngImageStore(root / layout.IMAGE_DIR, max_pixels)
    candidates = sorted(p for p in root.glob("*.hdf5") if "images" in p.name)
    if len(candidates) == 1:
        return Hdf5ImageStore(candidates[0])
    if len(candidates) > 1:
        names = ", ".join(p.name for p in candidates)
        raise DataError(f"several image arrays in {root} ({names}); keep one, or name it in manifest.json")
    raise DataError(
        f"no stimulus images in {root}: expected an images/ folder of image_XXXXXX.png or "
        f"{layout.NSD_IMAGES_HDF5} (MindEye2); download it or re-run `mindhier simulate`"
    )
