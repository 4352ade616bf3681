import dataclasses
import hashlib
import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

import mindhier
from mindhier import run_layout
from mindhier.checkpoint import load_weights
from mindhier.cli import main
from mindhier.data import layout
from mindhier.runs import load_diffusion
from mindhier.train.diffusion import train_diffusion


@pytest.fixture(scope="module")
def diffusion_run(tiny_stage_runs, tmp_path_factory):
    cfg, result, encoder, tokenizer = tiny_stage_runs
    run = tmp_path_factory.mktemp("diffusion") / "run"
    args = ["train", "diffusion", "--data", str(result.root), "--encoder", str(encoder), "--tokenizer", str(tokenizer)]
    assert main([*args, "--out", str(run), "--preset", "tiny", "--quiet"]) == 0
    return cfg, result, run


def test_size_and_training_flops_are_matched_to_the_generator(diffusion_run, capsys):
    cfg, _, run = diffusion_run
    summary = json.loads((run / "train_summary.json").read_text())
    assert abs(summary["parameter_ratio"] - 1) <= 0.05 and summary["matched"]
    # steps = round(generator steps × generator FLOPs per step / baseline FLOPs per step)
    expected = round(cfg.train_generator.steps * summary["generator_flops_per_step"] / summary["flops_per_step"])
    assert summary["steps"] == expected != cfg.train_generator.steps
    assert abs(summary["training_flops"] / summary["generator_training_flops"] - 1) < 0.5 / expected + 1e-9
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    evals = [r for r in log if "val_loss" in r]
    assert evals[-1]["step"] == expected and evals[0]["step"] == cfg.train_diffusion.eval_every
    assert log[-1]["loss"] < log[0]["loss"]
    model = load_diffusion(run).model
    assert model.cfg.width == summary["width"] and sum(p.numel() for p in model.parameters()) == summary["parameters"]
    assert float(model.latent_std_C.min()) > 0 and not torch.all(model.latent_mean_C == 0)


def _digests(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("image_*.png"))}


def test_reconstructs_without_reading_the_test_images(diffusion_run, tmp_path, capsys):
    cfg, result, run = diffusion_run
    data = tmp_path / "data"
    shutil.copytree(result.root, data)
    args = ["reconstruct", "--generator", str(run), "--data", str(data), "--set", "ddim.steps=5", "--quiet"]
    assert main([*args, "--strips", "--out", str(tmp_path / "a")]) == 0
    for index in result.test_images:
        layout.image_png_path(data, int(index)).unlink()
    assert main([*args, "--strips", "--out", str(tmp_path / "b")]) == 0
    first = _digests(tmp_path / "a")
    assert len(first) == cfg.simulator.n_test and first == _digests(tmp_path / "b")
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert manifest["protocol"]["sampler"]["steps"] == 5 and "diffusion" in manifest["protocol"]["decoder"]
    strip = np.asarray(Image.open(next((tmp_path / "a" / "strips").glob("*.png"))))
    assert strip.shape[1] == len(cfg.tokenizer.scales) * cfg.tokenizer.image_px
    assert main([*args, "--routing", "coarse_to_fine", "--out", str(tmp_path / "c")]) == 2
    assert "static_terminal" in capsys.readouterr().err and not (tmp_path / "c").exists()


def test_python_api_seeds_and_guidance(diffusion_run):
    _, result, run = diffusion_run
    pipeline = mindhier.load(run)
    with mindhier.data.nsd.open_dataset(result.root) as dataset:
        voxels = dataset.split(1, "test").voxels()[:3]
    a = pipeline.reconstruct(voxels, subject=1, seed=0)
    assert np.array_equal(a.images_BHW3, pipeline.reconstruct(voxels, subject=1, seed=0).images_BHW3)
    batched = pipeline.reconstruct(voxels, subject=1, seed=0, batch_size=3).images_BHW3  # each input its own noise
    assert (
        np.abs(batched.astype(int) - a.images_BHW3.astype(int)).max() <= 1 and (batched == a.images_BHW3).mean() > 0.99
    )
    assert not np.array_equal(a.images_BHW3, pipeline.reconstruct(voxels, subject=1, seed=1).images_BHW3)
    unguided = dataclasses.replace(pipeline.decoder.ddim, cfg_scale=0.0)
    pipeline.decoder = dataclasses.replace(pipeline.decoder, ddim=unguided)
    assert not np.array_equal(a.images_BHW3, pipeline.reconstruct(voxels, subject=1, seed=0).images_BHW3)


def test_resume_continues_exactly(tiny_stage_runs, tmp_path):
    cfg, result, encoder, tokenizer = tiny_stage_runs
    cfg = dataclasses.replace(cfg, train_diffusion=dataclasses.replace(cfg.train_diffusion, steps=30))
    straight = train_diffusion(cfg, result.root, encoder, tokenizer, tmp_path / "a").run_dir

    class Crash(Exception):
        pass

    def crash(task, done, total, info=None):
        if task == "train diffusion" and done == 21:
            raise Crash

    with pytest.raises(Crash):
        train_diffusion(cfg, result.root, encoder, tokenizer, tmp_path / "b", progress=crash)
    resumed = train_diffusion(cfg, result.root, encoder, tokenizer, tmp_path / "b", resume=True).run_dir
    weights = []
    for run in (straight, resumed):
        model = load_diffusion(run).model
        load_weights(run / run_layout.last_weights_file("diffusion"), model)
        weights.append(model.state_dict())
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert json.loads((resumed / "train_summary.json").read_text())["resumed_from"] == 20


def test_the_oracle_baseline_learns_the_teachers_features_and_guides_against_their_null(tiny_stage_runs, tmp_path):
    from mindhier.sampling.reconstruct import Reconstructor

    cfg, result, encoder, tokenizer = tiny_stage_runs
    tc = dataclasses.replace(cfg.train_diffusion, steps=3, eval_every=3, condition="teacher")
    run = train_diffusion(dataclasses.replace(cfg, train_diffusion=tc), result.root, encoder, tokenizer, tmp_path / "o")
    inputs = json.loads((run.run_dir / run_layout.INPUTS).read_text())
    assert inputs["condition"] == "teacher" and run.summary["condition"] == "teacher"
    assert run.summary["best_val"] is not None  # validated on the teacher's features of the val images
    reconstructor = Reconstructor.from_runs(run.run_dir, device="cpu")
    assert reconstructor.trained_on == "teacher"  # its unconditional stream: the teacher's zero features


def test_with_a_generator_used_as_it_starts_the_baseline_keeps_its_start_weights(tiny_stage_runs, tmp_path):
    """train_generator.steps=0 (the demo reads its prior as it is): the baseline trains no step either, keeps its
    start's weights and guides against the start's unconditional stream; with no start it refuses."""
    from mindhier.errors import ConfigError
    from mindhier.sampling.reconstruct import Reconstructor

    cfg, result, encoder, tokenizer = tiny_stage_runs
    oracle_tc = dataclasses.replace(cfg.train_diffusion, steps=3, eval_every=3, condition="teacher")
    start = train_diffusion(
        dataclasses.replace(cfg, train_diffusion=oracle_tc), result.root, encoder, tokenizer, tmp_path / "start"
    ).run_dir
    as_is = dataclasses.replace(
        cfg,
        train_generator=dataclasses.replace(cfg.train_generator, steps=0, init="prior"),
        train_diffusion=dataclasses.replace(cfg.train_diffusion, steps=0, init=str(start)),
    )
    run = train_diffusion(as_is, result.root, encoder, tokenizer, tmp_path / "as_is")
    assert run.summary["steps"] == 0 and run.summary["steps_rule"].startswith("none")
    kept, started = load_diffusion(run.run_dir).model.state_dict(), load_diffusion(start).model.state_dict()
    assert all(torch.equal(kept[k], started[k]) for k in started)
    inputs = json.loads((run.run_dir / run_layout.INPUTS).read_text())
    assert inputs["condition"] == "brain" and inputs["null_condition"] == "teacher"
    assert Reconstructor.from_runs(run.run_dir, device="cpu").trained_on == "teacher"

    no_start = dataclasses.replace(as_is, train_diffusion=dataclasses.replace(as_is.train_diffusion, init=""))
    with pytest.raises(ConfigError, match=r"train_diffusion\.init"):
        train_diffusion(no_start, result.root, encoder, tokenizer, tmp_path / "no_start")
    assert not (tmp_path / "no_start" / run_layout.weights_file("diffusion")).exists()
