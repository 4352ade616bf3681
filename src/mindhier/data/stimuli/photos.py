"""Random square crops of ten real colour photographs that ship inside ordinary dependencies.

No download ever: the photographs come with scikit-image (`skimage.data`), scikit-learn
(`load_sample_image`) and matplotlib (`cbook.get_sample_data`). They are split once and for all into
`TRAIN_PHOTOS` and `TEST_PHOTOS`, so a test crop never shows any part of a photograph seen in training:
test crops measure generalisation to new photographs, not to new crops of known ones.

Each stimulus: a photograph of the split, a square crop whose side is 35–100 % of the photograph's
shorter side at a random position, a horizontal flip half of the time, and a Lanczos resize to the
requested side. All of it is drawn from an RNG seeded by (seed, split, index) alone.

Shape letters (docs/glossary.md): N images, H = W = output side; a photograph is [h, w, 3].
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np
from PIL import Image

from mindhier.data.stimuli.base import SPLITS, Split, StimulusSet, check_request
from mindhier.errors import ConfigError, DataError
from mindhier.progress import ProgressFn, report

# The test photographs were picked to span the kinds of content in the training ones (an object on a
# table, a natural close-up, a portrait) without repeating any of them.
TRAIN_PHOTOS: tuple[str, ...] = (
    "astronaut",
    "chelsea",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "china",
)
TEST_PHOTOS: tuple[str, ...] = ("coffee", "flower", "grace_hopper")

MIN_CROP_FRACTION = 0.35  # smallest crop side, as a fraction of the photograph's shorter side
FLIP_PROBABILITY = 0.5


def _skimage_photo(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        import skimage.data

        return getattr(skimage.data, name)()

    return load


def _sklearn_photo(file_name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from sklearn.datasets import load_sample_image

        return load_sample_image(file_name)

    return load


def _load_grace_hopper() -> np.ndarray:
    from matplotlib import cbook

    path = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


# name -> (package that ships it, loader returning uint8 [h, w, 3])
PHOTO_LOADERS: dict[str, tuple[str, Callable[[], np.ndarray]]] = {
    "astronaut": ("scikit-image", _skimage_photo("astronaut")),
    "chelsea": ("scikit-image", _skimage_photo("chelsea")),
    "coffee": ("scikit-image", _skimage_photo("coffee")),
    "rocket": ("scikit-image", _skimage_photo("rocket")),
    "hubble_deep_field": ("scikit-image", _skimage_photo("hubble_deep_field")),
    "immunohistochemistry": ("scikit-image", _skimage_photo("immunohistochemistry")),
    "retina": ("scikit-image", _skimage_photo("retina")),
    "china": ("scikit-learn", _sklearn_photo("china.jpg")),
    "flower": ("scikit-learn", _sklearn_photo("flower.jpg")),
    "grace_hopper": ("matplotlib", _load_grace_hopper),
}


@functools.cache
def load_photo(name: str) -> np.ndarray:
    """uint8 [h, w, 3] of one bundled photograph, loaded once per process (read-only)."""
    if name not in PHOTO_LOADERS:
        raise ConfigError(f"unknown photograph {name!r}; available: {', '.join(PHOTO_LOADERS)}")
    package, loader = PHOTO_LOADERS[name]
    try:
        photo_hw3 = np.asarray(loader())
    except Exception as error:  # any failure inside a third-party loader means the same thing to the user
        raise DataError(
            f"cannot load the photograph {name!r} bundled with {package}: {error}; reinstall {package}"
        ) from error
    if photo_hw3.dtype != np.uint8 or photo_hw3.ndim != 3 or photo_hw3.shape[2] != 3:
        raise DataError(
            f"the photograph {name!r} from {package} is not an RGB uint8 image "
            f"(got {photo_hw3.dtype} {photo_hw3.shape}); reinstall {package}"
        )
    photo_hw3 = np.ascontiguousarray(photo_hw3)
    photo_hw3.setflags(write=False)
    return photo_hw3


def sample_crop(rng: np.random.Generator, photos: tuple[str, ...]) -> dict[str, Any]:
    """Labels of one crop: `{"photo": name, "crop": [top, left, side], "flip": bool}` in photo pixels."""
    name = photos[int(rng.integers(len(photos)))]
    height, width = load_photo(name).shape[:2]
    shorter = min(height, width)
    side = round(shorter * float(rng.uniform(MIN_CROP_FRACTION, 1.0)))
    side = min(max(side, 1), shorter)
    top = int(rng.integers(0, height - side + 1))
    left = int(rng.integers(0, width - side + 1))
    flip = bool(rng.random() < FLIP_PROBABILITY)
    return {"photo": name, "crop": [top, left, side], "flip": flip}


def render_crop(labels: dict[str, Any], size: int) -> np.ndarray:
    """uint8 [H, W, 3]: the labelled crop, flipped if asked, resized with Lanczos (antialiased)."""
    top, left, side = labels["crop"]
    crop_ss3 = load_photo(labels["photo"])[top : top + side, left : left + side]
    if labels["flip"]:
        crop_ss3 = crop_ss3[:, ::-1]
    image = Image.fromarray(np.ascontiguousarray(crop_ss3), mode="RGB")
    return np.asarray(image.resize((size, size), Image.Resampling.LANCZOS), dtype=np.uint8)


def photo_caption(labels: dict[str, Any]) -> str:
    return f"a crop of the photograph '{labels['photo']}'"


class PhotosSource:
    """Crops of bundled real photographs; train and test crops come from disjoint photographs."""

    name = "photos"

    def crop_labels(self, split: Split, index: int, seed: int) -> dict[str, Any]:
        """The labels of image `index` of `split`; depends on nothing else."""
        rng = np.random.default_rng([seed, SPLITS.index(split), index])
        return sample_crop(rng, TRAIN_PHOTOS if split == "train" else TEST_PHOTOS)

    def generate(
        self, split: Split, count: int, size: int, seed: int, progress: ProgressFn | None = None
    ) -> StimulusSet:
        check_request(split, count, size, seed)
        images_NHWC = np.empty((count, size, size, 3), dtype=np.uint8)
        labels, captions = [], []
        for index in range(count):
            crop = self.crop_labels(split, index, seed)
            images_NHWC[index] = render_crop(crop, size)
            labels.append(crop)
            captions.append(photo_caption(crop))
            if (index + 1) % 64 == 0 or index + 1 == count:
                report(progress, "crop photos", index + 1, count)
        return StimulusSet(images_NHWC=images_NHWC, captions=tuple(captions), labels=tuple(labels), source=self.name)

    def describe(self) -> dict[str, Any]:
        return {
            "source": self.name,
            "train_photos": list(TRAIN_PHOTOS),
            "test_photos": list(TEST_PHOTOS),
            "min_crop_fraction": MIN_CROP_FRACTION,
            "flip_probability": FLIP_PROBABILITY,
        }
