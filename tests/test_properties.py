"""Property-based tests (Hypothesis): the config resolver and the folder-stimuli reader, over generated inputs."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from mindhier.config import apply_overrides, from_dict, resolve, to_dict
from mindhier.data.stimuli.folder import FolderSource, load_square_image
from mindhier.errors import ConfigError, MindhierError

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
INT_FIELDS = ["simulator.n_train", "simulator.n_test", "simulator.seed", "train_encoder.steps", "stimuli.size"]


@SETTINGS
@given(field=st.sampled_from(INT_FIELDS), value=st.integers(min_value=-(10**12), max_value=10**12))
def test_an_integer_override_is_applied_exactly_or_refused_as_a_config_error(field, value):
    try:
        cfg = apply_overrides(resolve("tiny"), [f"{field}={value}"])
    except ConfigError as err:
        assert field in str(err) and "\n" not in str(err)
        return
    section, name = field.split(".")
    assert getattr(getattr(cfg, section), name) == value


@SETTINGS
@given(text=st.text(max_size=30))
def test_any_override_text_either_resolves_or_is_one_config_error_line(text):
    try:
        apply_overrides(resolve("tiny"), [text])
    except ConfigError as err:
        assert "\n" not in str(err)


@SETTINGS
@given(
    n_train=st.integers(2, 5000),
    lr=st.floats(1e-6, 1.0, allow_nan=False),
    seed=st.integers(0, 999_999),
)
def test_a_resolved_config_round_trips_through_its_dict(n_train, lr, seed):
    cfg = apply_overrides(
        resolve("tiny"), [f"simulator.n_train={n_train}", f"train_encoder.lr={lr!r}", f"simulator.seed={seed}"]
    )
    again = from_dict(type(cfg), to_dict(cfg))
    assert again == cfg
    assert dataclasses.replace(cfg) == cfg


MODES = st.sampled_from(["RGB", "RGBA", "L", "LA", "P", "I;16", "1", "CMYK"])


def _image(mode: str, width: int, height: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    if mode == "I;16":
        return Image.fromarray(rng.integers(0, 65536, (height, width), dtype=np.uint16))
    rgb = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), "RGB")
    return rgb.convert(mode)


@SETTINGS
@given(
    mode=MODES,
    width=st.integers(1, 70),
    height=st.integers(1, 70),
    size=st.integers(4, 48),
    seed=st.integers(0, 2**31),
)
def test_any_image_the_folder_reader_accepts_becomes_a_square_rgb_of_the_asked_size(
    tmp_path_factory, mode, width, height, size, seed
):
    folder = tmp_path_factory.mktemp("img")
    suffix = ".jpg" if mode == "CMYK" else ".png"
    path = folder / f"a{suffix}"
    _image(mode, width, height, seed).save(path)
    square = load_square_image(path, size)
    assert square.dtype == np.uint8 and square.shape == (size, size, 3)


@SETTINGS
@given(n_files=st.integers(0, 12), test_fraction=st.floats(0.0, 0.95), seed=st.integers(0, 10**6))
def test_folder_pools_are_disjoint_cover_every_file_and_depend_only_on_the_seed(
    tmp_path_factory, n_files, test_fraction, seed
):
    folder: Path = tmp_path_factory.mktemp("pool")
    for k in range(n_files):
        Image.new("RGB", (4, 4), (k, 0, 0)).save(folder / f"{k:02d}.png")
    (folder / "notes.txt").write_text("not an image")
    try:
        source = FolderSource(folder, test_fraction)
    except MindhierError as err:
        assert n_files == 0 and "no .png" in str(err)
        return
    pools = source.pools(seed)
    assert set(pools["test"]).isdisjoint(pools["train"])
    assert sorted(pools["test"] + pools["train"]) == sorted(source.files)
    assert len(source.files) == n_files
    assert FolderSource(folder, test_fraction).pools(seed) == pools


@pytest.mark.parametrize("bad", [-0.1, 1.0, 2.0])
def test_a_test_fraction_outside_0_1_is_refused(tmp_path, bad):
    Image.new("RGB", (4, 4)).save(tmp_path / "a.png")
    with pytest.raises(ConfigError, match="test_fraction"):
        FolderSource(tmp_path, bad)
