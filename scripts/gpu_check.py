"""The GPU checks of the paper-size models on one CUDA GPU, with random weights (no downloads, no data).

    PYTHONPATH=src python scripts/gpu_check.py sample      [--batches 1 8 32] [--modes eager compiled] [--out FILE]
    PYTHONPATH=src python scripts/gpu_check.py logits      [--out FILE]                       # bf16 vs fp32
    PYTHONPATH=src python scripts/gpu_check.py train-step  [--out FILE]                       # FSDP step, memory
    PYTHONPATH=src python scripts/gpu_check.py ddim        [--ddim-steps 5 10 25 50 100] [--batches 1 32]

* `sample` builds the `nsd-paper` generator (Switti-512 with MindHier's conditioning, 2.3 B parameters), the
  brain encoder and the VAR/Switti VQ-VAE on the GPU, and reconstructs 512 px images with the paper's sampler
  (N = 1, CFG 6, top-k 400, top-p 0.95) in bf16 (sampler precision: blocks under bf16 autocast, fp32 logits)
  at each batch size, eager and compiled (`mindhier.sampling.single_pass`: the encoder, the 10 scales and the VQ
  decode as one `torch.compile` graph, a CUDA graph): seconds per image end to end, eager also split into
  encoder, 10 scales and VQ decode (the batch-1 number is the single-image latency), images per second, the
  first (compiling) call's seconds, and model FLOP utilisation = analytic FLOPs
  (`mindhier.sampling.flops`: generator + VQ decoder) / time / the GPU's dense bf16 peak (a table of known
  GPUs, or --peak-tflops). Stops at the first batch that does not fit.
* `logits` runs one teacher-forced forward of the generator in fp32 and under bf16 autocast on the same
  inputs: the largest and mean absolute logit difference, and how often the top-1 token agrees.
* `train-step` runs FSDP2 (`fully_shard` per block, bf16 mixed precision, activation checkpointing, as the
  nsd-paper preset trains) on a one-process group: forward, backward and an AdamW step of the generator at
  micro-batch 1 over all 2,240 tokens, with the peak GPU memory.

* `ddim` builds the latent diffusion baseline at the size the `diffusion.matched` rule gives beside that
  generator (within 5 % of its parameters) and times DDIM sampling (both guidance streams, the VQ decode) at each
  step count and batch, eager and compiled, under the same bf16 autocast: with `mindhier bench decoders`'
  matched step counts (the fewest DDIM steps reaching the scale-wise quality, measured on the embedded world) this
  gives the matched-quality speed ratio at paper size against `sample`'s seconds per image.

Imports only torch and the library (models, sampling, config, train.parallel). Without a CUDA GPU it exits
with a message (status 2); `--allow-cpu --preset tiny` runs the same code on the CPU (the tests do).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import time

import torch

from mindhier.config import preset
from mindhier.models.brain_condition import BrainCondition
from mindhier.models.brain_encoder import BrainEncoder, EncoderShapes
from mindhier.models.diffusion import DiffusionShapes, LatentDiT, match_parameters
from mindhier.models.scale_ar import GeneratorShapes, ScaleAR
from mindhier.models.tokenizer import Tokenizer
from mindhier.sampling.decoders import DiffusionDecoder, ScaleWiseDecoder
from mindhier.sampling.flops import decoder_flops, scale_wise_sampling_flops
from mindhier.sampling.single_pass import SinglePass

# dense bf16 tensor-core peaks, TFLOP/s (vendor data sheets; SXM parts)
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "4090": 165.2, "A10": 125.0}
NSD_SUBJECT1_VOXELS = 15724


def peak_tflops(name: str) -> float | None:
    return next((peak for key, peak in PEAK_BF16_TFLOPS.items() if key in name), None)


def teacher_shapes(preset_name: str) -> tuple[int, int]:
    """(tokens per level, terminal dim): CLIP ViT-L/14 for nsd-paper, a small stand-in otherwise."""
    return (257, 768) if preset_name == "nsd-paper" else (5, 16)


def build(preset_name: str, device: torch.device):
    cfg = preset(preset_name)
    queries, dim = teacher_shapes(preset_name)
    voxels = NSD_SUBJECT1_VOXELS if preset_name == "nsd-paper" else 64
    encoder_shapes = EncoderShapes(((1, voxels),), (dim,) * cfg.encoder.depth, queries)
    shapes = GeneratorShapes.for_levels(cfg.tokenizer, encoder_shapes.level_dims, queries)
    with torch.device(device):
        encoder = BrainEncoder(dataclasses.replace(cfg.encoder, text_queries=0), encoder_shapes).eval()
        model = ScaleAR(cfg.generator, shapes).eval()
        tokenizer = Tokenizer(cfg.tokenizer).eval()
    return cfg, BrainCondition(encoder, "cascaded"), model, tokenizer


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclasses.dataclass
class BrainDecoder:
    """What a single pass reads of a `Reconstructor` (whose loading code pulls in more than this script may)."""

    condition: BrainCondition
    decoder: object

    @property
    def encoder(self):
        return self.condition.encoder

    @property
    def device(self) -> torch.device:
        return self.condition.device

    def null(self, subject: int):
        return self.condition.null(subject)


def single_pass(condition, decoder) -> SinglePass:
    """The whole path voxels → images (`mindhier.sampling.single_pass`): encoder, decoder and VQ decode, one
    compiled graph for the scale-wise decoder in compiled mode."""
    return SinglePass(BrainDecoder(condition, decoder), subject=1)


@torch.no_grad()
def reconstruct(single: SinglePass, voxels_BV, device):
    """Images and the seconds of the parts that run separately (encoder, scales, VQ decode; compiled: one)."""
    generators = [torch.Generator(device=device).manual_seed(i) for i in range(len(voxels_BV))]
    seconds: dict[str, float] = {}
    synchronize(device)
    images = single(voxels_BV, generators, seconds)
    return images, seconds


def check_sample(args, device, name) -> dict:
    cfg, condition, model, tokenizer = build(args.preset, device)
    sampler = dataclasses.replace(cfg.sampler, samples=1, precision="bf16")
    peak = args.peak_tflops or peak_tflops(name)
    results = []
    for mode in args.modes:
        single = single_pass(condition, ScaleWiseDecoder(model, tokenizer, sampler, compile=mode == "compiled"))
        for batch in args.batches:
            voxels = torch.randn(batch, condition.encoder.shapes.voxels[1], device=device)
            try:
                start = time.perf_counter()
                reconstruct(single, voxels, device)  # warm-up (compiles)
                first_call = time.perf_counter() - start
                runs = [reconstruct(single, voxels, device) for _ in range(args.repeats)]
            except torch.cuda.OutOfMemoryError:
                print(f"{mode} batch {batch}: out of memory; stopping")
                torch.cuda.empty_cache()
                break
            images = runs[-1][0]
            stages = {key: statistics.median(r[1][key] for r in runs) for key in runs[0][1]}
            median = statistics.median(sum(r[1].values()) for r in runs)
            flops = scale_wise_sampling_flops(model, sampler, batch)["total"] + decoder_flops(tokenizer, batch)
            achieved = flops / median / 1e12
            row = {
                "mode": mode,
                "batch": batch,
                "seconds_per_image": median / batch,
                "images_per_second": batch / median,
                "stage_seconds": stages,
                "first_call_seconds": first_call,
                "tflop_per_image": flops / batch / 1e12,
                "achieved_tflops": achieved,
                "mfu": achieved / peak if peak else None,
                "peak_memory_gib": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None,
                "image_shape": list(images.shape[1:]),
            }
            results.append(row)
            mfu = f"{row['mfu']:.1%}" if peak else "unknown peak"
            split = ", ".join(f"{k} {v * 1e3:.1f} ms" for k, v in stages.items())
            print(
                f"sample {mode} batch {batch}: {row['seconds_per_image']:.4f} s/image ({split}), "
                f"{row['images_per_second']:.2f} images/s, {achieved:.1f} TFLOP/s, MFU {mfu} "
                f"(first call {first_call:.0f} s)"
            )
    parameters = sum(p.numel() for p in model.parameters())
    return {
        "check": "sample",
        "parameters": parameters,
        "peak_bf16_tflops": peak,
        "sampler": dataclasses.asdict(sampler),
        "results": results,
    }


@torch.no_grad()
def check_logits(args, device, name) -> dict:
    _, _, model, tokenizer = build(args.preset, device)
    shapes = model.shapes
    generator = torch.Generator(device="cpu").manual_seed(0)
    tokens = [torch.randint(0, shapes.vocab, (2, s * s), generator=generator).to(device) for s in shapes.scales]
    inputs = tokenizer.quantize.teacher_forcing_inputs(tokens)
    levels = torch.randn(2, shapes.n_levels, shapes.level_tokens, shapes.context_width, generator=generator).to(device)
    pooled = torch.randn(2, shapes.pooled_width, generator=generator).to(device)
    fp32 = model(inputs, levels, pooled)
    with torch.autocast(device.type, dtype=torch.bfloat16):
        bf16 = model(inputs, levels, pooled)
    difference = (bf16.float() - fp32).abs()
    record = {
        "check": "logits",
        "logit_dtype_under_bf16": str(bf16.dtype),
        "max_abs_difference": float(difference.max()),
        "mean_abs_difference": float(difference.mean()),
        "logit_std": float(fp32.std()),
        "top1_agreement": float((bf16.argmax(-1) == fp32.argmax(-1)).float().mean()),
    }
    print(
        f"logits bf16 vs fp32: max |Δ| {record['max_abs_difference']:.4f}, "
        f"mean |Δ| {record['mean_abs_difference']:.5f} (logit sd {record['logit_std']:.3f}), "
        f"top-1 agreement {record['top1_agreement']:.2%}"
    )
    return record


def check_train_step(args, device, name) -> dict:
    import torch.distributed as dist
    import torch.nn.functional as F

    from mindhier.train.parallel import World, wrap_model

    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29531")
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=0, world_size=1)
    try:
        cfg, condition, model, tokenizer = build(args.preset, device)
        loop = dataclasses.replace(
            cfg.train_generator, strategy="fsdp", activation_checkpointing=True, precision="bf16"
        )
        model.train()
        wrapped = wrap_model(model, list(model.blocks), loop, World(0, 1, device), fp32_units=[model.head])
        optimizer = torch.optim.AdamW(wrapped.module.parameters(), lr=1e-4, betas=(0.9, 0.95))
        shapes = model.shapes
        tokens = [torch.randint(0, shapes.vocab, (1, s * s), device=device) for s in shapes.scales]
        with torch.no_grad():
            inputs = tokenizer.quantize.teacher_forcing_inputs(tokens)
            levels, pooled, _ = condition.of_voxels(
                torch.randn(1, condition.encoder.shapes.voxels[1], device=device), 1
            )
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        seconds = []
        for _ in range(2):  # the first step includes lazy allocation
            synchronize(device)
            start = time.perf_counter()
            with torch.autocast(device.type, dtype=torch.bfloat16):
                logits = wrapped.trained(inputs, levels, pooled)
            loss = F.cross_entropy(logits.float().flatten(0, 1), torch.cat(tokens, dim=1).flatten())
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            synchronize(device)
            seconds.append(time.perf_counter() - start)
        record = {
            "check": "train-step",
            "strategy": wrapped.strategy,
            "micro_batch": 1,
            "tokens": shapes.n_tokens,
            "loss": float(loss.detach()),
            "step_seconds": seconds[-1],
            "peak_memory_gib": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None,
        }
        memory = f"{record['peak_memory_gib']:.1f} GiB" if record["peak_memory_gib"] is not None else "n/a (CPU)"
        print(
            f"train step ({wrapped.strategy}, bf16, checkpointing, batch 1): {seconds[-1]:.2f} s, peak memory {memory}"
        )
        return record
    finally:
        dist.destroy_process_group()


@torch.no_grad()
def check_ddim(args, device, name) -> dict:
    """DDIM sampling of the parameter-matched baseline at every step count and batch (random weights)."""
    cfg, condition, model, tokenizer = build(args.preset, device)
    queries, dim = teacher_shapes(args.preset)
    shapes = DiffusionShapes(cfg.tokenizer.latent_channels, cfg.tokenizer.scales[-1], queries, dim, dim)
    generator_parameters = sum(p.numel() for p in model.parameters())
    del model
    with torch.device("meta"):
        backbone = match_parameters(cfg.diffusion, shapes, generator_parameters)
    with torch.device(device):
        dit = LatentDiT(backbone, shapes).eval()
    precision = "bf16" if device.type == "cuda" else "fp32"  # the sampler's precision in `sample`
    results = []
    for mode in args.modes:
        for steps in args.ddim_steps:
            ddim = dataclasses.replace(cfg.ddim, steps=steps, precision=precision)
            single = single_pass(condition, DiffusionDecoder(dit, tokenizer, ddim, mode == "compiled"))
            for batch in args.batches:
                voxels = torch.randn(batch, condition.encoder.shapes.voxels[1], device=device)

                def sample(single=single, voxels=voxels):
                    start = time.perf_counter()
                    reconstruct(single, voxels, device)
                    synchronize(device)
                    return time.perf_counter() - start

                try:
                    first_call = sample()
                    median = statistics.median(sample() for _ in range(args.repeats))
                except torch.cuda.OutOfMemoryError:
                    print(f"ddim-{steps} {mode} batch {batch}: out of memory; stopping")
                    torch.cuda.empty_cache()
                    break
                row = {
                    "mode": mode,
                    "ddim_steps": steps,
                    "batch": batch,
                    "seconds_per_image": median / batch,
                    "first_call_seconds": first_call,
                    "peak_memory_gib": torch.cuda.max_memory_allocated(device) / 2**30
                    if device.type == "cuda"
                    else None,
                }
                results.append(row)
                print(
                    f"ddim-{steps} {mode} batch {batch}: {row['seconds_per_image']:.4f} s/image"
                    " (encoder, denoiser, VQ decode)"
                )
    return {
        "check": "ddim",
        "parameters": sum(p.numel() for p in dit.parameters()),
        "generator_parameters": generator_parameters,
        "backbone": dataclasses.asdict(backbone),
        "note": "the whole path, encoder included, as `sample`'s seconds per image",
        "results": results,
    }


CHECKS = {"sample": check_sample, "logits": check_logits, "train-step": check_train_step, "ddim": check_ddim}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("check", choices=sorted(CHECKS))
    parser.add_argument("--preset", default="nsd-paper", help="sizes to build (default: nsd-paper)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument(
        "--modes",
        nargs="+",
        choices=["eager", "compiled"],
        default=["eager", "compiled"],
        help="sample: eager and/or torch.compile (CUDA graphs on a GPU) sampling steps",
    )
    parser.add_argument(
        "--ddim-steps", type=int, nargs="+", default=[5, 10, 25, 50, 100], help="ddim: the step counts to time"
    )
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
            "gpu_check: no CUDA GPU is visible (torch.cuda.is_available() is False); run it on a CUDA machine",
            file=sys.stderr,
        )
        return 2
    torch.manual_seed(0)
    record = {
        "device": name,
        "preset": args.preset,
        "torch": torch.__version__,
        **CHECKS[args.check](args, device, name),
    }
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(record, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
