"""Stimulus sources: determinism, split disjointness, labels that match pixels, captions that match labels."""

from __future__ import annotations

import hashlib
import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mindhier.data.stimuli import (
    CATEGORIES,
    OBJECT_COLOURS,
    SOURCE_NAMES,
    TEST_PHOTOS,
    TRAIN_PHOTOS,
    FolderSource,
    PhotosSource,
    ScenesSource,
    make_source,
)
from mindhier.data.stimuli import photos as photos_module
from mindhier.data.stimuli.captions import scene_caption
from mindhier.data.stimuli.scenes import (
    BACKGROUND_COLOURS,
    BACKGROUND_KINDS,
    MIN_CONTRAST,
    background_candidates,
)
from mindhier.errors import ConfigError, DataError

# Written out by hand rather than imported, so the test checks the grammar, not a copy of the table.
EXPECTED_POSITION_PHRASES = {
    "top left": "at the top left",
    "top": "at the top",
    "top right": "at the top right",
    "left": "on the left",
    "centre": "in the centre",
    "right": "on the right",
    "bottom left": "at the bottom left",
    "bottom": "at the bottom",
    "bottom right": "at the bottom right",
}


def _digests(images_NHWC: np.ndarray) -> list[str]:
    return [hashlib.sha1(image.tobytes()).hexdigest() for image in images_NHWC]


@pytest.fixture(scope="module")
def scenes_64():
    return ScenesSource().generate("train", 300, 64, seed=11)


# --- determinism, shared by all three sources ---------------------------------------------------------------


def _assert_deterministic(source, size: int) -> None:
    first = source.generate("train", 6, size, seed=5)
    again = source.generate("train", 6, size, seed=5)
    np.testing.assert_array_equal(first.images_NHWC, again.images_NHWC)
    assert first.captions == again.captions
    assert first.labels == again.labels

    longer = source.generate("train", 9, size, seed=5)
    np.testing.assert_array_equal(longer.images_NHWC[:6], first.images_NHWC)  # image i ignores count
    assert longer.labels[:6] == first.labels

    other_seed = source.generate("train", 6, size, seed=6)
    assert not np.array_equal(other_seed.images_NHWC, first.images_NHWC)


def test_scenes_are_deterministic_and_independent_of_count():
    _assert_deterministic(ScenesSource(), size=32)


def test_photos_are_deterministic_and_independent_of_count():
    _assert_deterministic(PhotosSource(), size=32)


# --- scenes ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [16, 32, 64, 256])
def test_scenes_have_the_requested_shape_at_any_size(size):
    stimuli = ScenesSource().generate("test", 3, size, seed=0)
    assert stimuli.images_NHWC.shape == (3, size, size, 3)
    assert stimuli.images_NHWC.dtype == np.uint8
    assert len(stimuli) == len(stimuli.captions) == len(stimuli.labels) == 3
    assert stimuli.categories_NJ.shape == (3, len(CATEGORIES))
    assert stimuli.categories_NJ.dtype == np.float32


def test_scene_labels_do_not_depend_on_size():
    source = ScenesSource()
    assert source.generate("train", 5, 16, seed=2).labels == source.generate("train", 5, 64, seed=2).labels


def test_scenes_cover_every_category_colour_and_background(scenes_64):
    objects = [obj for labels in scenes_64.labels for obj in labels["objects"]]
    assert {obj["category"] for obj in objects} == set(CATEGORIES)
    assert {obj["colour"] for obj in objects} == set(OBJECT_COLOURS)
    assert {obj["size"] for obj in objects} == {"small", "medium", "large"}
    assert {obj["fill"] for obj in objects} == {"solid", "striped", "dotted", "checkered"}
    assert {obj["position"] for obj in objects} == set(EXPECTED_POSITION_PHRASES)
    assert {labels["background"]["kind"] for labels in scenes_64.labels} == set(BACKGROUND_KINDS)
    counts = [len(labels["objects"]) for labels in scenes_64.labels]
    assert min(counts) == 1 and max(counts) == 3


def test_scene_labels_are_consistent(scenes_64):
    for labels in scenes_64.labels:
        json.dumps(labels)  # JSON-serialisable
        cells = [obj["position"] for obj in labels["objects"]]
        assert len(set(cells)) == len(cells), "two objects share a grid cell"
        for obj in labels["objects"]:
            column = ["left", "centre", "right"][min(int(obj["x"] * 3), 2)]
            row = ["top", "centre", "bottom"][min(int(obj["y"] * 3), 2)]
            expected = {
                ("centre", "centre"): "centre",
                ("top", "centre"): "top",
                ("bottom", "centre"): "bottom",
                ("centre", "left"): "left",
                ("centre", "right"): "right",
            }.get((row, column), f"{row} {column}")
            assert obj["position"] == expected
            assert 0 <= obj["rotation_deg"] < 360
            nominal = {"small": 0.12, "medium": 0.18, "large": 0.26}[obj["size"]]
            assert abs(obj["radius"] - nominal) <= 0.1 * nominal + 1e-4


def test_background_colour_differs_from_every_object_colour(scenes_64):
    for labels in scenes_64.labels:
        background = labels["background"]
        names = [background["colour"], background.get("colour_to", background["colour"])]
        for obj in labels["objects"]:
            for name in names:
                assert name != obj["colour"]
                distance = np.linalg.norm(
                    np.subtract(BACKGROUND_COLOURS[name], OBJECT_COLOURS[obj["colour"]], dtype=float)
                )
                assert distance >= MIN_CONTRAST


def test_every_mix_of_object_colours_leaves_two_background_colours():
    # A gradient needs two; with fewer, sampling a scene would fail for some seeds.
    for k in range(1, len(OBJECT_COLOURS) + 1):
        for colours in itertools.combinations(sorted(OBJECT_COLOURS), k):
            assert len(background_candidates(colours)) >= 2, colours


def test_captions_name_every_object_and_the_background(scenes_64):
    for caption, labels in zip(scenes_64.captions, scenes_64.labels, strict=True):
        assert caption.startswith("a ")
        assert "  " not in caption
        for obj in labels["objects"]:
            where = EXPECTED_POSITION_PHRASES[obj["position"]]
            assert f"{obj['colour']} {obj['category']} {where}" in caption
            assert f"a {obj['size']} " in caption
        background = labels["background"]
        if background["kind"] != "stripes":
            assert " on a " in caption or " on an " in caption
        assert background["colour"] in caption.rsplit(" on ", 1)[1]


def test_caption_grammar_for_each_background_kind():
    disc = {
        "category": "disc",
        "colour": "green",
        "size": "small",
        "position": "centre",
        "fill": "striped",
    }
    heart = {
        "category": "heart",
        "colour": "yellow",
        "size": "medium",
        "position": "bottom right",
        "fill": "solid",
    }
    star = {"category": "star", "colour": "red", "size": "large", "position": "left", "fill": "dotted"}

    def caption(objects, **background):
        return scene_caption({"background": background, "objects": objects})

    assert (
        caption([disc, heart], kind="checker", colour="grey")
        == "a small striped green disc in the centre and a medium yellow heart at the bottom right"
        " on a grey checkerboard"
    )
    on_stripes = caption([star], kind="stripes", colour="blue")
    assert on_stripes == "a large dotted red star on the left on blue stripes"
    assert caption([heart], kind="flat", colour="white").endswith("on a plain white background")
    assert caption([heart], kind="checker", colour="orange").endswith("on an orange checkerboard")
    assert caption([heart], kind="gradient", colour="purple", colour_to="orange").endswith(
        "on a purple-to-orange gradient"
    )
    assert caption([heart], kind="noise", colour="teal").endswith("on a noisy teal texture")
    assert caption([disc, heart, star], kind="flat", colour="black").count(", ") == 1


def test_multi_hot_categories_match_the_labels(scenes_64):
    assert scenes_64.category_names == CATEGORIES
    for row_J, labels in zip(scenes_64.categories_NJ, scenes_64.labels, strict=True):
        present = {CATEGORIES[k] for k in np.flatnonzero(row_J)}
        assert present == {obj["category"] for obj in labels["objects"]}
        assert set(np.unique(row_J)) <= {0.0, 1.0}


def test_objects_are_drawn_where_the_labels_say(scenes_64):
    # The last object drawn is never covered; a solid one shows its exact colour at its centre (the
    # ring's centre is a hole, so it is left out).
    size = scenes_64.images_NHWC.shape[1]
    checked = set()
    for image_HW3, labels in zip(scenes_64.images_NHWC, scenes_64.labels, strict=True):
        obj = labels["objects"][-1]
        if obj["fill"] != "solid" or obj["category"] == "ring":
            continue
        pixel = image_HW3[int(obj["y"] * size), int(obj["x"] * size)].astype(int)
        np.testing.assert_allclose(pixel, OBJECT_COLOURS[obj["colour"]], atol=6)
        checked.add(obj["category"])
    assert checked == set(CATEGORIES) - {"ring"}


def test_flat_backgrounds_show_their_colour_away_from_objects(scenes_64):
    size = scenes_64.images_NHWC.shape[1]
    checked = 0
    for image_HW3, labels in zip(scenes_64.images_NHWC, scenes_64.labels, strict=True):
        if labels["background"]["kind"] != "flat":
            continue
        for y in (0.03, 0.5, 0.97):
            for x in (0.03, 0.5, 0.97):
                if all(np.hypot(x - o["x"], y - o["y"]) > 1.25 * o["radius"] for o in labels["objects"]):
                    pixel = image_HW3[int(y * size), int(x * size)].astype(int)
                    expected = BACKGROUND_COLOURS[labels["background"]["colour"]]
                    np.testing.assert_allclose(pixel, expected, atol=1)
                    checked += 1
    assert checked > 20


def test_scenes_are_distinct_and_train_test_disjoint():
    source = ScenesSource()
    train = _digests(source.generate("train", 2000, 32, seed=0).images_NHWC)
    test = _digests(source.generate("test", 300, 32, seed=0).images_NHWC)
    assert len(set(train)) == len(train)
    assert not set(train) & set(test)


def test_scenes_report_progress():
    calls = []
    ScenesSource().generate("train", 130, 16, seed=0, progress=lambda *call: calls.append(call))
    assert calls[-1] == ("render scenes", 130, 130)
    done = [call[1] for call in calls]
    assert done == sorted(done) and len(done) >= 3


@pytest.mark.parametrize(
    ("split", "count", "size", "seed"),
    [("val", 1, 32, 0), ("train", -1, 32, 0), ("train", 1, 7, 0), ("test", 1, 32, -1)],
)
def test_invalid_requests_are_config_errors(split, count, size, seed):
    for source in (ScenesSource(), PhotosSource()):
        with pytest.raises(ConfigError):
            source.generate(split, count, size, seed)


def test_scenes_object_counts_are_configurable():
    stimuli = ScenesSource(min_objects=2, max_objects=2).generate("train", 20, 16, seed=0)
    assert {len(labels["objects"]) for labels in stimuli.labels} == {2}
    with pytest.raises(ConfigError):
        ScenesSource(min_objects=0)
    with pytest.raises(ConfigError):
        ScenesSource(min_objects=3, max_objects=2)


def test_zero_images_is_an_empty_set():
    stimuli = ScenesSource().generate("train", 0, 16, seed=0)
    assert stimuli.images_NHWC.shape == (0, 16, 16, 3)


# --- photos ------------------------------------------------------------------------------------------------


def test_photo_splits_use_disjoint_photographs():
    assert not set(TRAIN_PHOTOS) & set(TEST_PHOTOS)
    assert len(TRAIN_PHOTOS) + len(TEST_PHOTOS) == 10
    source = PhotosSource()
    train = source.generate("train", 60, 16, seed=0)
    test = source.generate("test", 30, 16, seed=0)
    assert {labels["photo"] for labels in train.labels} <= set(TRAIN_PHOTOS)
    assert {labels["photo"] for labels in test.labels} == set(TEST_PHOTOS)
    assert train.category_names is None and train.categories_NJ is None
    assert train.captions[0] == f"a crop of the photograph '{train.labels[0]['photo']}'"
    assert not set(_digests(train.images_NHWC)) & set(_digests(test.images_NHWC))


def test_photo_crops_show_the_labelled_region():
    from skimage.transform import resize

    size = 32
    stimuli = PhotosSource().generate("train", 8, size, seed=3)

    def reference(photo_name: str, top: int, left: int, side: int, flip: bool) -> np.ndarray:
        crop_ss3 = photos_module.load_photo(photo_name)[top : top + side, left : left + side]
        if flip:
            crop_ss3 = crop_ss3[:, ::-1]
        return resize(crop_ss3, (size, size), anti_aliasing=True, preserve_range=True)

    for image_HW3, labels in zip(stimuli.images_NHWC, stimuli.labels, strict=True):
        height, width = photos_module.load_photo(labels["photo"]).shape[:2]
        top, left, side = labels["crop"]
        assert 0 <= top <= height - side and 0 <= left <= width - side
        assert side >= 0.35 * min(height, width) - 1
        expected = reference(labels["photo"], top, left, side, labels["flip"])
        error = np.abs(image_HW3 - expected).mean()
        assert error < 8, labels
        # The same check against a different photograph fails, so it has teeth.
        other = next(name for name in TRAIN_PHOTOS if name != labels["photo"])
        other_side = min(photos_module.load_photo(other).shape[:2])
        assert np.abs(image_HW3 - reference(other, 0, 0, other_side, False)).mean() > 3 * error


def test_a_photo_that_fails_to_load_is_a_data_error(monkeypatch):
    def broken() -> np.ndarray:
        raise OSError("file not found")

    monkeypatch.setitem(photos_module.PHOTO_LOADERS, "coffee", ("scikit-image", broken))
    photos_module.load_photo.cache_clear()
    try:
        with pytest.raises(DataError, match=r"'coffee'.*scikit-image"):
            PhotosSource().generate("test", 40, 16, seed=0)
    finally:
        photos_module.load_photo.cache_clear()


# --- folder ------------------------------------------------------------------------------------------------


def _write_image(path: Path, array: np.ndarray, mode: str | None = None) -> None:
    image = Image.fromarray(array, mode=mode) if mode else Image.fromarray(array)
    image.save(path)


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    for index in range(6):
        _write_image(tmp_path / f"plain_{index}.png", rng.integers(0, 256, (20, 20, 3), dtype=np.uint8))
    _write_image(tmp_path / "photo.jpg", rng.integers(0, 256, (30, 40, 3), dtype=np.uint8))
    _write_image(tmp_path / "SHOUT.JPEG", rng.integers(0, 256, (30, 30, 3), dtype=np.uint8))
    _write_image(tmp_path / "modern.webp", rng.integers(0, 256, (24, 24, 3), dtype=np.uint8))
    # Fully transparent black: must come out white.
    _write_image(tmp_path / "transparent.png", np.zeros((16, 16, 4), dtype=np.uint8), mode="RGBA")
    _write_image(tmp_path / "grey.png", np.full((16, 16), 100, dtype=np.uint8), mode="L")
    # Wide image: red margins, blue middle square; the centre crop keeps only blue.
    wide = np.zeros((20, 60, 3), dtype=np.uint8)
    wide[:, :20] = wide[:, 40:] = (255, 0, 0)
    wide[:, 20:40] = (0, 0, 255)
    _write_image(tmp_path / "wide.png", wide)

    (tmp_path / "plain_0.txt").write_text("  a caption from a text file \n")
    (tmp_path / "captions.json").write_text(
        json.dumps({"plain_0.png": "loses to the .txt file", "photo.jpg": ["first json caption", "second"]})
    )
    (tmp_path / "captions.csv").write_text('file,caption\nmodern.webp,"a csv caption, with a comma"\n')
    (tmp_path / "notes.md").write_text("not an image")
    (tmp_path / "nested").mkdir()
    _write_image(tmp_path / "nested" / "inner.png", np.zeros((8, 8, 3), dtype=np.uint8))
    return tmp_path


def test_folder_reads_every_image_with_its_caption(image_folder):
    source = FolderSource(image_folder, test_fraction=0.0)
    stimuli = source.generate("train", 12, 24, seed=0)
    assert stimuli.images_NHWC.shape == (12, 24, 24, 3) and stimuli.images_NHWC.dtype == np.uint8
    by_file = {labels["file"]: index for index, labels in enumerate(stimuli.labels)}
    assert "inner.png" not in by_file and len(by_file) == 12
    captions = {name: stimuli.captions[index] for name, index in by_file.items()}
    assert captions["plain_0.png"] == "a caption from a text file"
    assert captions["photo.jpg"] == "first json caption"
    assert captions["modern.webp"] == "a csv caption, with a comma"
    assert captions["SHOUT.JPEG"] == ""
    images = {name: stimuli.images_NHWC[index].astype(int) for name, index in by_file.items()}
    assert images["transparent.png"].min() >= 250
    grey = images["grey.png"]
    assert np.abs(grey - 100).max() <= 1 and (grey[..., 0] == grey[..., 2]).all()
    np.testing.assert_allclose(images["wide.png"].reshape(-1, 3).mean(axis=0), (0, 0, 255), atol=3)


def test_folder_split_is_disjoint_seeded_and_independent_of_count(image_folder):
    source = FolderSource(image_folder, test_fraction=0.25)
    test = source.generate("test", 3, 16, seed=0)
    train = source.generate("train", 9, 16, seed=0)
    test_files = {labels["file"] for labels in test.labels}
    train_files = {labels["file"] for labels in train.labels}
    assert len(test_files) == 3 and len(train_files) == 9
    assert not test_files & train_files
    first_four = source.generate("train", 4, 16, seed=0)
    assert first_four.labels == train.labels[:4]
    np.testing.assert_array_equal(first_four.images_NHWC, train.images_NHWC[:4])
    assert source.generate("train", 9, 16, seed=1).labels != train.labels
    again = source.generate("test", 3, 16, seed=0)
    np.testing.assert_array_equal(again.images_NHWC, test.images_NHWC)
    json.dumps(source.describe())


def test_folder_refuses_more_images_than_it_holds(image_folder):
    with pytest.raises(DataError, match="has only 10 train images, asked for 11"):
        FolderSource(image_folder, test_fraction=0.1).generate("train", 11, 16, seed=0)


def test_corrupt_image_is_a_data_error_naming_the_file(image_folder):
    (image_folder / "bad.png").write_bytes(b"this is not a png at all")
    with pytest.raises(DataError, match=r"bad\.png"):
        FolderSource(image_folder, test_fraction=0.0).generate("train", 13, 16, seed=0)


def test_empty_or_missing_folder_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match=r"no .* files"):
        FolderSource(tmp_path)
    (tmp_path / "readme.txt").write_text("no images here")
    with pytest.raises(DataError, match=r"no .* files"):
        FolderSource(tmp_path)
    with pytest.raises(DataError, match="does not exist"):
        FolderSource(tmp_path / "missing")


# --- make_source -------------------------------------------------------------------------------------------


def test_make_source_parses_specs(image_folder):
    assert SOURCE_NAMES == ("scenes", "photos", "folder")
    assert isinstance(make_source("scenes"), ScenesSource)
    assert isinstance(make_source("photos"), PhotosSource)
    folder = make_source(f"folder:{image_folder}")
    assert isinstance(folder, FolderSource) and folder.path == image_folder
    for source in (make_source("scenes"), make_source("photos"), folder):
        description = json.loads(json.dumps(source.describe()))
        assert description["source"] == source.name


@pytest.mark.parametrize("spec", ["scene", "folder:", "Photos", ""])
def test_make_source_rejects_unknown_specs(spec):
    with pytest.raises(ConfigError) as raised:
        make_source(spec)
    message = str(raised.value)
    assert "\n" not in message
    if spec != "folder:":
        assert "scenes, photos, folder:PATH" in message
