"""The priors that ship in the package: intact, documented, fit the demo, and do what their cards say.

These load the shipped weights (no training); `make test-slow` also reruns their first pretraining steps.
"""

import json

import numpy as np
import pytest
import torch

from mindhier import priors
from mindhier.checkpoint import load_state_strict
from mindhier.config import demo
from mindhier.data.image_tensors import resize_uint8, to_model_input
from mindhier.data.stimuli.scenes import ScenesSource, render_scene
from mindhier.errors import WeightsError
from mindhier.fileio import sha256_file
from mindhier.metrics.image import pixcorr
from mindhier.models.tokenizer import Tokenizer
from mindhier.train.warm_start import initial_weights

SHIPPED_BUDGET_BYTES = 25 * 1024 * 1024


def test_both_priors_ship_with_cards_that_match_their_weights():
    total = 0
    for kind in priors.SHIPPED:
        card = priors.card(kind)
        assert card["sha256"] == sha256_file(priors.weights_path(kind)), kind
        for field in ("command", "config", "seeds", "steps", "wall_seconds", "threads", "metrics", "machine"):
            assert card[field] not in ("", None, {}), (kind, field)
        assert card["stream"]["seed"] >= 1_000_000 and len(card["verify"]["losses"]) == card["verify"]["steps"]
        total += priors.weights_path(kind).stat().st_size
    assert total <= SHIPPED_BUDGET_BYTES
    generator = priors.card("generator")
    assert generator["inputs"]["condition"] == "teacher"  # conditioned as the brain will condition it
    assert generator["inputs"]["tokenizer"]["sha256"] == priors.card("tokenizer")["sha256"]  # on the shipped tokens


def test_the_demo_starts_from_the_priors():
    cfg = demo()
    assert cfg.train_tokenizer.init == "prior" and cfg.train_generator.init == "prior"
    for kind in priors.SHIPPED:
        start = initial_weights("prior", kind, cfg)  # refuses a prior of another architecture
        assert start.record["sha256"] == priors.card(kind)["sha256"]


def test_a_damaged_prior_is_refused(monkeypatch, tmp_path):
    damaged = tmp_path / "tokenizer.safetensors"
    damaged.write_bytes(priors.weights_path("tokenizer").read_bytes()[:-8] + b"\0" * 8)
    monkeypatch.setattr(priors, "weights_path", lambda kind: damaged)
    with pytest.raises(WeightsError, match="does not match its model card's sha256"):
        priors.state("tokenizer")


def test_the_tokenizer_prior_reconstructs_scenes_it_never_saw():
    """The demo's own test scenes (never in the stream) come back close to the truth: PixCorr at the tokenizer's
    resolution far above a randomly initialised tokenizer's."""
    cfg = demo()
    source = ScenesSource()
    images = np.stack([render_scene(source.scene_labels("test", i, cfg.simulator.seed), 64) for i in range(24)])
    small = resize_uint8(images, cfg.tokenizer.image_px)
    truth = to_model_input(small, "cpu")

    def score(model: Tokenizer) -> float:
        with torch.no_grad():
            recon = model.decode(model.encode(truth))
        return float(np.mean(pixcorr((truth + 1) / 2, ((recon + 1) / 2).clamp(0, 1))))

    shipped = Tokenizer(cfg.tokenizer)
    load_state_strict(shipped, priors.state("tokenizer"), "the tokenizer prior")
    torch.manual_seed(0)
    assert score(shipped.eval()) >= 0.85 > score(Tokenizer(cfg.tokenizer).eval()) + 0.3


def test_the_generator_prior_predicts_tokens_from_the_teacher_features():
    """Teacher-forced on stream test images under the shipped tokenizer, the generator conditioned on each
    image's own teacher features predicts its tokens better than when conditioned on another image's."""
    from mindhier.models.brain_condition import TeacherCondition
    from mindhier.models.scale_ar import GeneratorShapes, ScaleAR
    from mindhier.priors.stream import pretraining_images
    from mindhier.teachers import build_teacher

    cfg = demo()
    card = priors.card("generator")
    tokenizer = Tokenizer(cfg.tokenizer)
    load_state_strict(tokenizer, priors.state("tokenizer"), "the tokenizer prior")
    tokenizer.eval()
    teacher = build_teacher(cfg.teacher)
    dims, tokens = [lvl.dim for lvl in teacher.levels], teacher.levels[0].tokens
    generator = ScaleAR(cfg.generator, GeneratorShapes.for_levels(cfg.tokenizer, dims, tokens))
    load_state_strict(generator, priors.state("generator"), "the generator prior")
    generator.eval()
    images = pretraining_images(np.arange(32), "test")
    with torch.no_grad():
        levels = [lvl.float() for lvl in teacher(torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255)]
        target = tokenizer.encode(to_model_input(resize_uint8(images, cfg.tokenizer.image_px), "cpu"))
        inputs = tokenizer.quantize.teacher_forcing_inputs(target)

        def accuracy(order) -> float:
            condition = TeacherCondition(dims, tokens)([lvl[order] for lvl in levels])
            logits = generator(inputs, condition.levels_BMQD, condition.pooled_BP)
            return float((logits.argmax(-1) == torch.cat(target, dim=1)).float().mean())

        own, other = accuracy(torch.arange(32)), accuracy(torch.arange(32).roll(1))
    assert own > other + 0.05 and own > 10 / cfg.tokenizer.vocab, (own, other)
    assert json.dumps(card["metrics"])  # the card's metrics are plain JSON


@pytest.mark.slow
@pytest.mark.parametrize("kind", priors.SHIPPED)
def test_the_shipped_priors_reproduce_their_first_steps(kind):
    from mindhier.train.pretrain import verify_prior

    result = verify_prior(kind)
    # bit for bit on the machine class that trained them; within the drift bounds on any other CPU
    assert result["within_tolerance"], result
