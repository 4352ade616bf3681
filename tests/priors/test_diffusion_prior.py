"""The diffusion baseline's prior on equal terms with the generator's: pretrained on the same stream and condition
with the generator prior's FLOPs, exported with its card, verified, and the start of a brain fine-tune (tiny)."""

import dataclasses
import json

import pytest
import torch
from safetensors.torch import load_file

from mindhier import run_layout
from mindhier.config import apply_overrides
from mindhier.train.diffusion import train_diffusion
from mindhier.train.pretrain import export_prior, pretrain_diffusion, verify_prior

STREAM_IMAGES, VAL_IMAGES = 160, 24


@pytest.fixture(scope="module")
def diffusion_prior(tiny_stage_runs, tmp_path_factory):
    cfg, _, _, tokenizer = tiny_stage_runs
    root = tmp_path_factory.mktemp("diffusion-prior")
    # FLOP-matched to 30 generator steps of the same config (the rule the shipped prior follows at 3,000)
    cfg = apply_overrides(cfg, ["train_diffusion.match_generator_steps=30", "train_diffusion.warmup_steps=30"])
    run = pretrain_diffusion(cfg, root / "run", STREAM_IMAGES, VAL_IMAGES, tokenizer=tokenizer, command="test")
    export_prior("diffusion", run.run_dir, to=root / "priors")
    return cfg, root, run


def test_the_prior_learns_the_stream_with_the_generator_priors_flops(diffusion_prior):
    _, _, run = diffusion_prior
    summary = run.summary
    assert summary["condition"] == "teacher" and summary["steps_rule"].startswith("FLOP-matched to 30 generator")
    assert summary["training_flops"] == pytest.approx(summary["generator_training_flops"], rel=0.5 / 30 + 0.05)
    assert 0.95 <= summary["parameter_ratio"] <= 1.05  # sized to the generator too
    losses = [json.loads(line)["loss"] for line in (run.run_dir / run_layout.LOG).read_text().splitlines()]
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last < 0.8 * first, (first, last)  # it denoises: the loss falls from ≈ 1 (noise in, noise out)


def test_the_card_and_weights_keep_what_sampling_needs(diffusion_prior):
    _, root, run = diffusion_prior
    card = json.loads((root / "priors" / "diffusion.json").read_text())
    assert card["dtype"] == "float16" and card["inputs"]["condition"] == "teacher"
    assert {"generator", "train_generator", "diffusion", "train_diffusion"} <= set(card["config"])
    state = load_file(str(root / "priors" / "diffusion.safetensors"))
    trained = load_file(str(run.run_dir / run_layout.weights_file("diffusion")))
    assert state["latent_std_C"].dtype == torch.float32 and torch.equal(state["latent_std_C"], trained["latent_std_C"])
    assert all(v.dtype == torch.float16 for k, v in state.items() if k not in ("latent_mean_C", "latent_std_C"))


@pytest.mark.slow
def test_verify_reruns_the_diffusion_priors_first_steps(diffusion_prior):
    _, root, _ = diffusion_prior
    card = json.loads((root / "priors" / "diffusion.json").read_text())
    result = verify_prior("diffusion", card=card)
    assert result["matches"], result


def test_a_brain_fine_tune_starts_from_the_prior(diffusion_prior, tiny_stage_runs, tmp_path):
    cfg, _, prior_run = diffusion_prior
    _, result, encoder, tokenizer = tiny_stage_runs
    tc = dataclasses.replace(cfg.train_diffusion, steps=2, init=str(prior_run.run_dir), eval_every=2)
    run = train_diffusion(
        dataclasses.replace(cfg, train_diffusion=tc), result.root, encoder, tokenizer, tmp_path / "ft"
    )
    assert run.summary["init"]["source"].startswith(str(prior_run.run_dir)) and run.summary["condition"] == "brain"
    start = load_file(str(prior_run.run_dir / run_layout.weights_file("diffusion")))
    tuned = run.model.state_dict()
    assert torch.equal(tuned["latent_mean_C"], start["latent_mean_C"])  # the prior's latent statistics are kept
    weight, before = tuned["x_embedder.weight"], start["x_embedder.weight"]
    assert not torch.equal(weight, before) and (weight - before).norm() < 0.1 * before.norm()  # two steps from it
