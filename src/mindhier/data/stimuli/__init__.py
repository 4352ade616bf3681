"""Stimulus sources: deterministic, split-disjoint sets of square RGB images with captions and labels.

`make_source(spec)` turns a command-line spec into a source:

    "scenes"        procedural shapes on patterned backgrounds (the default; unlimited, fully labelled)
    "photos"        crops of ten real photographs bundled with scikit-image, scikit-learn and matplotlib
    "folder:PATH"   any folder of .png/.jpg/.jpeg/.webp images, with optional captions
"""

from __future__ import annotations

from mindhier.data.stimuli.base import SPLITS, Split, StimulusSet, StimulusSource
from mindhier.data.stimuli.folder import FolderSource
from mindhier.data.stimuli.photos import TEST_PHOTOS, TRAIN_PHOTOS, PhotosSource
from mindhier.data.stimuli.scenes import CATEGORIES, OBJECT_COLOURS, ScenesSource
from mindhier.errors import ConfigError

SOURCE_NAMES: tuple[str, ...] = ("scenes", "photos", "folder")
FOLDER_PREFIX = "folder:"


def make_source(spec: str) -> StimulusSource:
    """The source a spec names: "scenes", "photos" or "folder:PATH"."""
    if spec == "scenes":
        return ScenesSource()
    if spec == "photos":
        return PhotosSource()
    if spec.startswith(FOLDER_PREFIX):
        path = spec[len(FOLDER_PREFIX) :]
        if not path:
            raise ConfigError(
                "stimulus source 'folder:' needs a path, as in folder:/data/my_images; add the folder after the colon"
            )
        return FolderSource(path)
    raise ConfigError(f"unknown stimulus source {spec!r}; valid: scenes, photos, folder:PATH")


__all__ = [
    "CATEGORIES",
    "OBJECT_COLOURS",
    "SOURCE_NAMES",
    "SPLITS",
    "TEST_PHOTOS",
    "TRAIN_PHOTOS",
    "FolderSource",
    "PhotosSource",
    "ScenesSource",
    "Split",
    "StimulusSet",
    "StimulusSource",
    "make_source",
]
