import dataclasses
import json
from pathlib import Path

import pytest
import torch

import mindhier
from conftest import tiny_scale_tokenizer
from mindhier.config import GeneratorConfig, SamplerConfig, nsd_paper, tiny
from mindhier.models.routing import routing_table, sequence_cross_mask
from mindhier.models.scale_ar import SWITTI_NEW_MODULES, GeneratorShapes, ScaleAR
from mindhier.models.tokenizer import Tokenizer
from mindhier.sampling.scale_ar import guidance_weight, sample

SCALES = (1, 2, 4, 8)
SHAPES = GeneratorShapes(
    vocab=64, latent_channels=8, scales=SCALES, n_levels=4, level_tokens=5, context_width=12, pooled_width=10
)
MANIFEST = Path(mindhier.__file__).parent / "models" / "manifests" / "switti_512.json"


def paper_h(k, n_scales, n_levels):
    return n_levels - (n_levels * (k - 1)) // n_scales


def test_routing_tables():
    assert [t[0] for t in routing_table("coarse_to_fine", 10, 4)] == [4, 4, 4, 3, 3, 2, 2, 2, 1, 1]
    assert [t[0] for t in routing_table("coarse_to_fine", 10, 4)] == [paper_h(k, 10, 4) for k in range(1, 11)]
    demo_scales = len(tiny().tokenizer.scales)
    assert [t[0] for t in routing_table("coarse_to_fine", demo_scales, 4)] == [4, 3, 2, 1]
    assert [t[0] for t in routing_table("fine_to_coarse", 10, 4)] == [1, 1, 1, 2, 2, 3, 3, 3, 4, 4]
    assert routing_table("static_terminal", 10, 4) == [(4,)] * 10
    assert routing_table("all_levels", 3, 4) == [(1, 2, 3, 4)] * 3
    mask = sequence_cross_mask("coarse_to_fine", SCALES, 4, 5)
    assert mask.shape == (85, 20)
    assert mask[0].nonzero().flatten().tolist() == list(range(15, 20))  # scale 1 → e_4 (the last segment)
    assert mask[84].nonzero().flatten().tolist() == list(range(0, 5))  # scale 4 → e_1


def make_model(**changes) -> ScaleAR:
    torch.manual_seed(0)
    model = ScaleAR(dataclasses.replace(GeneratorConfig(depth=2, width=32, heads=2), **changes), SHAPES)
    for p in model.parameters():  # leave Switti's near-identity init so every path matters in the tests
        p.data.normal_(0, 0.2)
    return model.eval()


def make_tokenizer() -> Tokenizer:
    return tiny_scale_tokenizer(SCALES)


def inputs(batch=3):
    g = torch.Generator().manual_seed(2)
    return torch.randn(batch, 4, 5, 12, generator=g), torch.randn(batch, 10, generator=g)


@pytest.mark.parametrize("context_maps", ["none", "add"])
@pytest.mark.parametrize("routing", ["coarse_to_fine", "fine_to_coarse", "static_terminal"])
def test_perturbing_one_level_changes_exactly_its_scales(routing, context_maps):
    """Cross-attention and condition maps both follow the routing; a model trained under one routing and switched
    to another (`set_routing`) routes like one built with it."""
    model, tokenizer = make_model(routing=routing, context_maps=context_maps), make_tokenizer()
    switched = make_model(routing="all_levels", context_maps=context_maps)
    switched.set_routing(routing)
    levels, pooled = inputs()
    tokens = [torch.randint(0, 64, (3, s * s)) for s in SCALES]
    x = tokenizer.quantize.teacher_forcing_inputs(tokens)
    base = model(x, levels, pooled)
    offsets = [0, 1, 5, 21, 85]
    table = routing_table(routing, 4, 4)
    for m in range(1, 5):
        changed = levels.clone()
        changed[:, m - 1] += 1.0
        out = model(x, changed, pooled)
        for k in range(4):
            differs = not torch.allclose(out[:, offsets[k] : offsets[k + 1]], base[:, offsets[k] : offsets[k + 1]])
            assert differs == (m in table[k]), (routing, m, k)
        torch.testing.assert_close(switched(x, changed, pooled), out)


def test_block_causal_never_changes_earlier_scales():
    model, tokenizer = make_model(block_causal=True), make_tokenizer()
    levels, pooled = inputs()
    tokens = [torch.randint(0, 64, (3, s * s)) for s in SCALES]
    x = tokenizer.quantize.teacher_forcing_inputs(tokens)
    base = model(x, levels, pooled)
    changed = levels.clone()
    changed[:, 2] += 1.0  # e_3: routed to scale 2 (coarse_to_fine with K = M = 4)
    out = model(x, changed, pooled)
    assert torch.allclose(out[:, :1], base[:, :1])
    assert not torch.allclose(out[:, 1:5], base[:, 1:5])
    assert not torch.allclose(out[:, 5:], base[:, 5:])  # later scales see scale 2 through self-attention
    # and changing the tokens of scale 3 leaves scales 1–3's logits alone
    tokens[2] = (tokens[2] + 1) % 64
    out = model(tokenizer.quantize.teacher_forcing_inputs(tokens), levels, pooled)
    assert torch.allclose(out[:, :21], base[:, :21], atol=1e-6)


@pytest.mark.parametrize(
    ("context_positions", "context_maps"), [("none", "none"), ("rope", "none"), ("none", "add"), ("rope", "add")]
)
@pytest.mark.parametrize("block_causal", [False, True])
@pytest.mark.parametrize("cfg_scale", [0.0, 2.5])
def test_teacher_forced_logits_equal_the_samplers(block_causal, cfg_scale, context_positions, context_maps):
    model = make_model(block_causal=block_causal, context_positions=context_positions, context_maps=context_maps)
    tokenizer = make_tokenizer()
    levels, pooled = inputs()
    null_levels, null_pooled = torch.randn(1, 4, 5, 12), torch.randn(1, 10)
    tokens = [torch.randint(0, 64, (3, s * s)) for s in SCALES]
    x = tokenizer.quantize.teacher_forcing_inputs(tokens)
    cond = model(x, levels, pooled)
    uncond = model(x, null_levels.expand(3, -1, -1, -1), null_pooled.expand(3, -1))
    cfg = SamplerConfig(cfg_scale=cfg_scale)
    out = sample(
        model,
        tokenizer,
        levels,
        pooled,
        null_levels,
        null_pooled,
        cfg,
        torch.Generator(),
        forced_tokens=tokens,
        record_logits=True,
    )
    offsets = [0, 1, 5, 21, 85]
    for k in range(4):
        t = guidance_weight(k, 4, cfg)
        expected = (1 + t) * cond[:, offsets[k] : offsets[k + 1]] - t * uncond[:, offsets[k] : offsets[k + 1]]
        torch.testing.assert_close(out.logits[k], expected, atol=2e-5, rtol=1e-4)
    assert all(torch.equal(a, b) for a, b in zip(out.tokens, tokens, strict=True))


@pytest.mark.parametrize(
    ("context_positions", "context_maps", "place_matters"),
    [("none", "none", False), ("rope", "none", True), ("none", "add", True)],
)
def test_context_tokens_have_a_place_only_with_context_positions_or_maps(
    context_positions, context_maps, place_matters
):
    """Without context positions or maps a level's grid tokens are a bag (the same permutation of every level's grid
    cells leaves the logits unchanged); with either, moving a cell moves what the scale tokens read."""
    model = make_model(context_positions=context_positions, context_maps=context_maps, routing="all_levels")
    tokenizer = make_tokenizer()
    levels, pooled = inputs()
    tokens = [torch.randint(0, 64, (3, s * s)) for s in SCALES]
    x = tokenizer.quantize.teacher_forcing_inputs(tokens)
    swapped = levels[:, :, [0, 4, 2, 3, 1]]  # grid cells 1 and 4 (top left, bottom right) trade places
    moved = (model(x, swapped, pooled) - model(x, levels, pooled)).abs().max()
    assert (moved > 1e-3) if place_matters else (moved < 1e-5), moved
    first_only = levels.clone()
    first_only[:, :, 0] += 1.0  # the global token is unrotated: it moves the logits in both modes
    assert (model(x, first_only, pooled) - model(x, levels, pooled)).abs().max() > 1e-3


def test_context_positions_need_rope_and_a_square_grid():
    from mindhier.errors import ConfigError

    with pytest.raises(ConfigError, match="positions=rope too"):
        GeneratorConfig(positions="learned", context_positions="rope")
    odd = dataclasses.replace(SHAPES, level_tokens=6)
    with pytest.raises(ConfigError, match="square grid"):
        ScaleAR(GeneratorConfig(depth=1, width=32, heads=2, context_positions="rope"), odd)
    with pytest.raises(ConfigError, match=r"context_maps=add: .*square grid"):
        ScaleAR(GeneratorConfig(depth=1, width=32, heads=2, context_maps="add"), odd)
    with pytest.raises(ConfigError, match="context_maps must be none or add"):
        GeneratorConfig(context_maps="concat")


@pytest.mark.parametrize(
    ("cfg_scale", "cfg_off_from", "expected_rows"), [(0.0, 0, [6] * 4), (2.0, 0, [12] * 4), (2.0, 3, [12, 12, 6, 6])]
)
def test_sampler_runs_each_token_through_the_blocks_once(cfg_scale, cfg_off_from, expected_rows):
    """3 inputs × 2 samples; with guidance the unconditional stream doubles the rows until it is cut."""
    model, tokenizer = make_model(), make_tokenizer()
    levels, pooled = inputs()
    seen = []
    hook = model.blocks[0].register_forward_hook(lambda m, args, out: seen.append(tuple(args[0].shape[:2])))
    sample(
        model,
        tokenizer,
        levels,
        pooled,
        torch.zeros(1, 4, 5, 12),
        torch.zeros(1, 10),
        SamplerConfig(cfg_scale=cfg_scale, cfg_off_from=cfg_off_from, samples=2),
        torch.Generator().manual_seed(0),
    )
    hook.remove()
    assert seen == [(rows, s * s) for rows, s in zip(expected_rows, SCALES, strict=True)]


def test_same_seed_same_images_other_seed_other_images():
    model, tokenizer = make_model(), make_tokenizer()
    levels, pooled = inputs()
    null = torch.zeros(1, 4, 5, 12), torch.zeros(1, 10)
    cfg = SamplerConfig(cfg_scale=2.0, top_k=20, top_p=0.9, samples=2)
    a = sample(model, tokenizer, levels, pooled, *null, cfg, torch.Generator().manual_seed(5), strips=True)
    b = sample(model, tokenizer, levels, pooled, *null, cfg, torch.Generator().manual_seed(5))
    c = sample(model, tokenizer, levels, pooled, *null, cfg, torch.Generator().manual_seed(6))
    assert torch.equal(a.images_R3HW, b.images_R3HW)
    assert not torch.equal(a.images_R3HW, c.images_R3HW)
    assert a.images_R3HW.shape == (6, 3, 16, 16) and a.images_R3HW.min() >= 0 and a.images_R3HW.max() <= 1
    assert len(a.strips) == 4 and torch.equal(a.strips[-1], a.images_R3HW)


def test_overfits_one_batch_and_greedy_sampling_reproduces_it():
    torch.manual_seed(0)
    model = ScaleAR(GeneratorConfig(depth=2, width=32, heads=2), SHAPES)
    tokenizer = make_tokenizer()
    levels, pooled = torch.randn(8, 4, 5, 12), torch.randn(8, 10)
    tokens = [torch.randint(0, 64, (8, s * s)) for s in SCALES]
    with torch.no_grad():
        x = tokenizer.quantize.teacher_forcing_inputs(tokens)
    target = torch.cat(tokens, dim=1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3, betas=(0.9, 0.95))
    losses = []
    for _ in range(800):
        loss = torch.nn.functional.cross_entropy(model(x, levels, pooled).flatten(0, 1), target.flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    model.eval()
    with torch.no_grad():
        accuracy = (model(x, levels, pooled).argmax(-1) == target).float().mean()
    assert losses[-1] < 0.05 * losses[0] and accuracy == 1.0
    greedy = SamplerConfig(cfg_scale=0.0, top_k=1)
    out = sample(model, tokenizer, levels, pooled, levels[:1], pooled[:1], greedy, torch.Generator())
    assert all(torch.equal(a, b) for a, b in zip(out.tokens, tokens, strict=True))


def test_nsd_paper_generator_maps_onto_switti():
    """Every key of ours is Switti's with the same shape, or one of the modules MindHier adds."""
    manifest = json.loads(MANIFEST.read_text())
    cfg = nsd_paper()
    shapes = GeneratorShapes(4096, 32, cfg.tokenizer.scales, 4, 257, 768, 768)
    with torch.device("meta"):
        model = ScaleAR(cfg.generator, shapes)
    assert sum(p.numel() for p in model.parameters()) == 2_318_294_656
    switti = manifest["parameters"]
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    new = {k for k in ours if switti.get(k) != ours[k]}
    assert new and all(any(part in k for part in SWITTI_NEW_MODULES) for k in new)
    assert {k.split(".")[0] for k in new} == {"fmri_pooler", "blocks"}
    # the pooler, and per block the key/value projection's weight and the context norm (768 wide instead of
    # 2,048); the key/value bias keeps its shape (2 · 1920), so shape-filtered loading takes it from Switti
    assert len(new) == 2 + 30 * 2
    unused = {k for k in switti if k not in ours}
    assert {k.split(".")[0] for k in unused} == {"blocks", "crop_embed", "crop_proj", "text_pooler"}
    assert all(k.endswith("crop_cond_scales") for k in unused if k.startswith("blocks"))


def test_load_generator_init_is_shape_filtered_and_reports(tmp_path):
    ours = make_model()
    # a "Switti" of the same size but a 2048-wide text context, a text pooler and crop conditioning
    switti = ScaleAR(GeneratorConfig(depth=2, width=32, heads=2), dataclasses.replace(SHAPES, context_width=20))
    state = {**switti.state_dict(), "text_pooler.weight": torch.zeros(32, 7), "crop_proj.weight": torch.zeros(32, 32)}
    del state["fmri_pooler.weight"], state["fmri_pooler.bias"]
    torch.save(state, tmp_path / "switti.pth")
    before = {k: v.clone() for k, v in ours.state_dict().items()}
    report = mindhier.load_generator_init(ours, tmp_path / "switti.pth")
    assert all(any(part in k for part in SWITTI_NEW_MODULES) for k in report.new)
    assert "fmri_pooler.weight" in report.new and "blocks.0.cross_attn.to_kv.weight" in report.new
    assert {"text_pooler.weight", "crop_proj.weight", "blocks.1.attention_y_norm.weight"} <= set(report.ignored)
    after = ours.state_dict()
    assert torch.equal(after["head.weight"], switti.state_dict()["head.weight"])
    assert torch.equal(after["fmri_pooler.weight"], before["fmri_pooler.weight"])
