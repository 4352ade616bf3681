"""`mindhier bench decoders`: the scale-wise sampler against the diffusion baseline, speed and quality.

On the trained models of a demo run (trained, or reused, through `run_demo(..., with_diffusion=True)`), in
one process:

* speed — seconds per image at batch 1 and batch 32 (the first test inputs, all in one batch) for: the
  scale-wise sampler (N = 1, guidance on), the same with guidance off from the last two scales, and DDIM at
  25 and 50 steps. Each variant is split into encoder, decoder network (generator / denoiser) and VQ decode
  time, with its peak memory (CUDA: max allocated; CPU: the process's peak RSS, reset before each run
  where Linux allows). Variants run alternately, `repeats` times after a warm-up; medians are reported;
* quality — every variant reconstructs the whole test set (single shot, per-image seeds, the demo's
  protocol) and is scored with PixCorr, SSIM, the scene judge and the offline proxy identification; and
  the baseline's quality-versus-steps curve (5 to 100 DDIM steps) beside the scale-wise point;
* the speed ratios diffusion / scale-wise, the parameter counts and training FLOPs of both, and the
  machine, threads and torch version.

Shape letters (docs/glossary.md): B batch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from mindhier import run_layout
from mindhier.config import DdimConfig, MindhierConfig, SamplerConfig, to_dict
from mindhier.fileio import read_json
from mindhier.metrics.recons_eval import OFFLINE_HEADLINE_METRICS
from mindhier.progress import ProgressFn, report
from mindhier.provenance import machine, provenance
from mindhier.run_layout import (
    PIPELINE_DIFFUSION,
    PIPELINE_ENCODER,
    PIPELINE_GENERATORS,
    PIPELINE_TOKENIZER,
)
from mindhier.sampling.ddim import sample_ddim
from mindhier.sampling.decoders import DiffusionDecoder, ScaleWiseDecoder
from mindhier.sampling.reconstruct import Reconstructor
from mindhier.sampling.scale_ar import sample

QUALITY_METRICS = OFFLINE_HEADLINE_METRICS
CURVE_STEPS = (5, 10, 25, 50, 100)


def _reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    elif sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):  # "5" resets the peak resident set size (VmHWM) of this process
            Path("/proc/self/clear_refs").write_text("5")


def _peak_memory_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def variants(cfg: MindhierConfig, n_scales: int) -> dict[str, SamplerConfig | DdimConfig]:
    """The timed decoders: name → sampler config."""
    scale_wise = dataclasses.replace(cfg.sampler, samples=1, cfg_off_from=0)
    return {
        "scale-wise": scale_wise,
        "scale-wise, guidance off for the last two scales": dataclasses.replace(
            scale_wise, cfg_off_from=max(n_scales - 1, 1)
        ),
        "ddim-25": dataclasses.replace(cfg.ddim, steps=25),
        "ddim-50": dataclasses.replace(cfg.ddim, steps=50),
    }


@torch.no_grad()
def time_variant(
    reconstructors: dict[str, Reconstructor], sampler, voxels_BV, subject: int, device
) -> dict[str, float]:
    """One timed run of a variant on a batch: encoder, decoder network and VQ-decode seconds, and peak memory."""
    kind = "diffusion" if isinstance(sampler, DdimConfig) else "scale-wise"
    reconstructor = reconstructors[kind]
    generator = torch.Generator().manual_seed(0)
    _reset_peak_memory(device)
    _sync(device)
    start = time.perf_counter()
    levels, pooled, _ = reconstructor.condition.of_voxels(voxels_BV, subject)
    null_levels, null_pooled, _ = reconstructor.condition.null(subject)
    _sync(device)
    encoded = time.perf_counter()
    if kind == "scale-wise":
        seconds: list[float] = []
        decoder: ScaleWiseDecoder = reconstructor.decoder
        sample(
            decoder.model,
            decoder.tokenizer,
            levels,
            pooled,
            null_levels,
            null_pooled,
            sampler,
            generator,
            scale_seconds=seconds,
        )
        network, vq_decode = sum(seconds[:-1]), seconds[-1]
    else:
        decoder: DiffusionDecoder = reconstructor.decoder
        shapes = decoder.model.shapes
        noise = torch.randn(
            len(levels), shapes.latent_channels, shapes.latent_side, shapes.latent_side, generator=generator
        ).to(levels.device)
        z = sample_ddim(
            decoder.model,
            decoder.schedule,
            levels[:, -1, :, : decoder.model.shapes.context_width],
            pooled,
            null_levels[:, -1, :, : decoder.model.shapes.context_width],
            null_pooled,
            sampler,
            noise,
            generator,
        )
        _sync(device)
        denoised = time.perf_counter()
        decoder.to_images(z)
        _sync(device)
        network, vq_decode = denoised - encoded, time.perf_counter() - denoised
    _sync(device)
    total = time.perf_counter() - start
    return {
        "total": total,
        "encoder": encoded - start,
        "network": network,
        "vq_decode": vq_decode,
        "peak_memory_mib": _peak_memory_mib(device),
    }


def measure_speed(reconstructors, samplers, voxels_NV, subject, batches, repeats, device, progress=None):
    results: dict[str, dict[str, Any]] = {name: {} for name in samplers}
    for batch in batches:
        inputs = torch.as_tensor(voxels_NV[:batch]).float()
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in samplers}
        for sampler in samplers.values():  # warm-up
            time_variant(reconstructors, sampler, inputs, subject, device)
        for r in range(repeats):  # alternate, so drifts in machine load hit every variant alike
            for name, sampler in samplers.items():
                runs[name].append(time_variant(reconstructors, sampler, inputs, subject, device))
            report(progress, f"time decoders (batch {batch})", r + 1, repeats)
        for name, measured in runs.items():
            median = {key: statistics.median(m[key] for m in measured) for key in measured[0]}
            results[name][str(batch)] = {
                "seconds_per_image": round(median["total"] / len(inputs), 6),
                "images_per_second": round(len(inputs) / median["total"], 3),
                "stage_seconds": {k: round(median[k], 6) for k in ("encoder", "network", "vq_decode")},
                "peak_memory_mib": round(max(m["peak_memory_mib"] for m in measured), 1),
                "batch": len(inputs),
            }
    return results


def measure_quality(reconstructors, samplers, data_dir, out, subject, judge, extractors, seed, progress=None):
    """Reconstruct the test set with every sampler (single shot) and score it; name → headline metrics."""
    from mindhier.metrics.recons_eval import evaluate_reconstructions
    from mindhier.sampling.reconstruct import write_reconstructions

    scores, truth_features = {}, {}
    for name, sampler in samplers.items():
        kind = "diffusion" if isinstance(sampler, DdimConfig) else "scale-wise"
        base = reconstructors[kind]
        reconstructor = dataclasses.replace(base, decoder=dataclasses.replace(base.decoder, **_sampler_field(sampler)))
        folder = out / "recons" / _slug(name)
        write_reconstructions(reconstructor, data_dir, folder, subject, seed=seed, overwrite=True, progress=progress)
        record = evaluate_reconstructions(
            folder,
            data_dir,
            out / "eval" / _slug(name),
            extractors=extractors,
            judge=judge,
            truth_features=truth_features,
        )
        scores[name] = {
            m: {
                "mean": round(record["metrics"][m]["mean"], 4),
                "ci95": [round(v, 4) for v in record["metrics"][m]["ci95"]],
            }
            for m in QUALITY_METRICS
            if m in record["metrics"] and record["metrics"][m].get("kind") != "absent"
        }
    return scores


def _sampler_field(sampler) -> dict[str, Any]:
    return {"ddim": sampler} if isinstance(sampler, DdimConfig) else {"sampler": sampler}


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name).strip("_")


def bench_decoders(
    cfg: MindhierConfig,
    run_dir: str | Path,
    out_dir: str | Path,
    judge_cache: str | Path | None = None,
    batches: tuple[int, ...] = (1, 32),
    repeats: int = 3,
    curve_steps: tuple[int, ...] = CURVE_STEPS,
    progress: ProgressFn | None = None,
    device: str = "cpu",
) -> dict[str, Any]:
    """Train or reuse the demo run in `run_dir` (with the baseline) on `device`, then measure there;
    reconstructions go to `out_dir`. Returns the record `mindhier bench decoders` writes."""
    from mindhier.data.nsd import open_dataset
    from mindhier.demo import run_demo
    from mindhier.metrics.extractors import build_extractors
    from mindhier.metrics.judge import get_judge

    run_dir, out_dir = Path(run_dir), Path(out_dir)
    demo = run_demo(cfg, run_dir, progress=progress, judge_cache=judge_cache, with_diffusion=True, device=device)
    routing = cfg.demo.routings[0]
    encoder, tokenizer = run_dir / PIPELINE_ENCODER, run_dir / PIPELINE_TOKENIZER
    reconstructors = {
        "scale-wise": Reconstructor.from_runs(
            run_dir / PIPELINE_GENERATORS / routing, encoder, tokenizer, cfg.sampler, device=device
        ),
        "diffusion": Reconstructor.from_runs(run_dir / PIPELINE_DIFFUSION, encoder, tokenizer, cfg.ddim, device=device),
    }
    device = torch.device(device)
    subject = next(iter(reconstructors["scale-wise"].encoder.shapes.voxels))
    with open_dataset(demo.data_dir, subjects=[subject], check_images=False) as dataset:
        voxels = dataset.split(subject, "test").voxels()
    n_scales = len(reconstructors["scale-wise"].tokenizer.cfg.scales)
    timed = variants(cfg, n_scales)
    usable = tuple(sorted({min(b, len(voxels)) for b in batches}))  # a batch never exceeds the test set
    speed = measure_speed(reconstructors, timed, voxels, subject, usable, repeats, device, progress)

    judge = get_judge(Path(judge_cache), progress=progress) if judge_cache is not None else None
    extractors = build_extractors(["lite0_early", "lite0_late", "lite2_early", "lite2_late"], device=device)
    curve = {f"ddim-{s}": dataclasses.replace(cfg.ddim, steps=s) for s in curve_steps}
    quality_samplers = {**timed, **{k: v for k, v in curve.items() if k not in timed}}
    quality = measure_quality(
        reconstructors, quality_samplers, demo.data_dir, out_dir, subject, judge, extractors, cfg.sampler.seed, progress
    )
    ratios = {
        f"{d} / {s}": {
            b: round(speed[d][b]["seconds_per_image"] / speed[s][b]["seconds_per_image"], 2) for b in speed[s]
        }
        for d in ("ddim-25", "ddim-50")
        for s in ("scale-wise", "scale-wise, guidance off for the last two scales")
    }
    generator_summary = read_json(run_dir / PIPELINE_GENERATORS / routing / run_layout.SUMMARY, "generator summary")
    diffusion_summary = read_json(run_dir / PIPELINE_DIFFUSION / run_layout.SUMMARY, "diffusion summary")
    return {
        "benchmark": "decoders",
        "preset": cfg.preset,
        "run": str(run_dir),
        "split": "test",
        "protocol": "single shot (N = 1), per-image seeds SeedSequence([seed, stimulus index]), repetitions "
        "averaged as voxels; identification metrics are offline proxies (EfficientNet-Lite0/-Lite2), "
        "labelled as such; the judge is the package's scene judge",
        "speed": speed,
        "speed_ratio_diffusion_over_scale_wise": ratios,
        "quality": quality,
        "quality_vs_ddim_steps": {str(s): quality[f"ddim-{s}"] for s in curve_steps},
        "scale_wise_point": quality["scale-wise"],
        "models": {
            "scale_wise": {
                "routing": routing,
                "parameters": generator_summary["parameters"],
                "training_steps": generator_summary["steps"],
                "sampler": to_dict(timed["scale-wise"]),
            },
            "diffusion": {
                key: diffusion_summary[key]
                for key in (
                    "parameters",
                    "parameter_ratio",
                    "width",
                    "depth",
                    "steps",
                    "training_flops",
                    "generator_training_flops",
                    "flops_counted",
                )
            }
            | {"ddim": to_dict(cfg.ddim)},
        },
        "test_images": len(voxels),
        "repeats": repeats,
        "machine": machine(),
        "provenance": provenance(),
        "config": to_dict(cfg),
    }


def summary_lines(record: dict[str, Any]) -> list[str]:
    """A few printable lines: seconds per image and quality of every variant, and the speed ratios."""
    lines = []
    for name, per_batch in record["speed"].items():
        timing = ", ".join(f"batch {b}: {v['seconds_per_image'] * 1e3:.2f} ms/image" for b, v in per_batch.items())
        quality = record["quality"].get(name, {})
        scores = ", ".join(
            f"{m} {quality[m]['mean']:.3f}" for m in ("pixcorr", "ssim", "lite0_late.two_way") if m in quality
        )
        lines.append(f"{name}: {timing}; {scores}")
    for name, per_batch in record["speed_ratio_diffusion_over_scale_wise"].items():
        lines.append(f"{name}: " + ", ".join(f"batch {b} ×{r}" for b, r in per_batch.items()))
    return lines
