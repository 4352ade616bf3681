import dataclasses

import pytest
import torch

from mindhier.config import DiffusionConfig, demo, tiny
from mindhier.errors import ConfigError
from mindhier.models.diffusion import (
    DiffusionShapes,
    LatentDiT,
    match_parameters,
    parameter_count,
    sincos_positions_2d,
)
from mindhier.models.scale_ar import GeneratorShapes, ScaleAR
from mindhier.train.flops import diffusion_step_flops, generator_step_flops

SHAPES = DiffusionShapes(latent_channels=8, latent_side=8, level_tokens=4, context_width=32, pooled_width=24)


def inputs(batch=3):
    return (
        torch.randn(batch, 8, 8, 8),
        torch.randint(0, 1000, (batch,)),
        torch.randn(batch, 4, 32),
        torch.randn(batch, 24),
    )


def test_starts_as_zero_prediction_and_learns_a_nonzero_one():
    model = LatentDiT(tiny().diffusion, SHAPES)
    z, t, terminal, pooled = inputs()
    assert torch.count_nonzero(model(z, t, terminal, pooled)) == 0
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    target = torch.randn_like(z)
    for _ in range(5):
        loss = torch.nn.functional.mse_loss(model(z, t, terminal, pooled), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    eps = model(z, t, terminal, pooled)
    assert eps.shape == z.shape and float(eps.detach().abs().mean()) > 0
    # cached context keys/values give the same prediction; the condition matters
    assert torch.allclose(eps, model(z, t, terminal, pooled, context_kv=model.context_kv(terminal)))
    assert not torch.allclose(eps, model(z, t, terminal + 1, pooled))
    assert not torch.allclose(eps, model(z, t + 100, terminal, pooled))


def test_latent_statistics_normalise_per_channel():
    model = LatentDiT(tiny().diffusion, SHAPES)
    f = torch.randn(64, 8, 8, 8) * torch.arange(1, 9)[None, :, None, None] + 5
    model.set_latent_statistics(f)
    z = model.normalize(f)
    assert torch.allclose(z.mean(dim=(0, 2, 3)), torch.zeros(8), atol=1e-5)
    assert torch.allclose(z.std(dim=(0, 2, 3)), torch.ones(8), atol=1e-4)
    assert torch.allclose(model.denormalize(z), f, atol=1e-4)
    assert "latent_mean_C" in model.state_dict() and "pos_LD" not in model.state_dict()


def test_positions_differ_per_cell():
    pos = sincos_positions_2d(8, 32)
    assert pos.shape == (64, 32)
    assert torch.cdist(pos, pos).add(torch.eye(64)).min() > 0


@pytest.mark.parametrize("preset", [tiny, pytest.param(demo, marks=pytest.mark.slow)])
def test_matched_size_is_within_five_percent_of_the_generator(preset):
    cfg = preset()
    gen_shapes = GeneratorShapes(256, 8, (1, 2, 4, 8), 4, 5, 32, 24)
    target = sum(p.numel() for p in ScaleAR(cfg.generator, gen_shapes).parameters())
    matched = match_parameters(cfg.diffusion, SHAPES, target)
    assert abs(parameter_count(matched, SHAPES) / target - 1) <= 0.05
    assert parameter_count(matched, SHAPES) == sum(p.numel() for p in LatentDiT(matched, SHAPES).parameters())
    with pytest.raises(ConfigError, match="within 5%"):
        match_parameters(dataclasses.replace(cfg.diffusion, heads=1000, width=4000), SHAPES, 1000)


def test_training_flops_grow_with_batch_and_cover_the_matmuls():
    cfg = tiny()
    one, two = diffusion_step_flops(cfg.diffusion, SHAPES, 2), diffusion_step_flops(cfg.diffusion, SHAPES, 4)
    assert two == 2 * one
    # forward + backward of the token-wise linear layers alone: 6 FLOPs per weight per token
    blocks = LatentDiT(cfg.diffusion, SHAPES).blocks
    token_weights = sum(
        m.weight.numel() for b in blocks for m in (b.attn.to_q, b.attn.to_kv, b.attn.to_out, *b.mlp[::2])
    )
    assert one > 6 * token_weights * 64 * 2
    gen_shapes = GeneratorShapes(256, 8, (1, 2, 4, 8), 4, 5, 32, 24)
    assert generator_step_flops(cfg.generator, gen_shapes, 4) == 2 * generator_step_flops(cfg.generator, gen_shapes, 2)


def test_config_rejects_bad_values():
    with pytest.raises(ConfigError, match="beta_start < beta_end"):
        DiffusionConfig(beta_start=0.1, beta_end=0.01)
    with pytest.raises(ConfigError, match=r"diffusion\.decode"):
        DiffusionConfig(decode="pixels")
    with pytest.raises(ConfigError, match="divisible"):
        DiffusionConfig(width=30, heads=4)
