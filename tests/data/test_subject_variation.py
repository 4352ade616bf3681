"""Simulated subjects differ like people do — voxel counts, ROI sizes, pRF sizes, noise ceilings, semantic
mixtures — while seeing through the same stimulus features; `simulate --subjects 1..N` writes them."""

from __future__ import annotations

import dataclasses

import numpy as np

from mindhier.config import ROI_NAMES, tiny
from mindhier.data.simulator.voxels import random_subject, subject_traits


def _subject(cfg, subject, traits=True):
    rng = np.random.default_rng([0, subject, 2])
    drawn = subject_traits(cfg, np.random.default_rng([0, subject, 5])) if traits else None
    return random_subject(subject, cfg, 6, 4, 64, 3, rng, drawn)


def _roi_shares(model):
    labels = np.asarray(model.roi_labels())
    return np.array([(labels == name).mean() for name in ROI_NAMES])


def test_subjects_differ_in_roi_sizes_prf_sizes_noise_ceilings_and_semantic_mixtures():
    cfg = dataclasses.replace(tiny().simulator, voxels_min=3000, voxels_max=3000)  # same count: the rest must differ
    a, b = _subject(cfg, 1), _subject(cfg, 2)
    assert a.n_voxels == b.n_voxels
    assert np.abs(_roi_shares(a) - _roi_shares(b)).max() > 0.01
    v1_a, v1_b = a.roi_mask("V1"), b.roi_mask("V1")
    ratio = np.nanmedian(a.prf_sd_V[v1_a]) / np.nanmedian(b.prf_sd_V[v1_b])
    traits_a, traits_b = (subject_traits(cfg, np.random.default_rng([0, s, 5])) for s in (1, 2))
    assert ratio != 1.0 and abs(np.log(ratio) - np.log(traits_a.prf_size / traits_b.prf_size)) < 0.1
    assert np.median(a.ncsnr_V) / np.median(b.ncsnr_V) != 1.0
    assert not np.array_equal(
        a.semantic_weights_DV != 0, b.semantic_weights_DV[:, : a.semantic_weights_DV.shape[1]] != 0
    )


def test_without_variation_the_traits_are_one_and_change_nothing():
    cfg = dataclasses.replace(tiny().simulator, roi_size_sd=0.0, prf_size_sd=0.0, ncsnr_subject_sd=0.0)
    traits = subject_traits(cfg, np.random.default_rng(3))
    assert traits.prf_size == 1.0 and traits.ncsnr == 1.0 and np.all(traits.roi_size == 1.0)
    with_traits, without = _subject(cfg, 4), _subject(cfg, 4, traits=False)
    np.testing.assert_array_equal(with_traits.roi_V, without.roi_V)
    np.testing.assert_array_equal(with_traits.prf_sd_V, without.prf_sd_V)
    np.testing.assert_array_equal(with_traits.ncsnr_V, without.ncsnr_V)


def test_simulate_writes_a_range_of_subjects_that_differ(tmp_path):
    from mindhier.cli import main
    from mindhier.fileio import read_json

    out = tmp_path / "data"
    argv = ["simulate", "--preset", "tiny", "--subjects", "1..3", "--n-train", "60", "--n-test", "6", "--out", str(out)]
    assert main([*argv, "--quiet"]) == 0
    subjects = read_json(out / "manifest.json", "manifest")["subjects"]
    assert sorted(subjects) == ["1", "2", "3"]
    counts = {s: e["n_voxels"] for s, e in subjects.items()}
    assert len(set(counts.values())) == 3
    ceilings = {s: e["median_noise_ceiling"] for s, e in subjects.items()}
    assert len(set(ceilings.values())) == 3
    assert all(set(e["traits"]) == {"roi_size", "prf_size", "ncsnr"} for e in subjects.values())
