"""Pretraining a prior, exporting it with its model card, and `--verify`, on the tiny preset (seconds)."""

import json

import pytest
import torch

from mindhier.cli import main
from mindhier.config import apply_overrides, tiny
from mindhier.errors import ConfigError
from mindhier.fileio import sha256_file
from mindhier.train.pretrain import export_prior, pretrain_generator, pretrain_tokenizer, verify_prior
from mindhier.train.warm_start import initial_weights

STEPS = ["train_tokenizer.steps=22", "train_tokenizer.warmup_steps=30", "train_generator.steps=22"]
STEPS += ["train_generator.warmup_steps=30", "train_generator.condition=teacher"]


@pytest.fixture(scope="module")
def priors(tmp_path_factory):
    root = tmp_path_factory.mktemp("pretrain")
    cfg = apply_overrides(tiny(), STEPS)
    tokenizer = pretrain_tokenizer(cfg, root / "tokenizer", 200, 24, command="mindhier pretrain tokenizer (test)")
    export_prior("tokenizer", tokenizer.run_dir, to=root / "priors")
    generator = pretrain_generator(cfg, root / "generator", 200, 24, tokenizer=tokenizer.run_dir, command="test")
    export_prior("generator", generator.run_dir, to=root / "priors")
    return cfg, root, tokenizer, generator


def test_model_cards_say_how_the_weights_were_made(priors):
    cfg, root, tokenizer, _ = priors
    card = json.loads((root / "priors" / "tokenizer.json").read_text())
    assert card["sha256"] == sha256_file(root / "priors" / "tokenizer.safetensors") and card["dtype"] == "float32"
    assert card["command"] == "mindhier pretrain tokenizer (test)" and card["steps"] == 22
    assert card["stream"] == {"seed": 5_000_011, "images": 200, "val_images": 24, "stimulus_px": 64}
    assert card["config"]["tokenizer"]["vocab"] == cfg.tokenizer.vocab and len(card["verify"]["losses"]) == 20
    assert card["threads"] == torch.get_num_threads() and card["wall_seconds"] > 0
    gen = json.loads((root / "priors" / "generator.json").read_text())
    assert gen["dtype"] == "float16" and gen["inputs"]["condition"] == "teacher"
    assert gen["inputs"]["tokenizer"]["sha256"] == sha256_file(tokenizer.run_dir / "tokenizer.safetensors")


@pytest.mark.slow
def test_verify_reproduces_the_recorded_losses_exactly(priors):
    _, root, _, _ = priors
    for kind in ("tokenizer", "generator"):
        card = json.loads((root / "priors" / f"{kind}.json").read_text())
        result = verify_prior(kind, card=card)
        assert result["matches"] and result["losses"] == card["verify"]["losses"], kind
    card["verify"]["losses"][7] += 1e-7  # a recorded loss the code does not reproduce is caught
    result = verify_prior("generator", card=card)
    assert not result["matches"] and result["first_different_step"] == 8
    assert result["within_tolerance"]  # as small as another CPU's summation order: --verify still passes
    card["config_full"]["train_generator"]["seed"] += 1  # another start: the very first loss differs
    result = verify_prior("generator", card=card)
    assert not result["within_tolerance"] and result["first_step_difference"] > 10 * result["tolerance"]["first_step"]


def test_a_run_starts_from_exported_weights(priors, tmp_path):
    from mindhier.runs import load_tokenizer
    from mindhier.train.tokenizer import train_tokenizer

    cfg, root, tokenizer, _ = priors
    weights = root / "priors" / "tokenizer.safetensors"
    kept = apply_overrides(cfg, [f"train_tokenizer.init={weights}", "train_tokenizer.steps=0"])
    run = train_tokenizer(kept, f"folder:{_pictures(tmp_path)}", tmp_path / "kept")
    ours, theirs = load_tokenizer(run.run_dir).state_dict(), load_tokenizer(tokenizer.run_dir).state_dict()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)  # 0 steps: the start weights, as they are
    assert json.loads((run.run_dir / "inputs.json").read_text())["init"]["source"] == str(weights)
    with pytest.raises(ConfigError, match="is neither `prior`, a tokenizer run folder nor a weights file"):
        initial_weights(str(tmp_path / "nothing"), "tokenizer", cfg)


def _pictures(tmp_path):
    import numpy as np
    from PIL import Image

    folder = tmp_path / "pictures"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(40):
        Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(folder / f"p{i:02d}.png")
    return folder


def test_cli_exports_and_verifies_a_priors_folder(priors, tmp_path, capsys):
    tokenizer = priors[2]
    folder = tmp_path / "priors"
    assert main(["pretrain", "tokenizer", "--export", str(tokenizer.run_dir), "--priors", str(folder)]) == 0
    assert main(["pretrain", "tokenizer", "--verify", "--priors", str(folder), "--steps", "5", "--quiet"]) == 0
    assert "the first 5 steps rerun" in capsys.readouterr().out
    card = json.loads((folder / "tokenizer.json").read_text())
    losses = list(card["verify"]["losses"])
    card["verify"]["losses"][2] = losses[2] * 1.01  # a later step drifted as another CPU's sums make it: passes
    (folder / "tokenizer.json").write_text(json.dumps(card))
    assert main(["pretrain", "tokenizer", "--verify", "--priors", str(folder), "--steps", "5", "--quiet"]) == 0
    assert "match within the bounds" in capsys.readouterr().out
    card["verify"]["losses"][2] = losses[2] * 1.1  # far beyond any drift
    (folder / "tokenizer.json").write_text(json.dumps(card))
    assert main(["pretrain", "tokenizer", "--verify", "--priors", str(folder), "--steps", "5", "--quiet"]) == 2
    assert "DIFFER from step 3" in capsys.readouterr().out
    card["verify"]["losses"][2] = losses[2]
    card["verify"]["losses"][0] = losses[0] * (1 + 1e-4)  # the initial weights' forward pass must agree closely
    (folder / "tokenizer.json").write_text(json.dumps(card))
    assert main(["pretrain", "tokenizer", "--verify", "--priors", str(folder), "--steps", "5", "--quiet"]) == 2
    assert "DIFFER from step 1" in capsys.readouterr().out


def readme_tables():
    import importlib.util
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "scripts" / "readme_tables.py"
    spec = importlib.util.spec_from_file_location("readme_tables", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_evaluation_on_the_stream_goes_into_the_model_card(priors, tmp_path, capsys):
    """Condition use, the oracle per routing and the direct decoder, on held-out stream images, into the card."""
    cfg, _, _, generator = priors
    run = generator.run_dir
    argv = ["pretrain", "generator", "--evaluate", str(run), "--val-images", "12", "--images", "64", "--quiet"]
    argv += ["--direct-decoder", "--decoder-steps", "30", "--no-judge"]
    result = tmp_path / "results" / "prior_ablation" / "variant.json"
    result.parent.mkdir(parents=True)
    assert main([*argv, "--record", str(result), "--set", "sampler.temperature=0.5"]) == 0
    out = capsys.readouterr().out
    assert "teacher features of stream test split, first 12" in out and "direct decoder" in out
    use = json.loads((run / "condition_use.json").read_text())
    assert use["n_images"] == 12 and [r["side"] for r in use["scales"]] == list(cfg.tokenizer.scales)
    oracle = json.loads((run / "oracle.json").read_text())
    assert set(oracle["rows"]) == {"tokenizer ceiling", "coarse_to_fine", "fine_to_coarse", "all_levels",
                                   "static_terminal"}  # fmt: skip
    ceiling, routed = oracle["rows"]["tokenizer ceiling"]["pixcorr"], oracle["rows"]["coarse_to_fine"]["pixcorr"]
    assert ceiling["n"] == 12 and ceiling["mean"] > routed["mean"]  # 22 steps of training: far below the ceiling
    direct = json.loads((run / "direct_decoder.json").read_text())
    assert direct["training"]["steps"] == 30 and set(direct["scores"]) == {"pixcorr", "ssim"}
    numbers = json.loads(result.read_text())["numbers"]  # the figures of the README's prior ablation
    assert numbers["oracle"]["sampler"]["temperature"] == 0.5 and numbers["trained"]["steps"] == 22
    assert numbers["oracle"]["rows"]["coarse_to_fine"]["pixcorr"]["mean"] == round(routed["mean"], 3)
    assert len(numbers["condition_use"]["over_shuffled"]) == len(cfg.tokenizer.scales)
    rendered = readme_tables().prior_ablation_table([{**json.loads(result.read_text()), "variant": "variant"}])
    assert rendered.startswith("| variant |") and "T 0.5, cfg 3" in rendered and "direct decoder" in rendered
    capsys.readouterr()
    assert main([*argv, "--overwrite", "--set", "generator.width=64"]) == 2  # the oracle reads the run's model
    assert "only --set sampler.KEY=VALUE overrides" in capsys.readouterr().err
    before = (run / "oracle.json").read_bytes()
    assert main(argv) == 2  # the records are not replaced without --overwrite, and none is touched
    assert (run / "oracle.json").read_bytes() == before
    export_prior("generator", run, to=tmp_path / "priors")
    card = json.loads((tmp_path / "priors" / "generator.json").read_text())
    assert card["condition_use"]["scales"] == use["scales"] and "per_image" not in card["condition_use"]
    assert card["oracle"]["rows"] == oracle["rows"] and card["direct_decoder"]["scores"] == direct["scores"]
