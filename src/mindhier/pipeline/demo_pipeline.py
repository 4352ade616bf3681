"""The demo's pipeline, end to end, into one folder: what `mindhier demo` runs, and what `mindhier bench decoders`
trains or reuses (with the diffusion baseline) before it measures.

    data → teacher features → Stage 1 encoder → tokenizer (the shipped prior, as the paper takes VAR's VQ-VAE;
    fine-tuned on stimuli other than scenes) + stimulus tokens → generators fine-tuned from the shipped prior on
    brain data, one per routing (`coarse_to_fine` and `static_terminal` by default: same budget, seeds and
    hyper-parameters, differing only in routing) → reconstruct the held-out test images with each, plus the
    rows that say where quality is lost — the teacher-feature oracle, the shuffled-brain control, the tokenizer
    ceiling — → evaluate (with quality per scale, consistency over samples, brain correlation per ROI) → report

Every stage is reused when the config sections it depends on are unchanged (compared by hash, `Stages`), an
interrupted training is resumed, and `fresh=True` recomputes everything. Per-stage time and peak memory go
to `stage_times.json`; the last line printed names the report. The folder layout is `run_layout.py`'s.
`demo-long` trains longer and repeats the generators over several seeds (one run folder per seed).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

from mindhier import run_layout
from mindhier.config import MindhierConfig, save_resolved
from mindhier.data import layout
from mindhier.data.info import describe_dataset, format_summary
from mindhier.errors import ConfigError
from mindhier.fileio import read_json, write_json
from mindhier.pipeline.decoder_stages import generator_stages
from mindhier.pipeline.shared_stages import shared_stages
from mindhier.pipeline.stages import DATA_SECTIONS, Stages, made_with
from mindhier.progress import ProgressFn
from mindhier.run_layout import PIPELINE_DATA, PIPELINE_REPORT, PIPELINE_STAGE_TIMES
from mindhier.sampling import PIPELINE_BATCH


@dataclass(frozen=True)
class DemoResult:
    run_dir: Path
    data_dir: Path
    report: Path
    stages: dict[str, dict]  # name → seconds, peak memory, reused
    lines: list[str]  # what the CLI prints; the last line names the report


def stimulus_source(data_dir: Path) -> str:
    """The stimulus source a dataset was simulated from (`unknown` for real NSD)."""
    manifest = data_dir / layout.MANIFEST
    if not manifest.is_file():
        return "unknown"
    return read_json(manifest, "dataset manifest").get("config", {}).get("stimuli", {}).get("source", "unknown")


def tokenizer_for_stimuli(cfg: MindhierConfig, data_dir: Path) -> MindhierConfig:
    """The tokenizer prior is used as it is on scenes (its domain) and fine-tuned on other stimuli."""
    tc = cfg.train_tokenizer
    if tc.init and tc.steps == 0 and stimulus_source(data_dir) != "scenes":
        steps = cfg.demo.tokenizer_steps_off_domain
        return dataclasses.replace(cfg, train_tokenizer=dataclasses.replace(tc, steps=steps))
    return cfg


def run_demo(
    cfg: MindhierConfig,
    out: str | Path,
    data: str | Path | None = None,
    fresh: bool = False,
    progress: ProgressFn | None = None,
    judge_cache: str | Path | None = None,
    with_diffusion: bool = False,
    device: str = "cpu",
    batch_size: int = PIPELINE_BATCH,
) -> DemoResult:
    """Run the demo into `out` on `device`. With several `seeds`, the data, encoder and tokenizer are shared and the
    generators, reconstructions and evaluations repeat per seed under `out/seed{s}`. `with_diffusion` adds the
    latent diffusion baseline (same encoder, tokenizer, seeds; matched size and training FLOPs). `batch_size`
    brain inputs are sampled together when reconstructing."""
    from mindhier.data.simulator import simulate
    from mindhier.metrics.extractors import build_extractors
    from mindhier.metrics.judge import get_judge
    from mindhier.report.html import build_report

    root = Path(out)
    markers = (run_layout.PIPELINE_MARKER, run_layout.PIPELINE_DATA_INFO)  # the second: folders of older versions
    if root.is_dir() and any(root.iterdir()) and not any((root / m).is_file() for m in markers):
        raise ConfigError(
            f"{root} is not empty and is not a demo folder (no {run_layout.PIPELINE_MARKER}); the demo replaces "
            "its stage folders, so choose an empty or new --out"
        )
    root.mkdir(parents=True, exist_ok=True)
    write_json(root / run_layout.PIPELINE_MARKER, {"format": "mindhier-pipeline"})
    routings, seeds = cfg.demo.routings, cfg.demo.seeds
    stages = Stages(cfg, fresh, device, batch_size)
    if data is None:
        data_dir = root / PIPELINE_DATA
        reuse = not fresh and (data_dir / layout.MANIFEST).is_file() and made_with(data_dir, cfg, DATA_SECTIONS)
        stages.run("simulate", lambda: simulate(cfg, data_dir, overwrite=True, progress=progress), reused=reuse)
        lines = [("reused" if reuse else "simulated") + f" dataset {data_dir}"]
    else:
        data_dir = Path(data)
        lines = [f"dataset {data_dir}"]
    summary = describe_dataset(data_dir, cfg.data, verify_images=False)
    lines.append(format_summary(summary))
    cfg = tokenizer_for_stimuli(cfg, data_dir)
    stages.cfg = cfg
    save_resolved(cfg, root / layout.CONFIG)
    write_json(root / run_layout.PIPELINE_DATA_INFO, summary)

    encoder_dir, tokenizer_dir, encoder_lines = shared_stages(cfg, root, data_dir, stages, progress)
    lines += encoder_lines
    judge = None
    if judge_cache is not None:
        started = time.perf_counter()
        judge = get_judge(Path(judge_cache), progress=progress)
        stages.record["judge"] = {"seconds": round(time.perf_counter() - started, 2)}
    extractors = build_extractors(device=device)
    runs, truth_features = [], {}  # the true test images' metric features: computed once, shared by every seed
    for number, seed in enumerate(seeds or (None,)):
        run_dir, seeded, tag = root, cfg, ""
        if seed is not None:
            run_dir, tag = root / f"seed{seed}", f"[seed {seed}] "
            seeded = dataclasses.replace(
                cfg,
                train_generator=dataclasses.replace(cfg.train_generator, seed=seed),
                sampler=dataclasses.replace(cfg.sampler, seed=seed),
                train_diffusion=dataclasses.replace(cfg.train_diffusion, seed=seed),
                ddim=dataclasses.replace(cfg.ddim, seed=seed),
            )
            run_dir.mkdir(parents=True, exist_ok=True)
            save_resolved(seeded, run_dir / layout.CONFIG)
        stages.cfg = seeded
        lines += generator_stages(
            seeded,
            run_dir,
            data_dir,
            encoder_dir,
            tokenizer_dir,
            stages,
            routings,
            judge,
            extractors,
            progress,
            tag,
            with_diffusion,
            truth_features,
            reference_rows=number == 0,
        )
        runs.append(run_dir)
    write_json(root / PIPELINE_STAGE_TIMES, stages.record)
    report = build_report(runs, root / PIPELINE_REPORT, overwrite=True)  # the demo's own report
    lines.append(f"report: {report}")
    return DemoResult(root, data_dir, report, dict(stages.record), lines)
