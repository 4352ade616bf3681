"""The lean sampling loop: reused buffers, compiled steps, token pruning, the compiled DDIM path."""

import dataclasses

import pytest
import torch

import mindhier.sampling.compiled as compiled_module
from conftest import tiny_scale_tokenizer
from mindhier.config import DdimConfig, DiffusionConfig, GeneratorConfig, SamplerConfig
from mindhier.errors import ConfigError
from mindhier.models.diffusion import DiffusionShapes, LatentDiT
from mindhier.models.scale_ar import GeneratorShapes, ScaleAR
from mindhier.models.token_pruning import kept_count, pivotal_tokens
from mindhier.models.tokenizer import Tokenizer
from mindhier.sampling.compiled import CompiledStep
from mindhier.sampling.decoders import DiffusionDecoder, ScaleWiseDecoder
from mindhier.sampling.draws import exponential_rows, race
from mindhier.sampling.scale_ar import ScaleLoop, sample

SCALES = (1, 2, 4, 8)
SHAPES = GeneratorShapes(
    vocab=64, latent_channels=8, scales=SCALES, n_levels=4, level_tokens=5, context_width=12, pooled_width=10
)
NULL = (torch.zeros(1, 4, 5, 12), torch.zeros(1, 10))


def make_model(**changes) -> ScaleAR:
    torch.manual_seed(0)
    model = ScaleAR(dataclasses.replace(GeneratorConfig(depth=2, width=32, heads=2), **changes), SHAPES)
    for p in model.parameters():  # away from Switti's near-identity init, so every path matters
        p.data.normal_(0, 0.2)
    return model.eval()


def make_tokenizer() -> Tokenizer:
    return tiny_scale_tokenizer(SCALES)


def inputs(batch: int, seed: int = 2):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 4, 5, 12, generator=g), torch.randn(batch, 10, generator=g)


def draw(model, tokenizer, cfg, levels, pooled, seed=7, loop=None):
    return sample(model, tokenizer, levels, pooled, *NULL, cfg, torch.Generator().manual_seed(seed), loop=loop)


SAMPLERS = {
    "guided": SamplerConfig(cfg_scale=2.0, top_k=20, top_p=0.9),
    "guidance off for the last scale": SamplerConfig(cfg_scale=2.0, cfg_off_from=4),
    "pruned": SamplerConfig(cfg_scale=2.0, prune_from=3, prune_keep=0.4),
}


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_a_reused_loop_gives_what_a_fresh_one_gives(name):
    """A reused loop keeps nothing of the previous batch: its next batch draws what a fresh loop draws."""
    model, tokenizer, cfg = make_model(), make_tokenizer(), SAMPLERS[name]
    loop = ScaleLoop(model, tokenizer, cfg, rows=3)
    first = draw(model, tokenizer, cfg, *inputs(3, seed=2), loop=loop)
    second = draw(model, tokenizer, cfg, *inputs(3, seed=3), loop=loop)
    fresh = draw(model, tokenizer, cfg, *inputs(3, seed=3))
    assert all(torch.equal(a, b) for a, b in zip(second.tokens, fresh.tokens, strict=True))
    assert torch.equal(second.images_R3HW, fresh.images_R3HW)
    assert not all(torch.equal(a, b) for a, b in zip(first.tokens, second.tokens, strict=True))


def test_a_reused_block_causal_loop_forgets_the_previous_keys():
    model, tokenizer, cfg = make_model(block_causal=True), make_tokenizer(), SAMPLERS["guided"]
    loop = ScaleLoop(model, tokenizer, cfg, rows=2)
    draw(model, tokenizer, cfg, *inputs(2, seed=2), loop=loop)
    again = draw(model, tokenizer, cfg, *inputs(2, seed=3), loop=loop)
    fresh = draw(model, tokenizer, cfg, *inputs(2, seed=3))
    assert all(torch.equal(a, b) for a, b in zip(again.tokens, fresh.tokens, strict=True))


def test_a_loop_refuses_another_batch_size():
    model, tokenizer, cfg = make_model(), make_tokenizer(), SAMPLERS["guided"]
    loop = ScaleLoop(model, tokenizer, cfg, rows=2)
    with pytest.raises(ValueError, match="2 rows"):
        draw(model, tokenizer, cfg, *inputs(3), loop=loop)


@pytest.mark.parametrize(("context_positions", "context_maps"), [("none", "none"), ("rope", "none"), ("rope", "add")])
def test_the_loop_in_one_function_draws_what_the_scale_by_scale_steps_draw(context_positions, context_maps):
    model = make_model(context_positions=context_positions, context_maps=context_maps)
    tokenizer, cfg = make_tokenizer(), COMBINED
    loop = ScaleLoop(model, tokenizer, cfg, rows=3)
    whole = draw(model, tokenizer, cfg, *inputs(3), loop=loop)
    levels, pooled = inputs(3)
    seconds = []
    by_scale = sample(
        model, tokenizer, levels, pooled, *NULL, cfg, torch.Generator().manual_seed(7), scale_seconds=seconds
    )
    assert len(seconds) == len(SCALES) + 1
    assert all(torch.equal(a, b) for a, b in zip(whole.tokens, by_scale.tokens, strict=True))
    assert torch.equal(whole.images_R3HW, by_scale.images_R3HW)


def test_the_race_draws_what_torch_multinomial_draws():
    probs = torch.randn(40, 64).softmax(-1)
    probs[:, :20] = 0  # filtered tokens are never drawn
    generators = [torch.Generator().manual_seed(s) for s in (3, 4)]
    raced = race(probs, exponential_rows(40, 64, generators, torch.device("cpu")))
    same = [torch.Generator().manual_seed(s) for s in (3, 4)]
    drawn = torch.cat(
        [torch.multinomial(part, 1, generator=g)[:, 0] for part, g in zip(probs.chunk(2), same, strict=True)]
    )
    assert torch.equal(raced, drawn) and raced.min() >= 20


# guidance switched off for the last scale, pruning at the last scale, top-k: every branch of the loop at once
COMBINED = SamplerConfig(cfg_scale=2.0, cfg_off_from=4, top_k=20, prune_from=4, prune_keep=0.5)


@pytest.mark.parametrize(("context_positions", "context_maps"), [("none", "none"), ("rope", "none"), ("rope", "add")])
def test_traced_loop_is_one_graph_with_the_eager_tokens(monkeypatch, context_positions, context_maps):
    """Dynamo traces the per-sample work, all scales (draws, f̂ updates) and the VQ decode as one graph
    (`fullgraph`: a break fails), drawing the eager tokens. TorchInductor's code is checked in the slow test."""
    monkeypatch.setattr(compiled_module, "DEFAULT_BACKEND", "eager")
    torch._dynamo.reset()
    model = make_model(context_positions=context_positions, context_maps=context_maps)
    tokenizer, cfg = make_tokenizer(), COMBINED
    eager = draw(model, tokenizer, cfg, *inputs(3))
    loop = ScaleLoop(model, tokenizer, cfg, rows=3, compile=True)
    traced = draw(model, tokenizer, cfg, *inputs(3), loop=loop)
    assert loop.fused_step.compiled is not None  # no fallback happened
    assert all(torch.equal(a, b) for a, b in zip(eager.tokens, traced.tokens, strict=True))
    torch.testing.assert_close(traced.images_R3HW, eager.images_R3HW, atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_inductor_compiled_sampler_draws_the_eager_tokens():
    torch._dynamo.reset()
    model, tokenizer, cfg = make_model(), make_tokenizer(), COMBINED
    loop = ScaleLoop(model, tokenizer, cfg, rows=2, compile=True)
    for seed in (7, 8):
        levels, pooled = inputs(2, seed=seed)
        fast = draw(model, tokenizer, cfg, levels, pooled, seed=seed, loop=loop)
        eager = draw(model, tokenizer, cfg, levels, pooled, seed=seed)
        assert all(torch.equal(a, b) for a, b in zip(fast.tokens, eager.tokens, strict=True))
        torch.testing.assert_close(fast.images_R3HW, eager.images_R3HW, atol=1e-4, rtol=1e-4)
    assert loop.fused_step.compiled is not None  # no eager fallback


def test_a_failing_compiler_falls_back_to_eager_with_a_warning():
    def broken_backend(graph, example_inputs):
        raise RuntimeError("no C++ compiler")

    torch._dynamo.reset()
    step = CompiledStep(lambda x: x * 2 + 1, "cpu", backend=broken_backend)
    with pytest.warns(UserWarning, match="running this step eagerly"):
        out = step(torch.ones(3))
    assert torch.equal(out, torch.full((3,), 3.0)) and step.compiled is None
    assert torch.equal(step(torch.zeros(2)), torch.ones(2))  # later calls stay eager, silently


def test_pivotal_tokens_are_those_furthest_from_the_mean():
    x = torch.zeros(2, 16, 3)
    x[0, [3, 9, 12]] = torch.tensor([5.0, 0, 0])
    x[1, [0, 15]] = torch.tensor([0, -4.0, 0])
    x[1, 7] = torch.tensor([0, 0, 9.0])
    assert pivotal_tokens(x, 3).tolist() == [[3, 9, 12], [0, 7, 15]]
    assert kept_count(64, 0.3) == 20 and kept_count(4, 0.01) == 1


def test_pruned_scale_runs_the_kept_tokens_and_restores_the_rest():
    model, tokenizer = make_model(), make_tokenizer()
    levels, pooled = inputs(3)
    cfg = SamplerConfig(cfg_scale=0.0, prune_from=4, prune_keep=0.25)
    seen = []
    hook = model.blocks[0].register_forward_hook(lambda m, args, out: seen.append(args[0].shape[1]))
    pruned = draw(model, tokenizer, cfg, levels, pooled)
    hook.remove()
    assert seen == [1, 4, 16, 16]  # a quarter of scale 4's 64 tokens
    full = draw(model, tokenizer, dataclasses.replace(cfg, prune_from=0), levels, pooled)
    assert all(torch.equal(a, b) for a, b in zip(pruned.tokens[:3], full.tokens[:3], strict=True))
    assert not torch.equal(pruned.tokens[3], full.tokens[3])
    everything = draw(model, tokenizer, dataclasses.replace(cfg, prune_keep=1.0), levels, pooled)
    assert all(torch.equal(a, b) for a, b in zip(everything.tokens, full.tokens, strict=True))


def test_pruning_is_refused_where_it_cannot_work():
    with pytest.raises(ConfigError, match="prune_from"):
        SamplerConfig(prune_from=1)
    model, tokenizer = make_model(block_causal=True), make_tokenizer()
    with pytest.raises(ConfigError, match="block_causal"):
        ScaleLoop(model, tokenizer, SamplerConfig(prune_from=3, prune_keep=0.5), rows=1)


def test_traced_ddim_gives_the_eager_images(monkeypatch):
    monkeypatch.setattr(compiled_module, "DEFAULT_BACKEND", "eager")
    torch._dynamo.reset()
    torch.manual_seed(3)
    shapes = DiffusionShapes(latent_channels=8, latent_side=8, level_tokens=5, context_width=12, pooled_width=10)
    model = LatentDiT(DiffusionConfig(depth=2, width=32, heads=2), shapes).eval()
    for p in model.parameters():
        p.data.normal_(0, 0.1)
    tokenizer = make_tokenizer()
    ddim = DdimConfig(steps=5, cfg_scale=2.0)
    levels, pooled = inputs(2)
    eager = DiffusionDecoder(model, tokenizer, ddim).sample(levels, pooled, *NULL, 1, torch.Generator().manual_seed(4))
    decoder = DiffusionDecoder(model, tokenizer, ddim, compile=True)
    traced = decoder.sample(levels, pooled, *NULL, 1, torch.Generator().manual_seed(4))
    assert decoder.noise_fn().compiled is not None
    torch.testing.assert_close(traced.images_R3HW, eager.images_R3HW, atol=1e-5, rtol=1e-5)


def test_a_replaced_decoder_keeps_no_loop_of_the_original():
    """The benchmarks derive compiled and eager decoders with `dataclasses.replace`: each builds its own loops."""
    eager = ScaleWiseDecoder(make_model(), make_tokenizer(), COMBINED)
    eager_loop = eager.loop(2, COMBINED)
    fast = dataclasses.replace(eager, compile=True)
    assert fast.loops == {} and fast.loop(2, COMBINED) is not eager_loop
    assert fast.loop(2, COMBINED).compiled and not eager_loop.compiled


def test_start_tokens_are_taken_and_every_later_scale_draws_what_it_would_have_drawn():
    model, tokenizer, cfg = make_model(), make_tokenizer(), SAMPLERS["guided"]
    levels, pooled = inputs(3)
    plain = draw(model, tokenizer, cfg, levels, pooled)
    # the plain run's own first two scales as the start: the same image, token for token
    same = sample(
        model, tokenizer, levels, pooled, *NULL, cfg, torch.Generator().manual_seed(7), start_tokens=plain.tokens[:2]
    )
    assert all(torch.equal(a, b) for a, b in zip(plain.tokens, same.tokens, strict=True))
    # another start: taken as given, and the scales after it follow it
    other = [(t + 1) % SHAPES.vocab for t in plain.tokens[:2]]
    started = sample(model, tokenizer, levels, pooled, *NULL, cfg, torch.Generator().manual_seed(7), start_tokens=other)
    assert all(torch.equal(a, b) for a, b in zip(started.tokens[:2], other, strict=True))
    assert not torch.equal(started.images_R3HW, plain.images_R3HW)
    with pytest.raises(ConfigError, match="leave none of the 4 scales"):
        sample(
            model, tokenizer, levels, pooled, *NULL, cfg, torch.Generator().manual_seed(7), start_tokens=plain.tokens
        )
