import hashlib
import json

import h5py
import numpy as np
import pytest

from mindhier.config import ROI_NAMES
from mindhier.data import layout
from mindhier.data.noise_ceiling import ncsnr_from_trials, noise_ceiling
from mindhier.data.simulator import simulate
from mindhier.data.simulator.features import compute_features, lite2_semantic_fn
from mindhier.data.simulator.voxels import random_subject
from mindhier.data.stimuli import CATEGORIES, make_source


def _digests(root):
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_same_seed_writes_identical_files_and_another_seed_different_subjects(tiny_dataset, tmp_path, make_config):
    cfg, first = tiny_dataset
    again = simulate(cfg, tmp_path / "again")
    assert _digests(first.root) == _digests(again.root)

    other = simulate(make_config(subjects=(1, 2), seed=1), tmp_path / "other")
    for subject in (1, 2):
        a, b = first.subjects[subject].model, other.subjects[subject].model
        assert a.n_voxels != b.n_voxels or not np.allclose(a.prf_xy_V2, b.prf_xy_V2, equal_nan=True)
    with h5py.File(layout.betas_path(first.root, 1)) as f, h5py.File(layout.betas_path(other.root, 1)) as g:
        assert f["betas"].shape != g["betas"].shape or not np.allclose(f["betas"][:], g["betas"][:])


def test_subjects_differ_within_one_dataset(tiny_dataset):
    _, result = tiny_dataset
    one, two = result.subjects[1], result.subjects[2]
    assert one.model.n_voxels != two.model.n_voxels
    assert not np.array_equal(one.design.image_T, two.design.image_T)  # own trial order
    assert sorted(one.design.image_T) == sorted(two.design.image_T)  # same images shown


def test_layout_matches_mindeye2(tiny_dataset):
    cfg, result = tiny_dataset
    root, sim = result.root, cfg.simulator
    manifest = json.loads((root / layout.MANIFEST).read_text())
    n_images = sim.n_train + sim.n_test
    assert manifest["n_images"] == n_images
    assert len(list((root / "images").glob("image_*.png"))) == n_images
    assert np.load(root / layout.CAPTIONS_NPY, allow_pickle=False).shape == (n_images, 1)
    for subject in (1, 2):
        entry = manifest["subjects"][str(subject)]
        with h5py.File(layout.betas_path(root, subject)) as f:
            betas = f["betas"]
            assert betas.dtype == np.float32
            assert betas.shape == (sim.n_train + sim.n_test * sim.test_repeats, entry["n_voxels"])
        assert len(entry["roi_labels"]) == entry["n_voxels"] == len(entry["noise_ceiling"])
        assert set(entry["roi_labels"]) == set(ROI_NAMES)
        design = result.subjects[subject].design
        n_train_shards = len(list(layout.shard_dir(root, subject, "train").glob("*.tar")))
        assert n_train_shards == design.n_sessions  # one shard per session
        assert (layout.shard_dir(root, subject, "test") / "0.tar").is_file()
        # behav columns: 0 image, 5 betas row, 16 shared1000, in trial order
        behav = design.behav(subject)
        assert behav.shape[1] == 17
        np.testing.assert_array_equal(behav[:, 5], np.arange(len(behav)))
        np.testing.assert_array_equal(behav[:, 0], design.image_T)
        assert set(behav[behav[:, 16] == 1, 0]) == set(result.test_images.tolist())


def test_design_is_nsd_like(tiny_dataset):
    cfg, result = tiny_dataset
    design = result.subjects[1].design
    counts = np.bincount(design.image_T)
    assert set(counts[result.train_images]) == {1}
    assert set(counts[result.test_images]) == {cfg.simulator.test_repeats}
    per_session = np.bincount(design.session_T)[1:]
    assert per_session[:-1].tolist() == [cfg.simulator.session_trials] * (design.n_sessions - 1)
    assert 0 < per_session[-1] <= cfg.simulator.session_trials
    assert design.run_T.min() == 1 and design.run_T.max() == 12
    sessions_per_test_image = [len(set(design.session_T[design.image_T == i])) for i in result.test_images]
    assert np.mean(sessions_per_test_image) > 1.5  # repetitions spread over sessions
    assert design.is_old_T.sum() == cfg.simulator.n_test * (cfg.simulator.test_repeats - 1)
    first_showing = np.unique(design.image_T, return_index=True)[1]
    assert not design.is_old_T[first_showing].any()


def test_betas_are_zscored_within_sessions(tiny_dataset):
    _, result = tiny_dataset
    design = result.subjects[1].design
    with h5py.File(layout.betas_path(result.root, 1)) as f:
        betas = f["betas"][:]
    for session in range(1, design.n_sessions + 1):
        rows = design.session_T == session
        np.testing.assert_allclose(betas[rows].mean(0), 0, atol=1e-4)
        np.testing.assert_allclose(betas[rows].std(0), 1, atol=1e-3)


def test_configured_noise_ceiling_is_honoured(tmp_path, make_config):
    """Split-half reliability of test voxels matches the configured ncsnr: r = s² / (s² + 1)."""
    cfg = make_config(
        n_train=60,
        n_test=400,
        test_repeats=2,
        session_trials=300,
        ncsnr_min=0.1,
        ncsnr_max=1.5,
        voxels_min=400,
        voxels_max=400,
    )
    result = simulate(cfg, tmp_path / "nc")
    subject = result.subjects[1]
    design = subject.design
    with h5py.File(layout.betas_path(result.root, 1)) as f:
        betas = f["betas"][:]
    test_rows = np.flatnonzero(design.is_test_T)
    order = test_rows[np.lexsort((test_rows, design.image_T[test_rows]))]
    first, second = betas[order[0::2]], betas[order[1::2]]
    assert np.array_equal(design.image_T[order[0::2]], design.image_T[order[1::2]])
    measured = np.array([np.corrcoef(first[:, v], second[:, v])[0, 1] for v in range(betas.shape[1])])
    s2 = subject.model.ncsnr_V.astype(np.float64) ** 2
    expected = s2 / (s2 + 1)
    assert abs(np.median(measured) - np.median(expected)) < 0.04
    assert np.corrcoef(measured, expected)[0, 1] > 0.85
    assert np.mean(np.abs(measured - expected)) < 0.07
    # the manifest's measured ceiling uses NSD's estimator on the same trials
    estimated = ncsnr_from_trials(betas[test_rows], design.image_T[test_rows])
    np.testing.assert_allclose(noise_ceiling(estimated, 2), subject.noise_ceiling_measured_V, rtol=1e-5)
    assert np.corrcoef(estimated, subject.model.ncsnr_V)[0, 1] > 0.85


def test_noise_ceiling_formula_matches_nsd():
    assert noise_ceiling(np.array([1.0]), 3)[0] == pytest.approx(75.0)
    assert noise_ceiling(np.array([0.0]), 3)[0] == 0.0
    assert noise_ceiling(np.array([0.5]), 1)[0] == pytest.approx(20.0)


@pytest.fixture(scope="module")
def hierarchy_subject():
    """A tiny subject calibrated on 600 scenes, plus the features of those scenes."""
    from mindhier.config import tiny

    sim = tiny().simulator
    scenes = make_source("scenes").generate("train", 600, 32, seed=0)
    semantic = lite2_semantic_fn(sim.semantic_px)
    features = compute_features(scenes.images_NHWC, scenes.categories_NJ, sim.retina_px, sim.feature_grid, semantic)
    model = random_subject(
        1,
        sim,
        features.early_NCGG.shape[1],
        features.mid_NCGG.shape[1],
        features.deep_ND.shape[1],
        len(CATEGORIES),
        np.random.default_rng(0),
    ).calibrated(features)
    return sim, scenes, features, model, semantic


def _probe_images(size, positions):
    """Grey images with one small black/white checker patch at each (x, y) in [-1, 1]²."""
    yy, xx = np.mgrid[0:size, 0:size]
    images = []
    for x, y in positions:
        image = np.full((size, size, 3), 128, np.uint8)
        cx, cy = (x + 1) / 2 * size, (y + 1) / 2 * size
        patch = (np.abs(xx + 0.5 - cx) <= 3) & (np.abs(yy + 0.5 - cy) <= 3)
        image[patch] = (((xx // 2 + yy // 2) % 2) * 255)[patch][:, None]
        images.append(image)
    return np.stack(images)


def test_early_voxels_respond_to_their_receptive_field_location(hierarchy_subject):
    sim, _, _, model, semantic = hierarchy_subject
    grid = np.linspace(-0.75, 0.75, 7)
    positions = np.array([(x, y) for y in grid for x in grid])
    probes = _probe_images(32, positions)
    features = compute_features(
        probes,
        np.zeros((len(probes), len(CATEGORIES)), np.float32),
        sim.retina_px,
        sim.feature_grid,
        semantic,
    )
    response = model.signal(features).numpy()
    preferred = positions[response.argmax(axis=0)]
    error = np.hypot(*(preferred - model.prf_xy_V2).T)
    v1 = model.roi_mask("V1")
    assert np.median(error[v1]) < 0.2  # probe spacing is 0.25
    # a voxel answers more to a probe on its pRF than to the probe farthest from it
    nearest = np.argmin(np.hypot(*(positions[:, None] - model.prf_xy_V2[None]).transpose(2, 0, 1)), axis=0)
    farthest = np.argmax(np.hypot(*(positions[:, None] - model.prf_xy_V2[None]).transpose(2, 0, 1)), axis=0)
    cols = np.arange(model.n_voxels)
    closer_wins = response[nearest, cols] > response[farthest, cols]
    assert closer_wins[v1].mean() > 0.95
    assert closer_wins[model.roi_mask("V2", "V3")].mean() > 0.9


def test_higher_voxels_respond_to_category_and_early_ones_hardly(hierarchy_subject):
    _, scenes, features, model, _ = hierarchy_subject
    signal = model.signal(features).numpy()
    design = np.c_[scenes.categories_NJ, np.ones(len(scenes))]
    coef, *_ = np.linalg.lstsq(design, signal, rcond=None)
    r2 = 1 - ((signal - design @ coef) ** 2).sum(0) / ((signal - signal.mean(0)) ** 2).sum(0)
    higher, v1, mid = (
        np.median(r2[model.roi_mask("higher")]),
        np.median(r2[model.roi_mask("V1")]),
        np.median(r2[model.roi_mask("hV4", "LO")]),
    )
    assert higher > 0.35
    assert higher > 5 * v1
    assert v1 < mid < higher  # category information grows along the hierarchy


def test_hdf5_image_store_holds_the_same_images(tmp_path, make_config, tiny_dataset):
    _, png_result = tiny_dataset
    cfg = make_config(subjects=(1, 2), image_store="hdf5")
    result = simulate(cfg, tmp_path / "h5")
    with h5py.File(result.root / layout.images_hdf5_name(cfg.stimuli.size)) as f:
        images = f["images"]
        assert images.dtype == np.float16 and images.shape[1] == 3
        from PIL import Image

        for index in (0, 7, len(images) - 1):
            png = np.asarray(Image.open(layout.image_png_path(png_result.root, index)))
            stored = np.rint(images[index].astype(np.float32).transpose(1, 2, 0) * 255)
            np.testing.assert_array_equal(stored, png)
    assert not (result.root / "images").exists()
