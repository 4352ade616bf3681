import dataclasses

import numpy as np
import pytest
import torch

from mindhier.metrics import evaluate
from mindhier.metrics.image import pixcorr, ssim
from mindhier.metrics.statistics import bootstrap_ci, paired_difference
from mindhier.metrics.suite import correlation_distance


@dataclasses.dataclass(frozen=True)
class Info:
    name: str
    kind: str = "proxy"
    network: str = "pixels"
    layer: str = "-"
    weights: str = "-"
    input_px: int = 8
    metric: str = "both"
    note: str = "proxy, test"
    missing: str | None = None


class PixelFeatures:
    """A stand-in extractor: the image downsampled to 8 × 8, flattened."""

    info = Info("pixels8")

    def __call__(self, images):
        return torch.nn.functional.interpolate(images, size=(8, 8), mode="area").flatten(1)


class Absent:
    info = Info("alexnet_2", kind="absent", metric="two_way", note="", missing="put alexnet.pth in ~/.cache")

    def __call__(self, images):
        raise AssertionError("an absent extractor must not be called")


def images(n=12, seed=0, size=20):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def test_identical_images_score_perfectly_and_absent_networks_are_listed():
    truth = images()
    result = evaluate(truth, truth, extractors=[PixelFeatures(), Absent()], n_resamples=200)
    assert result.summary["pixcorr"]["mean"] == pytest.approx(1.0)
    assert result.summary["ssim"]["mean"] == pytest.approx(1.0)
    assert result.summary["pixels8.two_way"]["mean"] == 1.0
    assert result.summary["pixels8.corr_distance"]["mean"] == pytest.approx(0.0, abs=1e-9)
    assert result.summary["alexnet_2"] == {"kind": "absent", "missing": "put alexnet.pth in ~/.cache"}
    assert [e["kind"] for e in result.extractors] == ["proxy", "absent"]
    assert result.summary["pixels8.two_way"]["note"] == "proxy, test"


def test_unrelated_images_score_near_chance_and_reconstructions_can_be_smaller():
    truth, other = images(seed=0), images(seed=1, size=10)
    result = evaluate(other, truth, extractors=[PixelFeatures()], n_resamples=200)
    assert abs(result.summary["pixcorr"]["mean"]) < 0.2
    assert 0.2 < result.summary["pixels8.two_way"]["mean"] < 0.8
    assert result.per_image["ssim"].shape == (12,)


def test_pixel_metrics_match_a_direct_computation_at_425_px():
    from skimage.color import rgb2gray
    from skimage.metrics import structural_similarity

    a, b = images(2, seed=3), images(2, seed=4)
    up = lambda x: torch.nn.functional.interpolate(  # noqa: E731
        torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255,
        size=(425, 425),
        mode="bilinear",
        align_corners=False,
        antialias=True,
    )
    ua, ub = up(a), up(b)
    expected_r = [np.corrcoef(ua[i].flatten(), ub[i].flatten())[0, 1] for i in range(2)]
    np.testing.assert_allclose(pixcorr(a, b), expected_r, rtol=1e-6)
    expected_s = [
        structural_similarity(
            rgb2gray(ua[i].permute(1, 2, 0).numpy()),
            rgb2gray(ub[i].permute(1, 2, 0).numpy()),
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=1.0,
        )
        for i in range(2)
    ]
    np.testing.assert_allclose(ssim(a, b), expected_s, rtol=1e-6)


def test_correlation_distance_hand_computed():
    truth = torch.tensor([[1.0, 2.0, 3.0], [1.0, 0.0, 1.0]])
    pred = torch.tensor([[2.0, 4.0, 6.0], [0.0, 1.0, 0.0]])
    np.testing.assert_allclose(correlation_distance(pred, truth), [0.0, 2.0], atol=1e-12)


def test_bootstrap_is_reproducible_from_its_seed_and_covers_the_mean():
    values = np.random.default_rng(0).normal(0.3, 0.1, 200)
    a, b, c = bootstrap_ci(values, 2000, seed=1), bootstrap_ci(values, 2000, seed=1), bootstrap_ci(values, 2000, seed=2)
    assert a == b and a["ci95"] != c["ci95"]
    lo, hi = a["ci95"]
    assert lo < values.mean() < hi and hi - lo < 0.04
    with pytest.raises(ValueError, match="finite"):
        bootstrap_ci([1.0, float("nan")])


def test_paired_difference_detects_a_consistent_gain_and_not_noise():
    rng = np.random.default_rng(0)
    base = rng.normal(0.5, 0.2, 100)
    better = base + 0.05 + rng.normal(0, 0.01, 100)
    gain = paired_difference(better, base, 2000)
    assert gain["ci95"][0] > 0 and gain["p_wilcoxon"] < 1e-6 and gain["p_bootstrap"] < 0.01
    noise = paired_difference(base + rng.normal(0, 0.01, 100), base, 2000)
    assert noise["ci95"][0] < 0 < noise["ci95"][1]
