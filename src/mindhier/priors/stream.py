"""The pretraining stream: procedural scenes that no dataset ever shows.

The embedded world's priors (the tokenizer and the generator, the analogue of VAR's VQ-VAE and Switti) are
trained on scenes from the `scenes` source drawn with `PRETRAIN_SEED`. Every scene comes from an RNG keyed
by (seed, split, index) alone, datasets are simulated with seeds below `RESERVED_SEEDS` (the simulator
refuses larger ones), and the package's own streams — this one and the scene judge's — use fixed seeds
above it, so a pretraining image is never a dataset's image (a test hashes the demo's images against the
stream). Scene parameters are continuous (positions, radii, rotations, pattern phases), so even streams
whose seeds met would practically never repeat an image.

Shape letters (docs/glossary.md): N images, H/W pixels.
"""

from __future__ import annotations

import numpy as np

from mindhier.config.world import RESERVED_SEEDS  # noqa: F401 - the bound this stream sits above
from mindhier.data.stimuli.scenes import ScenesSource, render_scene
from mindhier.progress import ProgressFn, report

PRETRAIN_SEED = 5_000_011
STIMULUS_PX = 64  # scenes are rendered at the demo's stimulus size, then resized for each model


def pretraining_images(indices_N: np.ndarray, split: str = "train", progress: ProgressFn | None = None) -> np.ndarray:
    """The stream's images `indices_N` of `split` (`train` to learn, `test` to validate), uint8 [N, 64, 64, 3];
    image i is the same whatever else is asked for."""
    source = ScenesSource()
    images = np.empty((len(indices_N), STIMULUS_PX, STIMULUS_PX, 3), dtype=np.uint8)
    for row, index in enumerate(indices_N):
        images[row] = render_scene(source.scene_labels(split, int(index), PRETRAIN_SEED), STIMULUS_PX)
        if (row + 1) % 256 == 0 or row + 1 == len(indices_N):
            report(progress, f"render pretraining scenes ({split})", row + 1, len(indices_N))
    return images
