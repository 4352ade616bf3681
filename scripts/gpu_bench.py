"""Scale-wise sampling speed of the paper-size generator on one CUDA GPU, with random weights.

    PYTHONPATH=src python scripts/gpu_bench.py [--batches 1 8 32 64] [--repeats 3] [--out gpu_bench.json]

Builds the `nsd-paper` generator (Switti-512 with MindHier's brain conditioning, 2.3 B parameters) and the
VAR/Switti VQ-VAE directly on the GPU in bf16, then samples 512 px images (N = 1, CFG 6, top-k 400, top-p
0.95: the paper's sampler) from random brain conditions at each batch size, stopping at the first that does
not fit. Prints seconds per image, images per second and model FLOP utilisation: analytic FLOPs
(`mindhier.sampling.flops`: generator + VQ decoder) / time / the GPU's dense bf16 peak (a table of known
GPUs, or --peak-tflops). The encoder is not part of it (its cost is one forward of a small network).

Imports only torch and mindhier.models / mindhier.sampling (plus mindhier.config for the preset's sizes,
which those import themselves). Without a CUDA GPU it exits with a message (status 2); `--allow-cpu` runs
the same code on the CPU for tests (use `--preset tiny`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time

import torch

from mindhier.config import preset
from mindhier.models.scale_ar import GeneratorShapes, ScaleAR
from mindhier.models.tokenizer import Tokenizer
from mindhier.sampling.flops import decoder_flops, scale_wise_sampling_flops
from mindhier.sampling.scale_ar import sample

# dense bf16 tensor-core peaks, TFLOP/s (vendor data sheets; SXM parts)
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "4090": 165.2, "A10": 125.0}
ENCODER_TOKENS, ENCODER_WIDTH, POOLED_WIDTH, LEVELS = 257, 768, 768, 4  # CLIP ViT-L/14 tokens, encoder width


def peak_tflops(name: str) -> float | None:
    return next((peak for key, peak in PEAK_BF16_TFLOPS.items() if key in name), None)


def parameters_to_bf16(module: torch.nn.Module) -> torch.nn.Module:
    """Parameters to bf16; buffers keep their dtype (`Module.to(dtype)` would also cast RoPE's complex table)."""
    for parameter in module.parameters():
        parameter.data = parameter.data.to(torch.bfloat16)
    return module


def build(preset_name: str, device: torch.device):
    cfg = preset(preset_name)
    shapes = GeneratorShapes(
        vocab=cfg.tokenizer.vocab,
        latent_channels=cfg.tokenizer.latent_channels,
        scales=tuple(cfg.tokenizer.scales),
        n_levels=LEVELS,
        level_tokens=ENCODER_TOKENS if preset_name == "nsd-paper" else 4,
        context_width=cfg.encoder.width,
        pooled_width=POOLED_WIDTH if preset_name == "nsd-paper" else 16,
    )
    with torch.device(device):
        model = parameters_to_bf16(ScaleAR(cfg.generator, shapes)).eval()
        tokenizer = parameters_to_bf16(Tokenizer(cfg.tokenizer)).eval()
    sampler = dataclasses.replace(cfg.sampler, samples=1)
    return cfg, model, tokenizer, sampler


def run_batch(model, tokenizer, sampler, batch: int, device: torch.device, generator: torch.Generator):
    shapes = model.shapes
    levels = torch.randn(batch, shapes.n_levels, shapes.level_tokens, shapes.context_width, device=device)
    pooled = torch.randn(batch, shapes.pooled_width, device=device)
    null_levels, null_pooled = torch.zeros_like(levels[:1]), torch.zeros_like(pooled[:1])
    with torch.autocast(device.type, dtype=torch.bfloat16):
        out = sample(model, tokenizer, levels, pooled, null_levels, null_pooled, sampler, generator)
    return out.images_R3HW


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="nsd-paper", help="sizes to build (default: nsd-paper)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32, 64])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per batch after one warm-up (median)")
    parser.add_argument("--peak-tflops", type=float, help="the GPU's dense bf16 peak (default: from a table)")
    parser.add_argument("--allow-cpu", action="store_true", help="run on the CPU when there is no GPU (tests)")
    parser.add_argument("--out", help="also write the results as JSON here")
    args = parser.parse_args(argv)

    if torch.cuda.is_available():
        device = torch.device("cuda")
        name = torch.cuda.get_device_name(device)
    elif args.allow_cpu:
        device, name = torch.device("cpu"), "cpu"
    else:
        print(
            "gpu_bench: no CUDA GPU is visible (torch.cuda.is_available() is False); run it on a CUDA machine",
            file=sys.stderr,
        )
        return 2
    peak = args.peak_tflops or peak_tflops(name)
    torch.manual_seed(0)
    started = time.perf_counter()
    cfg, model, tokenizer, sampler = build(args.preset, device)
    build_seconds = time.perf_counter() - started
    parameters = sum(p.numel() for p in model.parameters())
    print(
        f"{name}: {args.preset} generator, {parameters:,} parameters, bf16, built in {build_seconds:.1f} s; "
        f"{cfg.tokenizer.image_px} px, scales {list(cfg.tokenizer.scales)}, CFG {sampler.cfg_scale}"
    )
    results = []
    for batch in args.batches:
        generator = torch.Generator(device=device).manual_seed(0)
        try:
            run_batch(model, tokenizer, sampler, batch, device, generator)  # warm-up
            seconds = []
            for _ in range(args.repeats):
                synchronize(device)
                start = time.perf_counter()
                images = run_batch(model, tokenizer, sampler, batch, device, generator)
                synchronize(device)
                seconds.append(time.perf_counter() - start)
        except torch.cuda.OutOfMemoryError:
            print(f"batch {batch}: out of memory; stopping")
            torch.cuda.empty_cache()
            break
        median = statistics.median(seconds)
        flops = scale_wise_sampling_flops(model, sampler, batch)["total"] + decoder_flops(tokenizer, batch)
        achieved = flops / median / 1e12
        row = {
            "batch": batch,
            "seconds_per_image": median / batch,
            "images_per_second": batch / median,
            "tflop_per_image": flops / batch / 1e12,
            "achieved_tflops": achieved,
            "mfu": achieved / peak if peak else None,
            "peak_memory_gib": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None,
            "image_shape": list(images.shape[1:]),
        }
        results.append(row)
        mfu = f"{row['mfu']:.1%}" if peak else "unknown peak"
        print(
            f"batch {batch}: {row['seconds_per_image']:.4f} s/image, {row['images_per_second']:.2f} images/s, "
            f"{achieved:.1f} TFLOP/s, MFU {mfu}"
        )
    record = {
        "device": name,
        "peak_bf16_tflops": peak,
        "preset": args.preset,
        "parameters": parameters,
        "sampler": dataclasses.asdict(sampler),
        "torch": torch.__version__,
        "results": results,
    }
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(record, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
