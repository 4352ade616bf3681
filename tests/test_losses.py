import dataclasses

import pytest
import torch

from mindhier.config import AlignmentConfig
from mindhier.losses import alignment_loss, flat_normalized, soft_clip_loss, stage1_loss
from mindhier.models.brain_encoder import EncoderOutput


def test_alignment_loss_is_scaled_mse_of_normalised_sequences():
    a, b = torch.randn(3, 5, 7), torch.randn(3, 5, 7)
    n_elements = 5 * 7
    mse = torch.nn.functional.mse_loss(flat_normalized(a), flat_normalized(b))
    assert alignment_loss(a, b) == pytest.approx(float(n_elements * mse), rel=1e-5)
    cos = torch.nn.functional.cosine_similarity(a.flatten(1), b.flatten(1)).mean()
    assert alignment_loss(a, b) == pytest.approx(float(2 - 2 * cos), rel=1e-5)
    assert alignment_loss(a, 3.0 * a) == pytest.approx(0.0, abs=1e-6)  # scale-free


def _soft_clip_reference(p, t, tau):
    """Loop version of MindEye's SoftCLIP for comparison."""
    n = p.shape[0]
    total = 0.0
    for direction in (0, 1):
        for i in range(n):
            labels = torch.softmax(torch.stack([t[i] @ t[j] / tau for j in range(n)]), 0)
            if direction == 0:
                logits = torch.stack([p[i] @ t[j] / tau for j in range(n)])
            else:
                logits = torch.stack([p[j] @ t[i] / tau for j in range(n)])
            total += -(labels * torch.log_softmax(logits, 0)).sum() / n
    return total / 2


def test_soft_clip_matches_a_loop_and_rewards_correct_pairs():
    p = flat_normalized(torch.randn(6, 10))
    t = flat_normalized(torch.randn(6, 10))
    assert soft_clip_loss(p, t, 0.1) == pytest.approx(float(_soft_clip_reference(p, t, 0.1)), rel=1e-5)
    right = soft_clip_loss(t + 0.01 * p, t, 0.05)
    shuffled = soft_clip_loss(t[torch.tensor([1, 2, 3, 4, 5, 0])], t, 0.05)
    assert right < shuffled


def _output(batch=4, levels=3, text=False):
    return EncoderOutput(
        levels_BMQD=torch.randn(batch, levels, 5, 8),
        heads=[torch.randn(batch, 5, 8 + m, requires_grad=True) for m in range(levels)],
        terminal_BQD=torch.randn(batch, 5, 10, requires_grad=True),
        text_BUD=torch.randn(batch, 3, 6, requires_grad=True) if text else None,
    )


@pytest.mark.parametrize(
    ("mode", "aligned"),
    [
        ("cascaded", ["align_level1", "align_level2", "align_level3"]),
        ("terminal_only", ["align_level3"]),
        ("single", ["align_level3"]),
    ],
)
def test_supervision_modes_choose_the_supervised_levels(mode, aligned):
    out = _output()
    targets = [torch.randn(4, 5, 8), torch.randn(4, 5, 9), torch.randn(4, 5, 10)]
    total, terms = stage1_loss(out, targets, AlignmentConfig(supervision=mode))
    assert sorted(k for k in terms if k.startswith("align_level")) == aligned
    assert {"align_terminal", "softclip"} <= set(terms)
    assert total.item() == pytest.approx(sum(terms.values()), rel=1e-5)
    total.backward()
    assert (out.heads[0].grad is not None) == (mode == "cascaded")


def test_text_terms_only_when_text_is_present_and_weighted():
    out = _output(text=True)
    targets = [torch.randn(4, 5, 8), torch.randn(4, 5, 9), torch.randn(4, 5, 10)]
    _, without = stage1_loss(out, targets, AlignmentConfig())
    assert "align_text" not in without
    text_target = torch.randn(4, 3, 6)
    _, with_text = stage1_loss(out, targets, AlignmentConfig(), text_target)
    _, half = stage1_loss(out, targets, dataclasses.replace(AlignmentConfig(), text_weight=0.5), text_target)
    assert half["align_text"] == pytest.approx(0.5 * with_text["align_text"], rel=1e-5)
