"""The whole single-image path (`sampling/single_pass.py`): the images of `Reconstructor.reconstruct`, eager and
traced as one graph, for both decoders."""

import dataclasses

import numpy as np
import pytest
import torch

import mindhier
import mindhier.sampling.compiled as compiled_module
from mindhier.data.image_tensors import unit_to_uint8
from mindhier.sampling.reconstruct import item_generator
from mindhier.sampling.single_pass import SinglePass
from mindhier.train.diffusion import train_diffusion
from mindhier.train.generator import train_generator

SEED, KEYS = 3, [4, 9]


@pytest.fixture(scope="module")
def decoder_runs(tiny_stage_runs, tmp_path_factory):
    cfg, result, encoder, tokenizer = tiny_stage_runs
    root = tmp_path_factory.mktemp("single_pass")
    generator = train_generator(cfg, result.root, encoder, tokenizer, root / "generator").run_dir
    tc = dataclasses.replace(cfg.train_diffusion, steps=4, eval_every=4)
    short = dataclasses.replace(cfg, train_diffusion=tc, ddim=dataclasses.replace(cfg.ddim, steps=4))
    diffusion = train_diffusion(short, result.root, encoder, tokenizer, root / "diffusion").run_dir
    with mindhier.data.nsd.open_dataset(result.root) as dataset:
        voxels = dataset.split(1, "test").voxels()[:2]
    return {"scale-wise": generator, "diffusion": diffusion}, voxels


@pytest.mark.parametrize("kind", ["scale-wise", "diffusion"])
def test_a_single_pass_gives_the_reconstructors_images_eager_and_traced_as_one_graph(decoder_runs, kind, monkeypatch):
    runs, voxels = decoder_runs
    pipeline = mindhier.load(runs[kind])
    expected = pipeline.reconstruct(voxels, subject=1, seed=SEED, keys=KEYS, batch_size=2).images_BHW3
    seconds = {}
    eager = SinglePass(pipeline, subject=1)(voxels, [item_generator(SEED, k) for k in KEYS], seconds)
    assert np.array_equal(unit_to_uint8(eager), expected)
    assert set(seconds) == {"encoder", "network", "vq_decode"} and min(seconds.values()) > 0

    monkeypatch.setattr(compiled_module, "DEFAULT_BACKEND", "eager")  # dynamo's trace, fullgraph: a break fails
    torch._dynamo.reset()
    pipeline.decoder = dataclasses.replace(pipeline.decoder, compile=True)
    single = SinglePass(pipeline, subject=1)
    traced = single(voxels, [item_generator(SEED, k) for k in KEYS], seconds)
    assert all(step.compiled is not None for step in single.steps.values())  # no eager fallback
    if kind == "scale-wise":  # encoder, every scale and the VQ decode: one graph
        assert list(single.steps) == ["scale-wise 2"]
        assert "encoder_scales_and_vq_decode" in seconds
    got = unit_to_uint8(traced)
    assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1 and (got == expected).mean() > 0.99


def test_a_single_pass_refuses_the_low_level_start(decoder_runs):
    from mindhier.errors import ConfigError

    runs, _ = decoder_runs
    pipeline = mindhier.load(runs["scale-wise"])
    sampler = dataclasses.replace(pipeline.decoder.sampler, low_level_scales=2)
    pipeline.decoder = dataclasses.replace(pipeline.decoder, sampler=sampler)
    with pytest.raises(ConfigError, match="low_level_scales=0"):
        SinglePass(pipeline, subject=1)
