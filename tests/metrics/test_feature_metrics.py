import numpy as np
import pytest
import torch

from mindhier.metrics.identification import correlation_matrix, cosine_per_item, two_way_identification
from mindhier.metrics.probes import fit_probe, fit_ridge
from mindhier.metrics.retrieval import retrieval_top1


def test_identical_features_identify_and_retrieve_perfectly():
    x = torch.randn(40, 3, 8)
    assert two_way_identification(x, x).mean() == 1.0
    result = retrieval_top1(x, x, pool=300, draws=5)
    assert result["brain_to_image_top1"] == result["image_to_brain_top1"] == 1.0
    assert result["pool"] == 40 and result["chance"] == pytest.approx(1 / 40)


def test_random_features_sit_at_chance():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(400, 64, generator=g), torch.randn(400, 64, generator=g)
    assert abs(two_way_identification(a, b).mean() - 0.5) < 0.03
    result = retrieval_top1(a, b, pool=300, draws=10)
    assert result["pool"] == 300
    assert result["brain_to_image_top1"] < 0.03


def test_two_way_identification_counts_like_mindeye2():
    """Hand-checkable case: prediction j beats target i ≠ j when corr(t_i, p_j) < corr(t_j, p_j)."""
    targets = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    preds = torch.tensor([[1.0, 0.1, 0.0], [0.9, 1.0, 0.0], [1.0, 0.0, 0.0]])
    r = correlation_matrix(targets, preds).numpy()
    expected = [np.mean([r[i, j] < r[j, j] for i in range(3) if i != j]) for j in range(3)]
    np.testing.assert_allclose(two_way_identification(preds, targets), expected)
    assert two_way_identification(preds, targets)[2] == 0.0  # prediction 2 looks like target 0


def test_cosine_per_item():
    a = torch.randn(5, 4)
    np.testing.assert_allclose(cosine_per_item(a, 2 * a), 1.0, rtol=1e-12)
    np.testing.assert_allclose(cosine_per_item(a, -a), -1.0, rtol=1e-12)


def test_ridge_probe_recovers_a_linear_map_and_picks_a_small_ridge():
    g = torch.Generator().manual_seed(1)
    w, bias = torch.randn(6, 3, generator=g), torch.randn(3, generator=g)
    x_train, x_val = torch.randn(200, 4, 6, generator=g), torch.randn(50, 4, 6, generator=g)
    probe = fit_probe(x_train, x_train @ w + bias, x_val, x_val @ w + bias)
    torch.testing.assert_close(probe.weight_DDm, w.double(), atol=0.05, rtol=0.05)
    assert probe.ridge == min((1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0))
    heavy = fit_ridge(x_train, x_train @ w + bias, ridge=1e4)
    assert heavy.weight_DDm.abs().max() < 0.01  # strong ridge shrinks to the mean
