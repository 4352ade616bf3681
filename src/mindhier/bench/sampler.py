"""`mindhier bench sampler`: scale-wise sampling speed, and its cost against one teacher-forced forward.

Built from the preset's shapes with random weights (speed does not depend on training). Measured, on
this machine, for batches of 1 and 32 brain inputs and for both execution modes — eager, and compiled
(`torch.compile` of every per-scale step, f̂ update and decode, and of the teacher-forced forward;
`sampling/compiled.py`):

* images per second of sampling (N = 1, guidance on: both streams in one batch, final VQ decode) through a
  reused `ScaleLoop` (static buffers);
* the time of every scale (and of the final decode), from the same steps run scale by scale eagerly (the
  timed sampler runs all scales as one function, `ScaleLoop`);
* the ratio (sampling time) / (one teacher-forced forward over all L tokens for both guidance streams,
  plus one VQ decode) in the same mode — the overhead of generating scale by scale instead of in one
  pass — and the compiled sampler against the eager forward. The encoder and strip decodes are excluded
  on both sides;
* the compile time (the first call of each compiled function, seconds; TorchInductor caches its code on
  disk, so a second run compiles faster).

Each measurement is the median of `repeats` alternating runs after a warm-up.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch

from mindhier.config import MindhierConfig, SamplerConfig, to_dict
from mindhier.models.scale_ar import GeneratorShapes, ScaleAR
from mindhier.models.tokenizer import Tokenizer
from mindhier.provenance import machine, provenance
from mindhier.sampling.compiled import CompiledStep
from mindhier.sampling.scale_ar import ScaleLoop, sample


def bench_shapes(cfg: MindhierConfig) -> GeneratorShapes:
    from mindhier.teachers import build_teacher

    teacher = build_teacher(cfg.teacher)
    return GeneratorShapes.for_levels(cfg.tokenizer, [level.dim for level in teacher.levels], teacher.levels[0].tokens)


@torch.no_grad()
def measure_batch(
    model: ScaleAR, tokenizer: Tokenizer, sampler_cfg: SamplerConfig, batch: int, repeats: int, compile: bool
):
    """Median sampling and teacher-forced times for `batch` brain inputs, the median time per scale, and the
    seconds the first (compiling) calls took."""
    shapes = model.shapes
    device = next(model.parameters()).device
    null_levels = torch.zeros(1, shapes.n_levels, shapes.level_tokens, shapes.context_width, device=device)
    null_pooled = torch.zeros(1, shapes.pooled_width, device=device)
    levels = torch.randn(batch, shapes.n_levels, shapes.level_tokens, shapes.context_width).to(device)
    pooled = torch.randn(batch, shapes.pooled_width).to(device)
    tokens = [torch.randint(0, shapes.vocab, (batch, s * s)).to(device) for s in shapes.scales]
    next_inputs = tokenizer.quantize.teacher_forcing_inputs(tokens).repeat(2, 1, 1)
    both_levels = torch.cat([levels, null_levels.expand(batch, -1, -1, -1)])
    both_pooled = torch.cat([pooled, null_pooled.expand(batch, -1)])
    f_hat = tokenizer.quantize.decode(tokens)
    loop = ScaleLoop(model, tokenizer, sampler_cfg, batch, compile=compile)
    forward = CompiledStep(lambda x, lv, po, f: (model(x, lv, po), tokenizer.decode_latent(f)), device.type, compile)
    per_scale: list[list[float]] = []

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def teacher_forced():
        forward(next_inputs, both_levels, both_pooled, f_hat)
        sync()

    def sampled(by_scale: bool = False):
        seconds: list[float] = []
        generator = torch.Generator().manual_seed(0)
        sample(
            model,
            tokenizer,
            levels,
            pooled,
            null_levels,
            null_pooled,
            sampler_cfg,
            generator,
            scale_seconds=seconds if by_scale else None,
            loop=loop,
        )
        sync()
        if by_scale:
            per_scale.append(seconds)

    first_calls = {}
    for name, fn in (("teacher_forced", teacher_forced), ("sampling", sampled)):  # warm-up (compiles)
        start = time.perf_counter()
        fn()
        first_calls[name] = round(time.perf_counter() - start, 2)
    teacher_forced(), sampled()
    forward_times, sample_times = [], []
    for _ in range(repeats):  # alternate, so drifts in machine load hit both sides alike
        for fn, times in ((teacher_forced, forward_times), (sampled, sample_times)):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        sampled(by_scale=True)  # the breakdown: the same steps scale by scale, eagerly
    scale_median = [statistics.median(column) for column in zip(*per_scale, strict=True)]
    return statistics.median(sample_times), statistics.median(forward_times), scale_median, first_calls


def bench_sampler(
    cfg: MindhierConfig, batches=(1, 32), repeats: int = 5, device: str = "cpu", modes=("eager", "compiled")
) -> dict[str, Any]:
    torch.manual_seed(0)
    shapes = bench_shapes(cfg)
    model = ScaleAR(cfg.generator, shapes).to(device).eval()
    tokenizer = Tokenizer(cfg.tokenizer).to(device).eval()
    sampler_cfg = SamplerConfig(**{**to_dict(cfg.sampler), "samples": 1, "cfg_off_from": 0})
    if sampler_cfg.cfg_scale == 0:
        sampler_cfg = SamplerConfig(**{**to_dict(sampler_cfg), "cfg_scale": 3.0})
    results: dict[str, dict[str, Any]] = {}
    for batch in batches:
        results[str(batch)] = {}
        for mode in modes:
            sampling, forward, scale_median, first_calls = measure_batch(
                model, tokenizer, sampler_cfg, batch, repeats, compile=mode == "compiled"
            )
            results[str(batch)][mode] = {
                "sampling_seconds": round(sampling, 5),
                "teacher_forced_seconds": round(forward, 5),
                "ratio_sampling_to_teacher_forced": round(sampling / forward, 3),
                "images_per_second": round(batch / sampling, 2),
                "seconds_per_scale": {str(s): round(t, 5) for s, t in zip(shapes.scales, scale_median, strict=False)},
                "final_decode_seconds": round(scale_median[-1], 5),
                "first_call_seconds": first_calls,
            }
        if {"eager", "compiled"} <= set(modes):
            row = results[str(batch)]
            row["ratio_compiled_sampling_to_eager_teacher_forced"] = round(
                row["compiled"]["sampling_seconds"] / row["eager"]["teacher_forced_seconds"], 3
            )
    return {
        "benchmark": "sampler",
        "preset": cfg.preset,
        "generator_parameters": sum(p.numel() for p in model.parameters()),
        "tokens_per_image": shapes.n_tokens,
        "scales": list(shapes.scales),
        "sampler": to_dict(sampler_cfg),
        "modes": list(modes),
        "batches": results,
        "images_per_second": {b: {m: r[m]["images_per_second"] for m in modes} for b, r in results.items()},
        "ratio_sampling_to_teacher_forced": {
            b: {m: r[m]["ratio_sampling_to_teacher_forced"] for m in modes} for b, r in results.items()
        },
        "machine": machine(),
        "provenance": provenance(),
        "config": to_dict(cfg),
    }
