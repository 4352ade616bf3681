"""Quality per scale, consistency over samples, and brain correlation: identities and orderings that must hold."""

import numpy as np
import pytest
import torch

from mindhier.data.image_tensors import resize_uint8
from mindhier.data.simulator.encoding_model import load_encoding_model
from mindhier.metrics.brain_correlation import brain_correlation
from mindhier.metrics.consistency import consistency
from mindhier.metrics.per_scale import per_scale_quality, scale_resolutions, split_strips


class PixelFeatures:
    class info:
        name, kind, note = "pixels", "proxy", "test"

    def __call__(self, images_N3HW):
        return images_N3HW.flatten(1)


def _scenes(n=12, side=32):
    from mindhier.data.stimuli.scenes import ScenesSource

    return ScenesSource().generate("test", n, side, seed=3).images_NHWC


def test_per_scale_is_perfect_for_the_truth_and_worse_when_coarser():
    truths = _scenes()
    resolutions = scale_resolutions(32, (1, 2, 4, 8))
    assert resolutions == [8, 8, 16, 32]
    blurred = resize_uint8(resize_uint8(truths, 4), 32)
    stack = np.stack([blurred, blurred, truths, truths], axis=1)  # [N, K, H, W, 3]
    strips = np.concatenate(list(stack.transpose(1, 0, 2, 3, 4)), axis=2)  # the K images side by side
    assert np.array_equal(split_strips(strips, 4), stack)
    scores = per_scale_quality(stack, truths, resolutions, PixelFeatures())
    assert np.allclose(scores["scale4.pixcorr"], 1) and np.allclose(scores["scale3.ssim"], 1)
    assert scores["scale4.pixels.two_way"].mean() == 1.0
    assert scores["scale1.pixcorr"].mean() < 0.99 and scores["scale2.ssim"].mean() < 0.99


def test_consistency_of_identical_and_of_noisy_samples():
    images = torch.from_numpy(_scenes(6)).permute(0, 3, 1, 2).float() / 255
    same, spread = consistency(torch.stack([images] * 3), PixelFeatures())
    assert np.allclose(same["pixel_variance"], 0) and np.allclose(same["pairwise_ssim"], 1)
    assert sum(spread["pairwise_ssim_histogram"]["counts"]) == 3 * 6  # pairs × images
    noisy = torch.stack([(images + 0.2 * torch.randn_like(images)).clamp(0, 1) for _ in range(3)])
    scores, _ = consistency(noisy)
    extractor = PixelFeatures()
    with_first, _ = consistency(noisy, extractor, extractor(noisy[0]))  # the first sample's features, known
    assert np.allclose(with_first["pairwise_feature_corr"], consistency(noisy, extractor)[0]["pairwise_feature_corr"])
    wrong, _ = consistency(noisy, extractor, extractor(noisy[1]))
    assert not np.allclose(wrong["pairwise_feature_corr"], with_first["pairwise_feature_corr"])  # they are used
    assert scores["pixel_variance"].mean() > 0.01 and scores["pairwise_ssim"].mean() < 0.9
    with pytest.raises(ValueError, match="at least 2 samples"):
        consistency(images[None])


def test_the_simulators_encoding_model_correlates_with_the_true_images_not_with_shuffled_ones(tiny_dataset):
    _, result = tiny_dataset
    from mindhier.data.nsd import open_dataset

    model = load_encoding_model(result.root, 1)
    with open_dataset(result.root, subjects=[1]) as dataset:
        test = dataset.split(1, "test")
        images, measured = test.images(), test.voxels()
        labels = list(dataset.recording(1).roi_labels)
    predicted = model.predicted_signal(images, None)
    assert predicted.shape == measured.shape
    true = brain_correlation(predicted, measured, labels)
    shuffled = brain_correlation(predicted[np.roll(np.arange(len(images)), 1)], measured, labels)
    assert set(true) == {"brain_corr.all", *(f"brain_corr.{r}" for r in ("V1", "V2", "V3", "hV4", "LO", "higher"))}
    assert true["brain_corr.all"].mean() > shuffled["brain_corr.all"].mean() + 0.1
    assert true["brain_corr.V1"].mean() > 0.2


@pytest.mark.parametrize("stored", ["../../../rec", "/tmp/elsewhere", "repeats/../../outside"])
def test_the_consistency_folders_a_manifest_names_stay_inside_the_reconstruction_folder(tmp_path, stored):
    from mindhier.errors import MindhierError
    from mindhier.metrics.recons_eval import _consistency

    recons = tmp_path / "recons" / "row"
    recons.mkdir(parents=True)
    manifest = {"determinism": {"seeds": [0, 1], "dirs": [".", stored]}}
    with pytest.raises(MindhierError, match="points outside"):
        _consistency(recons, manifest, np.arange(2), {}, 10, 0, {}, {})
