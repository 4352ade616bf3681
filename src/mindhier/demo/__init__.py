"""`mindhier demo`: the main job on the embedded default world, end to end.

    data → teacher features → Stage 1 encoder → tokenizer (the shipped prior, as the paper takes VAR's VQ-VAE;
    fine-tuned on stimuli other than scenes) + stimulus tokens → generators fine-tuned from the shipped prior on
    brain data, one per routing (`coarse_to_fine` and `static_terminal` by default: same budget, seeds and
    hyper-parameters, differing only in routing) → reconstruct the held-out test images with each, plus the
    rows that say where quality is lost — the teacher-feature oracle, the shuffled-brain control, the tokenizer
    ceiling — → evaluate (with quality per scale, consistency over samples, brain correlation per ROI) → report

Every stage is reused when the config sections it depends on are unchanged (compared by hash), an
interrupted training is resumed, and `fresh=True` recomputes everything. Per-stage time and peak memory go
to `stage_times.json`; the last line printed names the report. The folder layout is `run_layout.py`'s.
`demo-long` trains longer and repeats the generators over several seeds (one run folder per seed).
"""

from __future__ import annotations

import dataclasses
import resource
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mindhier import run_layout
from mindhier.config import MindhierConfig, config_hash, save_resolved, to_dict
from mindhier.data import layout
from mindhier.data.info import describe_dataset, format_summary
from mindhier.errors import ConfigError
from mindhier.fileio import read_json, write_json
from mindhier.metrics.recons_eval import METRICS_FILE
from mindhier.progress import ProgressFn
from mindhier.run_layout import (
    PIPELINE_CEILING,
    PIPELINE_CONTROL,
    PIPELINE_DATA,
    PIPELINE_DIFFUSION,
    PIPELINE_ENCODER,
    PIPELINE_EVAL,
    PIPELINE_GENERATORS,
    PIPELINE_ORACLE,
    PIPELINE_RECONS,
    PIPELINE_REPORT,
    PIPELINE_STAGE_TIMES,
    PIPELINE_TOKENIZER,
)
from mindhier.sampling import PIPELINE_BATCH

ORACLE_SUFFIX = "-oracle"
DATA_SECTIONS = ("stimuli", "simulator")
ENCODER_SECTIONS = ("stimuli", "simulator", "data", "teacher", "encoder", "alignment", "train_encoder")
TOKENIZER_SECTIONS = ("stimuli", "simulator", "data", "tokenizer", "train_tokenizer")
GENERATOR_SECTIONS = (*ENCODER_SECTIONS, *TOKENIZER_SECTIONS[3:], "generator", "train_generator")
RECON_SECTIONS = (*GENERATOR_SECTIONS, "sampler", "demo")
DIFFUSION_SECTIONS = (*GENERATOR_SECTIONS, "diffusion", "train_diffusion")  # sized and budgeted on the generator
DIFFUSION_RECON_SECTIONS = (*DIFFUSION_SECTIONS, "ddim")


@dataclass(frozen=True)
class DemoResult:
    run_dir: Path
    data_dir: Path
    report: Path
    stages: dict[str, dict]  # name → seconds, peak memory, reused
    lines: list[str]  # what the CLI prints; the last line names the report


def section_key(cfg: MindhierConfig | dict, sections: tuple[str, ...]) -> str:
    """Hash of the named config sections (of a config or of a saved config dict)."""
    as_dict = cfg if isinstance(cfg, dict) else to_dict(cfg)
    return config_hash({name: as_dict.get(name) for name in sections})


def _saved_config(folder: Path) -> dict | None:
    """A stage's saved config, as written (a field added since is missing, so the stage counts as another config:
    a new field's default need not reproduce what older code did)."""
    config_file = folder / layout.CONFIG
    return read_json(config_file, "stage config").get("config", {}) if config_file.is_file() else None


def made_with(folder: Path, cfg: MindhierConfig, sections: tuple[str, ...]) -> bool:
    """Whether the stage in `folder` was made with `cfg`'s `sections` (its saved config compared by hash)."""
    saved = _saved_config(folder)
    return saved is not None and section_key(saved, sections) == section_key(cfg, sections)


class Stages:
    """Runs named stages, reusing finished ones, and records their time and peak memory."""

    def __init__(self, cfg: MindhierConfig, fresh: bool, device: str = "cpu", batch_size: int = 1):
        self.cfg, self.fresh = cfg, fresh
        self.device, self.batch_size = device, batch_size  # where networks run; inputs sampled together
        self.record: dict[str, dict] = {}

    def train(self, name: str, folder: Path, sections: tuple[str, ...], train: Callable[[bool], object]) -> bool:
        """A training stage: reuse when finished with this config, resume when interrupted, else train."""
        state = "absent"
        if not self.fresh and made_with(folder, self.cfg, sections):
            state = (
                "finished"
                if (folder / run_layout.SUMMARY).is_file()
                else ("partial" if (folder / run_layout.CONFIG).is_file() else "absent")
            )
        if state == "absent" and folder.exists():
            shutil.rmtree(folder)  # another config (or --fresh): start over
        return self.run(name, lambda: train(state == "partial"), reused=state == "finished")

    def output(self, name: str, folder: Path, sections: tuple[str, ...], make: Callable[[], object]) -> bool:
        """A derived output (reconstructions, evaluations): reuse when made with this config."""
        marker = folder / run_layout.STAGE_MARKER
        key = section_key(self.cfg, sections)
        reused = not self.fresh and marker.is_file() and read_json(marker, "stage marker").get("key") == key
        if not reused:
            self.run(name, make)
            write_json(marker, {"key": key})
            return True
        self.record[name] = {"seconds": 0.0, "reused": True}
        return False

    def scored_row(
        self,
        tag: str,
        run_dir: Path,
        name: str,
        sections: tuple[str, ...],
        make: Callable[[Path], object],
        data_dir: Path,
        **evaluation,
    ) -> Path:
        """One row of a pipeline: its reconstructions (`make(folder)`) and their evaluation (`evaluation`: the
        keyword arguments of `evaluate_reconstructions`), each a reusable output; returns the evaluation folder."""
        from mindhier.metrics.recons_eval import evaluate_reconstructions

        recon_dir, eval_dir = run_dir / PIPELINE_RECONS / name, run_dir / PIPELINE_EVAL / name
        self.output(f"{tag}reconstruct {name}", recon_dir, sections, lambda: make(recon_dir))
        self.output(
            f"{tag}evaluate {name}",
            eval_dir,
            sections,
            lambda: evaluate_reconstructions(recon_dir, data_dir, eval_dir, **evaluation),
        )
        return eval_dir

    def run(self, name: str, fn: Callable[[], object], reused: bool = False) -> bool:
        started = time.perf_counter()
        if not reused:
            fn()
        self.record[name] = {
            "seconds": round(time.perf_counter() - started, 2),
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "reused": reused,
        }
        return not reused


def shared_stages(
    cfg: MindhierConfig, root: Path, data_dir: Path, stages: Stages, progress: ProgressFn | None
) -> tuple[Path, Path, list[str]]:
    """Teacher features, the encoder (trained and evaluated) and the tokenizer (with the stimulus tokens)."""
    from mindhier.data.feature_cache import build_feature_cache
    from mindhier.data.token_cache import build_token_cache
    from mindhier.metrics.encoder_eval import evaluate_encoder, format_encoder_eval
    from mindhier.teachers import build_teacher
    from mindhier.train.encoder import train_encoder
    from mindhier.train.tokenizer import train_tokenizer

    teacher = build_teacher(cfg.teacher, device=stages.device)
    stages.run("teacher features", lambda: build_feature_cache(data_dir, teacher, progress=progress))
    encoder_dir = root / PIPELINE_ENCODER
    stages.train(
        "encoder",
        encoder_dir,
        ENCODER_SECTIONS,
        lambda resume: train_encoder(
            cfg, data_dir, encoder_dir, resume=resume, device=stages.device, progress=progress
        ),
    )
    evaluation = evaluate_encoder(encoder_dir, data_dir, device=stages.device)
    write_json(encoder_dir / run_layout.ENCODER_EVAL, evaluation)
    tokenizer_dir = root / PIPELINE_TOKENIZER
    stages.train(
        "tokenizer",
        tokenizer_dir,
        TOKENIZER_SECTIONS,
        lambda resume: train_tokenizer(
            cfg, data_dir, tokenizer_dir, resume=resume, device=stages.device, progress=progress
        ),
    )
    stages.run(
        "stimulus tokens",
        lambda: build_token_cache(data_dir, tokenizer_dir, device=stages.device, progress=progress),
    )
    return encoder_dir, tokenizer_dir, [format_encoder_eval(evaluation)]


def generator_name(routing: str, condition: str) -> str:
    """A generator's folder and row name: its routing, with `-oracle` when trained on the teacher's features."""
    return routing if condition == "brain" else f"{routing}{ORACLE_SUFFIX}"


def generator_stages(
    cfg: MindhierConfig,
    run_dir: Path,
    data_dir: Path,
    encoder_dir: Path,
    tokenizer_dir: Path,
    stages: Stages,
    routings: tuple[str, ...],
    judge,
    extractors: list,
    progress: ProgressFn | None,
    tag: str = "",
    with_diffusion: bool = False,
    truth_features: dict | None = None,
    reference_rows: bool = True,
) -> list[str]:
    """One generator per routing and condition (fine-tuned from the prior on brain data, and in the routing study
    also on the teacher's features), their reconstructions, the oracle row, the shuffled-brain control, the
    tokenizer ceiling and every evaluation; with `with_diffusion`, the diffusion baseline too. Without
    `reference_rows` the control and the ceiling are left out (a later seed of the routing study: the ceiling does
    not depend on the seed, the control is read in the first seed's run)."""
    from mindhier.metrics.recons_eval import format_metrics
    from mindhier.sampling.reconstruct import Reconstructor, write_reconstructions, write_tokenizer_ceiling
    from mindhier.train.diffusion import train_diffusion
    from mindhier.train.generator import train_generator

    subject = read_json(encoder_dir / run_layout.shapes_file("encoder"), "encoder shapes")["subject_voxels"][0][0]
    repeats = cfg.demo.consistency_samples

    def variant(routing: str, condition: str = "brain") -> MindhierConfig:
        generator = dataclasses.replace(cfg.generator, routing=routing)
        return dataclasses.replace(
            cfg, generator=generator, train_generator=dataclasses.replace(cfg.train_generator, condition=condition)
        )

    def reconstruct(out: Path, decoder_dir: Path, sampler, **options) -> None:
        reconstructor = Reconstructor.from_runs(decoder_dir, encoder_dir, tokenizer_dir, sampler, device=stages.device)
        write_reconstructions(
            reconstructor,
            data_dir,
            out,
            subject,
            split=cfg.demo.split,
            seed=sampler.seed,
            overwrite=True,
            progress=progress,
            batch_size=stages.batch_size,
            strips=True,
            **options,
        )

    rows: list[tuple[str, MindhierConfig, Callable[[Path], object], tuple[str, ...]]] = []
    for condition in cfg.demo.conditions:
        for routing in routings:
            name, routing_cfg = generator_name(routing, condition), variant(routing, condition)
            generator_dir = run_dir / PIPELINE_GENERATORS / name
            stages.cfg = routing_cfg
            stages.train(
                f"{tag}generator {name}",
                generator_dir,
                GENERATOR_SECTIONS,
                lambda resume, c=routing_cfg, g=generator_dir: train_generator(
                    c,
                    data_dir,
                    encoder_dir,
                    tokenizer_dir,
                    g,
                    subjects=(subject,),
                    resume=resume,
                    device=stages.device,
                    progress=progress,
                ),
            )
            options = {"condition": condition, "determinism": repeats if condition == "brain" else 0}
            rows.append(
                (
                    name,
                    routing_cfg,
                    lambda out, g=generator_dir, o=options: reconstruct(out, g, cfg.sampler, **o),
                    RECON_SECTIONS,
                )
            )
    first = run_dir / PIPELINE_GENERATORS / generator_name(routings[0], "brain")
    if cfg.demo.oracle_row and "teacher" not in cfg.demo.conditions:
        rows.append(
            (
                PIPELINE_ORACLE,
                variant(routings[0]),
                lambda out: reconstruct(out, first, cfg.sampler, condition="teacher"),
                RECON_SECTIONS,
            )
        )
    if with_diffusion:
        baseline_cfg = variant(routings[0])
        stages.cfg = baseline_cfg
        stages.train(
            f"{tag}diffusion baseline",
            run_dir / PIPELINE_DIFFUSION,
            DIFFUSION_SECTIONS,
            lambda resume: train_diffusion(
                baseline_cfg,
                data_dir,
                encoder_dir,
                tokenizer_dir,
                run_dir / PIPELINE_DIFFUSION,
                subjects=(subject,),
                resume=resume,
                device=stages.device,
                progress=progress,
            ),
        )
        rows.append(
            (
                PIPELINE_DIFFUSION,
                baseline_cfg,
                lambda out: reconstruct(out, run_dir / PIPELINE_DIFFUSION, cfg.ddim, determinism=repeats),
                DIFFUSION_RECON_SECTIONS,
            )
        )
    if reference_rows:
        rows.append(
            (
                PIPELINE_CONTROL,
                variant(routings[0]),
                lambda out: reconstruct(out, first, cfg.sampler, shuffle_brain=True),
                RECON_SECTIONS,
            )
        )
        rows.append(
            (
                PIPELINE_CEILING,
                cfg,
                lambda out: write_tokenizer_ceiling(
                    tokenizer_dir, data_dir, out, subject, cfg.demo.split, overwrite=True, device=stages.device
                ),
                RECON_SECTIONS,
            )
        )

    lines, truth_features = [], truth_features if truth_features is not None else {}
    for name, row_cfg, make, sections in rows:
        stages.cfg = row_cfg
        eval_dir = stages.scored_row(
            tag,
            run_dir,
            name,
            sections,
            make,
            data_dir,
            extractors=extractors,
            judge=judge,
            truth_features=truth_features,
        )
        if name in routings or name in (PIPELINE_DIFFUSION, PIPELINE_ORACLE):
            metrics = format_metrics(read_json(eval_dir / METRICS_FILE, "metrics record"), brief=True)
            lines.append(f"{tag}{name}:\n" + metrics.split("\n", 1)[1])
    stages.cfg = cfg
    return lines


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
