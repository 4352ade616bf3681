"""Feature cache: values, order, reuse, refusal, atomic overwrite, corruption, HDF5 stores, image identity."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from mindhier.config import TeacherConfig
from mindhier.data import layout
from mindhier.data.feature_cache import (
    FeatureCache,
    build_feature_cache,
    default_cache_dir,
    feature_cache_key,
    referenced_stimuli,
)
from mindhier.data.nsd import open_dataset
from mindhier.errors import ConfigError, DataError
from mindhier.teachers.efficientnet import EfficientNetTeacher

TEACHER_CFG = TeacherConfig(grid=2, input_px=64)


class CountingTeacher:
    """Wraps a teacher and counts forward passes, to tell a reused cache from a rebuilt one."""

    def __init__(self, teacher) -> None:
        self.inner = teacher
        self.name, self.levels = teacher.name, teacher.levels
        self.calls = 0

    def preprocess(self, images_NCHW):
        return self.inner.preprocess(images_NCHW)

    def __call__(self, images_NCHW):
        self.calls += 1
        return self.inner(images_NCHW)

    def describe(self):
        return self.inner.describe()

    @property
    def has_text(self):
        return self.inner.has_text

    def encode_text(self, captions):
        return self.inner.encode_text(captions)


class FakeTextTeacher(CountingTeacher):
    """Lite0 image levels plus a deterministic caption encoder (byte codes), standing in for CLIP's text tower."""

    @property
    def has_text(self):
        return True

    def describe(self):
        return {**self.inner.describe(), "text": "bytes"}

    def encode_text(self, captions):
        codes = torch.zeros(len(captions), 6, 3)
        for i, caption in enumerate(captions):
            data = caption.encode()[:18].ljust(18, b"\0")
            codes[i] = torch.tensor(list(data), dtype=torch.float32).view(6, 3)
        return codes


@pytest.fixture(scope="module")
def lite0():
    return EfficientNetTeacher(TEACHER_CFG)


@pytest.fixture(scope="module")
def built(tiny_dataset, lite0, tmp_path_factory):
    """One cache of the tiny dataset, split into several shards, shared by the read-only tests."""
    _, result = tiny_dataset
    out = tmp_path_factory.mktemp("cache") / "lite0"
    return build_feature_cache(result.root, lite0, out=out, batch_size=50, max_shard_images=100)


def _direct(teacher, root, indices) -> list[torch.Tensor]:
    with open_dataset(root) as dataset:
        images_NCHW = torch.from_numpy(dataset.images.load(np.asarray(indices))).permute(0, 3, 1, 2).float() / 255
    return teacher(images_NCHW)


def test_cache_holds_every_referenced_stimulus_and_the_teachers_values(tiny_dataset, lite0, built):
    _, result = tiny_dataset
    with open_dataset(result.root) as dataset:
        expected = referenced_stimuli(dataset)
        assert set(dataset.split(1, "test").image_index_N) <= set(expected)
        assert set(dataset.split(2, "val").image_index_N) <= set(expected)
    np.testing.assert_array_equal(built.indices, np.union1d(result.train_images, result.test_images))
    np.testing.assert_array_equal(built.indices, expected)
    assert built.n_images == len(expected) and len(built.meta["shards"]) == 3  # 264 images, 100 per shard
    assert built.levels == lite0.levels and built.teacher["layers"] == [5, 8, 11, 16]
    assert not built.has_text and built.text_shape is None and not built.reused

    everything = built.load_all()
    for cached, direct in zip(everything, _direct(lite0, result.root, built.indices), strict=True):
        assert cached.dtype == torch.float32
        torch.testing.assert_close(cached, direct, rtol=2e-3, atol=2e-3)  # float16 storage
    assert built.load_all(dtype=torch.float16)[0].dtype == torch.float16


def test_get_follows_the_requested_order_across_shards(tiny_dataset, lite0, built):
    _, result = tiny_dataset
    stored = built.indices
    requested = np.array([stored[250], stored[3], stored[120], stored[3], stored[4], stored[5], stored[99]])
    got = built.get(requested)
    direct = _direct(lite0, result.root, requested)
    assert [tuple(g.shape) for g in got] == [(7, level.tokens, level.dim) for level in lite0.levels]
    for cached, reference in zip(got, direct, strict=True):
        torch.testing.assert_close(cached, reference, rtol=2e-3, atol=2e-3)
    torch.testing.assert_close(got[0][1], got[0][3])  # a repeated stimulus reads the same row
    assert built.get([])[0].shape == (0, 5, 40)
    missing = int(stored.max()) + 1000
    assert missing not in built
    with pytest.raises(DataError, match=f"stimulus {missing} is not in feature cache"):
        built.get([stored[0], missing])
    with pytest.raises(DataError, match="no caption features"):
        built.get_text(stored[:2])


def test_same_configuration_is_reused_without_recomputing(tiny_dataset, lite0, built):
    _, result = tiny_dataset
    counting = CountingTeacher(lite0)
    shard = built.path / built.meta["shards"][0]["file"]
    before = shard.stat().st_mtime_ns
    again = build_feature_cache(result.root, counting, out=built.path)
    assert again.reused and counting.calls == 0 and again.key == built.key
    assert shard.stat().st_mtime_ns == before
    again.check_matches(lite0.describe())


def test_another_layer_mapping_is_refused_then_overwritten(tiny_dataset, lite0, tmp_path):
    _, result = tiny_dataset
    out = tmp_path / "cache"
    first = build_feature_cache(result.root, lite0, out=out)
    early = EfficientNetTeacher(TeacherConfig(grid=2, input_px=64, mapping="early"))
    with pytest.raises(DataError) as caught:
        build_feature_cache(result.root, early, out=out)
    message = str(caught.value)
    assert "teacher layers: [5, 8, 11, 16] → [3, 5, 8, 16]" in message
    assert "--overwrite" in message and "\n" not in message
    assert FeatureCache.open(out).key == first.key  # the refused build left the old cache alone
    with pytest.raises(DataError, match=r"another teacher \(.*teacher layers"):
        first.check_matches(early.describe())

    replaced = build_feature_cache(result.root, early, out=out, overwrite=True)
    assert not replaced.reused and replaced.key != first.key
    assert [level.layer for level in FeatureCache.open(out).levels] == [3, 5, 8, 16]
    assert sorted(p.name for p in out.parent.iterdir()) == ["cache"]  # no staging folder left behind

    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="not a feature cache"):
        build_feature_cache(result.root, lite0, out=tmp_path / "other")


def test_default_location_is_named_by_teacher_and_key(tiny_dataset, lite0, tmp_path):
    _, result = tiny_dataset
    root = tmp_path / "data"
    shutil.copytree(result.root, root)
    progress = []
    cache = build_feature_cache(root, lite0, progress=lambda *call: progress.append(call))
    assert cache.path == default_cache_dir(root, "efficientnet-lite0", cache.key)
    assert cache.path.parent == root / "features" and cache.path.name == f"efficientnet-lite0-{cache.key[:12]}"
    assert cache.key == feature_cache_key(root, lite0)
    assert progress[-1] == ("teacher features", cache.n_images, cache.n_images)

    # changing one referenced image's bytes changes the key
    victim = layout.image_png_path(root, int(cache.indices[7]))
    pixels = np.asarray(Image.open(victim)).copy()
    pixels[0, 0] = 255 - pixels[0, 0]
    Image.fromarray(pixels).save(victim)
    assert feature_cache_key(root, lite0) != cache.key


def test_corrupt_or_missing_parts_raise_data_error(built, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(built.path, copy)
    shard = copy / built.meta["shards"][1]["file"]
    data = bytearray(shard.read_bytes())

    data[-64:] = bytes(64)  # values damaged, header intact: only the checksum notices
    shard.write_bytes(bytes(data))
    FeatureCache.open(copy)
    with pytest.raises(DataError, match="does not match its checksum"):
        FeatureCache.open(copy, verify=True)

    shard.write_bytes(bytes(data[: len(data) // 2]))  # truncated
    with pytest.raises(DataError, match="is corrupt"):
        FeatureCache.open(copy)
    shard.write_bytes(b"\xff" * 16 + bytes(data[16:]))  # header destroyed
    with pytest.raises(DataError, match="is corrupt"):
        FeatureCache.open(copy)
    shard.unlink()
    with pytest.raises(DataError, match="is missing"):
        FeatureCache.open(copy)

    meta = json.loads((copy / "meta.json").read_text())
    (copy / "meta.json").write_text("{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        FeatureCache.open(copy)
    (copy / "meta.json").write_text(json.dumps({**meta, "version": 99}))
    with pytest.raises(DataError, match="format version 99"):
        FeatureCache.open(copy)
    with pytest.raises(DataError, match="not found"):
        FeatureCache.open(tmp_path / "nowhere")


def test_hdf5_store_dataset_builds_and_fingerprints(make_config, lite0, tmp_path):
    from mindhier.data.simulator import simulate

    cfg = make_config(subjects=(1,), image_store="hdf5")
    result = simulate(cfg, tmp_path / "h5")
    cache = build_feature_cache(result.root, lite0)
    store = cache.images["store"]
    assert store["kind"] == "hdf5" and store["file"] == layout.images_hdf5_name(cfg.stimuli.size)
    assert store["dtype"] == "float16" and store["shape"][1] == 3
    assert store["first_index"] == int(cache.indices[0]) and store["last_index"] == int(cache.indices[-1])
    requested = cache.indices[[9, 0, 31]]
    for cached, direct in zip(cache.get(requested), _direct(lite0, result.root, requested), strict=True):
        torch.testing.assert_close(cached, direct, rtol=2e-3, atol=2e-3)


def test_caption_features_are_cached_when_the_teacher_has_text(tiny_dataset, lite0, tmp_path):
    _, result = tiny_dataset
    teacher = FakeTextTeacher(lite0)
    cache = build_feature_cache(result.root, teacher, out=tmp_path / "text", batch_size=64)
    assert cache.has_text and "captions_sha256" in cache.images and cache.text_shape == (6, 3)
    requested = cache.indices[[40, 2]]
    with open_dataset(result.root) as dataset:
        expected = teacher.encode_text(dataset.captions(requested))
    torch.testing.assert_close(cache.get_text(requested), expected)
    with pytest.raises(ConfigError):
        lite0.encode_text(["x"])
