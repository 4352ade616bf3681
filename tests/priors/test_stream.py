"""The pretraining stream never shows a dataset's image: seeds are reserved, and the demo's images are checked."""

import hashlib

import numpy as np
import pytest

from mindhier.config import RESERVED_SEEDS, SimulatorConfig, demo
from mindhier.data.stimuli.scenes import ScenesSource, render_scene
from mindhier.errors import ConfigError
from mindhier.metrics.judge import JUDGE_SEED
from mindhier.priors.stream import PRETRAIN_SEED, STIMULUS_PX, pretraining_images


def _labels(seed: int, split: str, count: int) -> set[str]:
    source = ScenesSource()
    return {repr(source.scene_labels(split, i, seed)) for i in range(count)}


def test_streams_live_above_every_dataset_seed():
    assert RESERVED_SEEDS <= PRETRAIN_SEED != JUDGE_SEED >= RESERVED_SEEDS
    with pytest.raises(ConfigError, match="larger seeds are the package's own scene streams"):
        SimulatorConfig(seed=PRETRAIN_SEED)


def test_no_pretraining_scene_is_one_of_the_demos():
    """The demo's 4,000 train and 100 test scenes (seed 0) against the first 40,000 scenes of the stream: their
    labels (which fully determine the pixels) never coincide, and neither do the rendered test images."""
    cfg = demo().simulator
    demo_labels = _labels(cfg.seed, "train", cfg.n_train) | _labels(cfg.seed, "test", cfg.n_test)
    stream_labels = _labels(PRETRAIN_SEED, "train", 40_000) | _labels(PRETRAIN_SEED, "test", 512)
    assert len(demo_labels) == cfg.n_train + cfg.n_test and not demo_labels & stream_labels
    source = ScenesSource()
    demo_test = {
        hashlib.sha256(render_scene(source.scene_labels("test", i, cfg.seed), STIMULUS_PX).tobytes()).hexdigest()
        for i in range(cfg.n_test)
    }
    stream = pretraining_images(np.arange(300))
    assert not demo_test & {hashlib.sha256(image.tobytes()).hexdigest() for image in stream}


def test_stream_images_do_not_depend_on_what_else_is_asked_for():
    a = pretraining_images(np.array([5, 6, 7]))
    b = pretraining_images(np.array([7, 2]))
    assert np.array_equal(a[2], b[0]) and not np.array_equal(a[0], a[1])
    assert not np.array_equal(pretraining_images(np.array([5]), "test")[0], a[0])
