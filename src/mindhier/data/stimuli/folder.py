"""Stimuli from any folder of images, with optional captions beside them.

The folder holds .png, .jpg, .jpeg or .webp files (any case; not recursive; hidden files skipped).
Captions are optional and read, first match wins, from:

1. `name.txt` beside `name.png` (the whole file, stripped);
2. `captions.json`: an object mapping a file name (or its stem) to a caption or a list of captions
   (the first is taken);
3. `captions.csv`: a header row with columns `file` and `caption`.

An image without a caption gets "".

Split: the seed fixes a permutation of the files (sorted by name first, so the listing order of the
file system does not matter). The first ceil(test_fraction · n_files) files of that permutation are
the test pool, the rest the train pool; image i of a split is file i of its pool, whatever `count` is.

Each image is converted to RGB (transparency composited on white), centre-cropped to a square and
resized to the requested side with Lanczos.

Shape letters (docs/glossary.md): N images, H = W = output side.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from mindhier.data.image_decode import read_rgb
from mindhier.data.stimuli.base import Split, StimulusSet, check_request
from mindhier.errors import ConfigError, DataError
from mindhier.progress import ProgressFn, report

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
CAPTIONS_JSON = "captions.json"
CAPTIONS_CSV = "captions.csv"
PERMUTATION_SALT = 0x5F01DE  # keeps the folder permutation's RNG apart from per-image RNGs of other sources


def list_images(folder: Path) -> tuple[Path, ...]:
    """The folder's supported image files, sorted by name; a `DataError` that says how to fix an empty one."""
    if not folder.exists():
        raise DataError(f"image folder {folder} does not exist; pass an existing folder as folder:PATH")
    if not folder.is_dir():
        raise DataError(f"{folder} is not a folder; pass a folder of images as folder:PATH")
    files = sorted(
        (
            path
            for path in folder.iterdir()
            if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")
        ),
        key=lambda path: path.name,
    )
    if not files:
        raise DataError(
            f"image folder {folder} holds no {'/'.join(IMAGE_SUFFIXES)} files; add images to it or pick another folder"
        )
    return tuple(files)


def _caption_text(value: Any, where: str) -> str:
    if isinstance(value, list):
        value = value[0] if value else ""
    if not isinstance(value, str):
        raise DataError(
            f"{where}: captions must be strings or lists of strings, got {type(value).__name__}; fix the captions file"
        )
    return value.strip()


def read_caption_table(folder: Path) -> dict[str, str]:
    """Captions from `captions.json` and `captions.csv` (JSON wins), keyed by file name or stem."""
    table: dict[str, str] = {}
    csv_path = folder / CAPTIONS_CSV
    if csv_path.is_file():
        try:
            with open(csv_path, newline="", encoding="utf-8") as stream:
                reader = csv.DictReader(stream)
                columns = set(reader.fieldnames or ())
                rows = list(reader)
        except (OSError, UnicodeDecodeError, csv.Error) as error:
            raise DataError(f"cannot read {csv_path}: {error}; fix or remove it") from error
        if not {"file", "caption"} <= columns:
            raise DataError(f"{csv_path} needs a header row with columns 'file' and 'caption'; add one")
        for row in rows:
            table[(row["file"] or "").strip()] = (row["caption"] or "").strip()
    json_path = folder / CAPTIONS_JSON
    if json_path.is_file():
        try:
            with open(json_path, encoding="utf-8") as stream:
                mapping = json.load(stream)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise DataError(f"cannot read {json_path}: {error}; fix or remove it") from error
        if not isinstance(mapping, dict):
            raise DataError(f"{json_path} must hold a JSON object mapping file names to captions; fix it")
        for key, value in mapping.items():
            table[str(key)] = _caption_text(value, str(json_path))
    return table


def caption_for(image_path: Path, table: dict[str, str]) -> str:
    """The caption of one image: its .txt file, else the table by file name, else by stem, else ""."""
    text_path = image_path.with_suffix(".txt")
    if text_path.is_file():
        try:
            return text_path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as error:
            raise DataError(f"cannot read caption file {text_path}: {error}; fix or remove it") from error
    return table.get(image_path.name, table.get(image_path.stem, ""))


def load_square_image(path: Path, size: int) -> np.ndarray:
    """uint8 [H, W, 3]: the image in RGB, transparency on white, centre-cropped and resized to `size`."""
    image = Image.fromarray(read_rgb(path, exif=True))  # phone photos store their rotation in EXIF
    width, height = image.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    square = image.crop((left, top, left + side, top + side))
    return np.asarray(square.resize((size, size), Image.Resampling.LANCZOS), dtype=np.uint8)


class FolderSource:
    """Images from a folder, split by a seeded permutation into disjoint test and train pools."""

    name = "folder"

    def __init__(self, path: str | Path, test_fraction: float = 0.1) -> None:
        if not 0.0 <= test_fraction < 1.0:
            raise ConfigError(f"test_fraction must be in [0, 1), got {test_fraction}; choose a fraction in [0, 1)")
        self.path = Path(path)
        self.test_fraction = test_fraction
        self.files = list_images(self.path)  # fail early, before any work starts

    def pools(self, seed: int) -> dict[str, tuple[Path, ...]]:
        """The files of each split for this seed: {"train": (...), "test": (...)}, disjoint."""
        order = np.random.default_rng([seed, PERMUTATION_SALT]).permutation(len(self.files))
        n_test = math.ceil(self.test_fraction * len(self.files))
        shuffled = tuple(self.files[int(i)] for i in order)
        return {"test": shuffled[:n_test], "train": shuffled[n_test:]}

    def generate(
        self, split: Split, count: int, size: int, seed: int, progress: ProgressFn | None = None
    ) -> StimulusSet:
        check_request(split, count, size, seed)
        pool = self.pools(seed)[split]
        if count > len(pool):
            raise DataError(
                f"folder {self.path} has only {len(pool)} {split} images, asked for {count}; "
                f"lower --n-{split} or add images"
            )
        table = read_caption_table(self.path)
        images_NHWC = np.empty((count, size, size, 3), dtype=np.uint8)
        captions, labels = [], []
        for index, image_path in enumerate(pool[:count]):
            images_NHWC[index] = load_square_image(image_path, size)
            captions.append(caption_for(image_path, table))
            labels.append({"file": image_path.name})
            if (index + 1) % 64 == 0 or index + 1 == count:
                report(progress, "load folder images", index + 1, count)
        return StimulusSet(images_NHWC=images_NHWC, captions=tuple(captions), labels=tuple(labels), source=self.name)

    def describe(self) -> dict[str, Any]:
        return {
            "source": self.name,
            "path": str(self.path.resolve()),
            "n_files": len(self.files),
            "test_fraction": self.test_fraction,
        }
