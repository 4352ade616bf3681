import hashlib
import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

import mindhier
from mindhier.cli import main
from mindhier.data import layout
from mindhier.errors import ConfigError
from mindhier.sampling.reconstruct import derangement
from mindhier.train.generator import train_generator


@pytest.fixture(scope="module")
def generator_run(tiny_stage_runs, tmp_path_factory):
    cfg, result, encoder, tokenizer = tiny_stage_runs
    run = train_generator(cfg, result.root, encoder, tokenizer, tmp_path_factory.mktemp("gen") / "gen").run_dir
    return cfg, result, run


def _digests(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("image_*.png"))}


def test_reconstruction_never_reads_the_test_images(generator_run, tmp_path, capsys):
    cfg, result, run = generator_run
    data = tmp_path / "data"
    shutil.copytree(result.root, data)
    args = [
        "reconstruct",
        "--generator",
        str(run),
        "--data",
        str(data),
        "--samples",
        "3",
        "--select",
        "brain",
        "--seed",
        "4",
        "--quiet",
    ]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    for index in result.test_images:
        layout.image_png_path(data, int(index)).unlink()
    assert main([*args, "--out", str(tmp_path / "b")]) == 0
    first, second = _digests(tmp_path / "a"), _digests(tmp_path / "b")
    assert len(first) == cfg.simulator.n_test and first == second
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert manifest["protocol"]["samples"] == 3 and "no ground truth" in manifest["protocol"]["selection"]
    assert manifest["stimulus_indices"] == sorted(int(i) for i in result.test_images)


def test_python_api_and_seeds(generator_run):
    cfg, result, run = generator_run
    pipeline = mindhier.load(run)
    with mindhier.data.nsd.open_dataset(result.root) as dataset:
        voxels = dataset.split(1, "test").voxels()[:5]
    a = pipeline.reconstruct(voxels, subject=1, samples=2, seed=0)
    b = pipeline.reconstruct(voxels, subject=1, samples=2, seed=0)
    c = pipeline.reconstruct(voxels, subject=1, samples=2, seed=1)
    assert a.images_BHW3.shape == (5, 16, 16, 3) and a.images_BHW3.dtype == np.uint8
    assert np.array_equal(a.images_BHW3, b.images_BHW3) and not np.array_equal(a.images_BHW3, c.images_BHW3)
    # an image does not depend on its batch: reconstructing item 3 alone gives the same picture
    alone = pipeline.reconstruct(voxels[3:4], subject=1, samples=2, seed=0, keys=[3])
    assert np.array_equal(alone.images_BHW3[0], a.images_BHW3[3])
    repeats = np.stack([voxels, voxels + 0.1], axis=1)  # [B, T, V]
    by_outputs = pipeline.reconstruct(repeats, subject=1, average="outputs", strips=True)
    assert by_outputs.strips_BKHW3.shape == (5, len(cfg.tokenizer.scales), 16, 16, 3)
    with pytest.raises(ConfigError, match="voxels must be"):
        pipeline.reconstruct(voxels[0], subject=1)


def test_refuses_a_routing_the_generator_was_not_trained_with(generator_run, tmp_path, capsys):
    _, result, run = generator_run
    code = main(
        [
            "reconstruct",
            "--generator",
            str(run),
            "--data",
            str(result.root),
            "--routing",
            "static_terminal",
            "--out",
            str(tmp_path / "x"),
            "--quiet",
        ]
    )
    assert code == 2 and "trained with routing coarse_to_fine, not static_terminal" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_shuffled_control_is_a_derangement():
    order = derangement(50, seed=3)
    assert sorted(order) == list(range(50)) and not np.any(order == np.arange(50))
    assert np.array_equal(order, derangement(50, seed=3))


def _close_images(a: np.ndarray, b: np.ndarray) -> None:
    """Batched sampling draws the same tokens; pixels may differ by float summation order (a last-bit rounding)."""
    assert a.shape == b.shape
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
    assert (a == b).mean() > 0.99


def test_batched_sampling_gives_the_images_of_one_input_at_a_time(generator_run):
    _, result, run = generator_run
    pipeline = mindhier.load(run, device="cpu")
    with mindhier.data.nsd.open_dataset(result.root) as dataset:
        voxels = dataset.split(1, "test").voxels()[:6]
    keys = [11, 3, 7, 5, 2, 9]
    one = pipeline.reconstruct(voxels, subject=1, samples=3, seed=2, select="brain", strips=True, keys=keys)
    batched = pipeline.reconstruct(
        voxels, subject=1, samples=3, seed=2, select="brain", strips=True, keys=keys, batch_size=4
    )
    _close_images(one.images_BHW3, batched.images_BHW3)
    _close_images(one.strips_BKHW3, batched.strips_BKHW3)
    assert np.array_equal(one.chosen_B, batched.chosen_B)
    with pytest.raises(ConfigError, match="batch size must be at least 1"):
        pipeline.reconstruct(voxels, subject=1, batch_size=0)


def test_cli_batch_size_and_an_absent_cuda_device(generator_run, tmp_path, capsys):
    _, result, run = generator_run
    base = ["reconstruct", "--generator", str(run), "--data", str(result.root), "--quiet"]
    assert main([*base, "--out", str(tmp_path / "one")]) == 0
    assert main([*base, "--batch-size", "8", "--out", str(tmp_path / "eight")]) == 0
    one, eight = tmp_path / "one", tmp_path / "eight"
    for name in _digests(one):
        _close_images(np.asarray(Image.open(one / name)), np.asarray(Image.open(eight / name)))
    assert json.loads((eight / "manifest.json").read_text())["protocol"]["batch_size"] == 8
    if not torch.cuda.is_available():
        capsys.readouterr()
        assert main([*base, "--device", "cuda", "--out", str(tmp_path / "gpu")]) == 2
        assert "torch sees no CUDA device; pass --device cpu" in capsys.readouterr().err
        assert not (tmp_path / "gpu").exists()


def test_both_test_splits_reach_the_reconstructions_the_scores_and_the_report_line(generator_run, tmp_path, capsys):
    from mindhier.report.html import protocol_line

    _, result, run = generator_run
    base = ["reconstruct", "--generator", str(run), "--data", str(result.root), "--quiet"]
    assert main([*base, "--out", str(tmp_path / "new")]) == 0
    assert main([*base, "--split", "test_old", "--out", str(tmp_path / "old")]) == 0
    new = json.loads((tmp_path / "new" / "manifest.json").read_text())
    old = json.loads((tmp_path / "old" / "manifest.json").read_text())
    assert old["split"] == "test_old" and new["split"] == "test"
    # the older split is a strict subset of the shared images, as on NSD (982 of 1,000)
    assert set(old["stimulus_indices"]) < set(new["stimulus_indices"]) and len(old["stimulus_indices"]) > 0
    assert len(list((tmp_path / "old").glob("image_*.png"))) == len(old["stimulus_indices"])

    argv = ["eval", "recons", "--recons", str(tmp_path / "old"), "--data", str(result.root), "--no-judge"]
    assert main([*argv, "--out", str(tmp_path / "eval"), "--quiet"]) == 0, capsys.readouterr().err
    protocol = json.loads((tmp_path / "eval" / "metrics.json").read_text())["protocol"]
    assert protocol["split"] == "test_old" and protocol["n_images"] == len(old["stimulus_indices"])
    line = protocol_line(protocol)
    assert "split test_old (the older 982-image split" in line and "single shot" in line


def test_the_low_level_start_takes_the_encoders_ridge_image_at_the_first_scales(generator_run):
    cfg, result, run = generator_run
    from mindhier.config import SamplerConfig
    from mindhier.sampling.reconstruct import Reconstructor

    assert cfg.encoder.low_level_px > 0  # the tiny encoder fits its ridge decoder after training
    with mindhier.data.nsd.open_dataset(result.root) as dataset:
        voxels = torch.from_numpy(dataset.split(1, "test").voxels()[:4])
    started = Reconstructor.from_runs(run, sampler=SamplerConfig(low_level_scales=2))
    tokens = started.low_level_tokens(voxels, subject=1)
    image = started.low_level.predict(voxels, subject=1)
    assert len(tokens) == 2 and image.shape == (4, 3, cfg.encoder.low_level_px, cfg.encoder.low_level_px)
    # the first two scales are the low-level image's, whatever the seed; the plain sampler draws them
    one, other = (started.reconstruct(voxels, subject=1, strips=True, seed=seed) for seed in (0, 1))
    assert np.array_equal(one.strips_BKHW3[:, :2], other.strips_BKHW3[:, :2])
    assert not np.array_equal(one.images_BHW3, other.images_BHW3)  # the later scales are still sampled
    plain = Reconstructor.from_runs(run)
    a, b = (plain.reconstruct(voxels, subject=1, strips=True, seed=seed) for seed in (0, 1))
    assert not np.array_equal(a.strips_BKHW3[:, :2], b.strips_BKHW3[:, :2])
    # its trials averaged as the condition's are: [B, T, V] with identical trials gives the [B, V] tokens
    again = started.low_level_tokens(torch.stack([voxels, voxels], dim=1), subject=1)
    assert all(torch.equal(a, b) for a, b in zip(tokens, again, strict=True))
    # an encoder without a low-level decoder is refused with the fix
    started.low_level = None
    with pytest.raises(ConfigError, match="needs an encoder with a low-level decoder"):
        started.reconstruct(voxels, subject=1)
