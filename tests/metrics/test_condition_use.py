"""Condition use per scale: exactly zero where a scale cannot see what differs between the conditions, non-zero where
it can; the shuffle moves every image; the command runs on a trained generator and writes its record."""

import json

import numpy as np
import pytest
import torch

from conftest import tiny_scale_tokenizer
from mindhier.cli import main
from mindhier.config import GeneratorConfig, tiny
from mindhier.metrics.condition_use import condition_use, derangement
from mindhier.models.brain_condition import Condition
from mindhier.models.routing import levels_for_scale
from mindhier.models.scale_ar import GeneratorShapes, ScaleAR
from mindhier.models.tokenizer import Tokenizer

SCALES = (1, 2, 4, 8)
SHAPES = GeneratorShapes(
    vocab=64, latent_channels=8, scales=SCALES, n_levels=4, level_tokens=5, context_width=12, pooled_width=10
)


def make_model(routing="coarse_to_fine") -> ScaleAR:
    torch.manual_seed(0)
    model = ScaleAR(GeneratorConfig(depth=2, width=32, heads=2, routing=routing), SHAPES)
    for p in model.parameters():  # every path matters (Switti's init starts the blocks near the identity)
        p.data.normal_(0, 0.2)
    return model.eval()


def make_tokenizer() -> Tokenizer:
    return tiny_scale_tokenizer(SCALES)


def images(tokenizer: Tokenizer, n: int = 6) -> np.ndarray:
    side = tokenizer.cfg.image_px
    return np.random.default_rng(0).integers(0, 256, (n, side, side, 3), dtype=np.uint8)


def condition_differing_in_level(level: int, n: int = 6) -> Condition:
    """n conditions equal everywhere but in level `level` (1-based); the pooled vector is shared."""
    g = torch.Generator().manual_seed(3)
    levels = torch.randn(1, 4, 5, 12, generator=g).repeat(n, 1, 1, 1)
    levels[:, level - 1] = torch.randn(n, 5, 12, generator=g)
    pooled = torch.randn(1, 10, generator=g).repeat(n, 1)
    return Condition(levels, pooled, levels[:, -1, :, :10])


def test_the_shuffle_moves_every_image_and_is_seeded():
    for n in (2, 3, 10, 101):
        moved = derangement(n, seed=n)
        assert sorted(moved.tolist()) == list(range(n)) and (moved != torch.arange(n)).all()
        assert torch.equal(moved, derangement(n, seed=n))
    assert not torch.equal(derangement(50, 0), derangement(50, 1))
    with pytest.raises(ValueError):
        derangement(1, 0)


@pytest.mark.parametrize("level", [1, 4])
def test_use_over_shuffled_is_zero_exactly_where_the_routing_hides_the_level(level):
    model, tokenizer = make_model(), make_tokenizer()
    condition = condition_differing_in_level(level)
    null = Condition(*(t[:1] * 0 for t in condition))
    record = condition_use(model, tokenizer, condition, null, images(tokenizer), batch_size=4, n_resamples=200)
    for row in record["scales"]:
        sees = level in levels_for_scale("coarse_to_fine", row["scale"], len(SCALES), 4)
        use = row["use_over_shuffled"]["mean"]
        assert (abs(use) > 1e-4) if sees else use == 0.0, (row["scale"], use)
        assert row["nll"]["true"] > 0 and 0 <= row["accuracy"]["true"] <= 1
        assert row["use_over_null"]["mean"] != 0.0  # the null differs in every level and in the pooled vector


def test_a_disconnected_condition_shows_no_use_at_any_scale():
    model, tokenizer = make_model("all_levels"), make_tokenizer()
    with torch.no_grad():
        model.fmri_pooler.weight.zero_()
        model.fmri_pooler.bias.zero_()
        for block in model.blocks:
            block.cross_attn.proj.weight.zero_()
    condition = condition_differing_in_level(2)
    null = Condition(*(t[:1] * 0 for t in condition))
    record = condition_use(model, tokenizer, condition, null, images(tokenizer), batch_size=4, n_resamples=200)
    for row in record["scales"]:
        assert row["use_over_null"]["mean"] == 0.0 and row["use_over_shuffled"]["mean"] == 0.0
        assert row["nll"]["true"] == row["nll"]["null"] == row["nll"]["shuffled"]
    assert len(record["per_image"]["nll.true"]) == 6


def test_eval_condition_on_the_tiny_demo_generator(tiny_demo, tmp_path, capsys):
    folder, _, code = tiny_demo
    assert code == 0
    out = tmp_path / "condition.json"
    argv = ["eval", "condition", "--generator", str(folder / "generators" / "coarse_to_fine")]
    argv += ["--data", str(folder / "data"), "--out", str(out), "--quiet"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "brain inputs, split val" in printed and "teacher inputs, split val" in printed
    record = json.loads(out.read_text())
    assert record["split"] == "val" and record["routing"] == "coarse_to_fine" and record["trained_on"] == "brain"
    for arm in ("brain", "teacher"):
        rows = record["inputs"][arm]["scales"]
        assert [r["side"] for r in rows] == list(tiny().tokenizer.scales)
        assert all(np.isfinite(r["nll"]["true"]) and np.isfinite(r["use_over_null"]["mean"]) for r in rows)
    assert main(argv) == 2  # an existing record is never replaced without --overwrite
    assert "exists already" in capsys.readouterr().err
