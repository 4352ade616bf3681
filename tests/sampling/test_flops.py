import dataclasses

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from mindhier.config import SamplerConfig, tiny
from mindhier.models.scale_ar import GeneratorShapes, ScaleAR
from mindhier.models.tokenizer import Tokenizer
from mindhier.sampling.flops import decoder_flops, scale_wise_sampling_flops

SHAPES = GeneratorShapes(64, 8, (1, 2, 4, 8), 4, 5, 32, 24)  # tiny: 2 × 2 grid + global token


def counted_per_scale(model: ScaleAR, streams_per_scale: list[int], batch: int, kept: list[int]) -> list[int]:
    """FLOPs PyTorch's counter sees in each `step` (the prepare work is counted apart). On the meta device, so
    attention decomposes into counted matrix products (CPU's fused attention kernel is not counted)."""
    shapes = model.shapes
    levels = torch.randn(batch * 2, shapes.n_levels, shapes.level_tokens, shapes.context_width)
    state = model.prepare(levels, torch.randn(batch * 2, shapes.pooled_width))
    counts, streams = [], 2
    for k, side in enumerate(shapes.scales):
        if streams_per_scale[k] < streams:
            state = state.keep(batch)
            streams = 1
        x = None if k == 0 else torch.randn(batch * streams, side * side, shapes.latent_channels)
        with FlopCounterMode(display=False) as counter:
            model.step(state, k, x, kept[k])
        counts.append(counter.get_total_flops())
    return counts


@pytest.mark.parametrize(("block_causal", "prune_from"), [(False, 0), (True, 0), (False, 3)])
def test_analytic_sampling_flops_match_the_counted_ones(block_causal, prune_from):
    cfg = dataclasses.replace(tiny().generator, block_causal=block_causal)
    with torch.device("meta"):
        model = ScaleAR(cfg, SHAPES).eval()
    sampler = SamplerConfig(cfg_scale=3.0, cfg_off_from=4, prune_from=prune_from, prune_keep=0.3)
    analytic = scale_wise_sampling_flops(model, sampler, batch=3)
    kept = [0, 0, 5, 20] if prune_from else [0] * 4  # ⌈0.3 · 16⌉, ⌈0.3 · 64⌉
    with torch.no_grad(), torch.device("meta"):
        counted = counted_per_scale(model, [2, 2, 2, 1], batch=3, kept=kept)
    assert analytic["per_scale"] == pytest.approx(counted, rel=1e-6)
    unguided = scale_wise_sampling_flops(model, dataclasses.replace(sampler, cfg_scale=0.0), batch=3)
    assert unguided["per_scale"][:3] == [f // 2 for f in analytic["per_scale"][:3]]
    assert analytic["total"] == analytic["prepare"] + sum(analytic["per_scale"])
    if prune_from:
        full = scale_wise_sampling_flops(model, dataclasses.replace(sampler, prune_from=0), batch=3)
        assert analytic["per_scale"][:2] == full["per_scale"][:2]
        assert analytic["per_scale"][3] < 0.5 * full["per_scale"][3]


def test_decoder_flops_match_the_counter():
    cfg = dataclasses.replace(tiny().tokenizer, attention=True)
    with torch.device("meta"):
        tokenizer = Tokenizer(cfg).eval()
    side = cfg.scales[-1]
    with torch.no_grad(), torch.device("meta"), FlopCounterMode(display=False) as counter:
        tokenizer.decoder(tokenizer.post_quant_conv(torch.randn(2, tokenizer.cfg.latent_channels, side, side)))
    assert decoder_flops(tokenizer, batch=2) == counter.get_total_flops()
