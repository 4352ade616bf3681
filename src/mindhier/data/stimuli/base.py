"""The stimulus-source interface shared by `scenes`, `photos` and `folder`.

A source turns (split, count, size, seed) into a `StimulusSet`: square RGB images, one English caption
each, and structured labels. The same arguments always give the same images; `train` and `test` never
share an image.

Shape letters (docs/glossary.md): N images, H = W = side in pixels, J object categories.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np

from mindhier.errors import ConfigError
from mindhier.progress import ProgressFn

Split = Literal["train", "test"]
SPLITS: tuple[Split, ...] = ("train", "test")


@dataclass(frozen=True)
class StimulusSet:
    """Images with captions and labels, in a fixed order."""

    images_NHWC: np.ndarray  # uint8 [N, H, W, 3]
    captions: tuple[str, ...]  # one English caption per image
    labels: tuple[dict[str, Any], ...]  # JSON-serialisable, source-specific (objects, photo name, file name)
    source: str  # "scenes" | "photos" | "folder"
    category_names: tuple[str, ...] | None = None  # the J object categories, when the source knows them
    categories_NJ: np.ndarray | None = None  # float32 multi-hot [N, J]: which categories each image shows

    def __len__(self) -> int:
        return int(self.images_NHWC.shape[0])


class StimulusSource(Protocol):
    """Anything that can produce deterministic, split-disjoint stimulus sets."""

    name: str

    def generate(
        self, split: Split, count: int, size: int, seed: int, progress: ProgressFn | None = None
    ) -> StimulusSet: ...

    def describe(self) -> dict[str, Any]:
        """JSON-serialisable description recorded in the dataset manifest."""
        ...


def check_request(split: str, count: int, size: int, seed: int) -> None:
    """Reject a `generate` request no source can serve, with one clear line."""
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    if count < 0:
        raise ConfigError(f"image count must be >= 0, got {count}; pass 0 or more")
    if size < 8:
        raise ConfigError(f"image size must be >= 8 pixels, got {size}; pass 8 or more")
    if seed < 0:
        raise ConfigError(f"seed must be >= 0, got {seed}; pass 0 or more")
