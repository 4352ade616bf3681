"""The decoder stages of a pipeline: one generator per routing and condition (fine-tuned from the prior on brain
data; in the routing study also on the teacher's features), the diffusion baseline, and the scored rows —
each decoder's reconstructions, the teacher-feature oracle, the shuffled-brain control and the tokenizer ceiling.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from mindhier import run_layout
from mindhier.config import MindhierConfig
from mindhier.fileio import read_json
from mindhier.metrics.recons_eval import METRICS_FILE
from mindhier.pipeline.stages import (
    DIFFUSION_RECON_SECTIONS,
    DIFFUSION_SECTIONS,
    GENERATOR_SECTIONS,
    RECON_SECTIONS,
    Stages,
)
from mindhier.progress import ProgressFn
from mindhier.run_layout import (
    PIPELINE_CEILING,
    PIPELINE_CONTROL,
    PIPELINE_DIFFUSION,
    PIPELINE_DIFFUSION_ORACLE,
    PIPELINE_GENERATORS,
    PIPELINE_LOW_LEVEL,
    PIPELINE_ORACLE,
)

ORACLE_SUFFIX = "-oracle"


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
    from mindhier.sampling.condition_use_run import write_row_condition_use
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

    def reconstruct(out: Path, decoder_dir: Path, sampler, condition_use: bool = True, **options) -> None:
        reconstructor = Reconstructor.from_runs(decoder_dir, encoder_dir, tokenizer_dir, sampler, device=stages.device)
        written = write_reconstructions(
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
        if condition_use and not options.get("shuffle_brain"):  # rows that reconstruct from their own condition
            write_row_condition_use(
                reconstructor,
                data_dir,
                written,
                subject,
                cfg.demo.split,
                options.get("condition", "brain"),
                sampler.seed,
            )

    def train(name: str, routing_cfg: MindhierConfig) -> Path:
        generator_dir = run_dir / PIPELINE_GENERATORS / name
        stages.cfg = routing_cfg
        stages.train(
            f"{tag}generator {name}",
            generator_dir,
            GENERATOR_SECTIONS,
            lambda resume: train_generator(
                routing_cfg,
                data_dir,
                encoder_dir,
                tokenizer_dir,
                generator_dir,
                subjects=(subject,),
                resume=resume,
                device=stages.device,
                progress=progress,
            ),
        )
        return generator_dir

    rows: list[tuple[str, MindhierConfig, Callable[[Path], object], tuple[str, ...]]] = []
    for condition in cfg.demo.conditions:
        for routing in routings:
            name, routing_cfg = generator_name(routing, condition), variant(routing, condition)
            generator_dir = train(name, routing_cfg)
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
    if cfg.demo.low_level_scales and "brain" in cfg.demo.conditions:
        # the brain's layout through the encoder's low-level decoder at the first scales, the generator's detail after
        # (docs/method.md §6.3); the same generator and condition as the first routing's row, so its condition use is
        # that row's
        starts = dataclasses.replace(cfg.sampler, low_level_scales=cfg.demo.low_level_scales)
        rows.append(
            (
                PIPELINE_LOW_LEVEL,
                variant(routings[0]),
                lambda out: reconstruct(out, first, starts, condition_use=False, determinism=repeats),
                RECON_SECTIONS,
            )
        )
    if cfg.demo.oracle_row and "teacher" not in cfg.demo.conditions:
        # an honest upper bound: a generator trained on teacher features (the prior, or the prior fine-tuned on the
        # seen images' features for demo.oracle_steps), never the brain-trained one fed inputs it did not learn from
        oracle_cfg = variant(routings[0], "teacher")
        steps = cfg.demo.oracle_steps if cfg.train_generator.init else cfg.train_generator.steps
        oracle_cfg = dataclasses.replace(
            oracle_cfg, train_generator=dataclasses.replace(oracle_cfg.train_generator, steps=steps)
        )
        oracle_dir = train(generator_name(routings[0], "teacher"), oracle_cfg)
        rows.append(
            (
                PIPELINE_ORACLE,
                oracle_cfg,
                lambda out: reconstruct(out, oracle_dir, cfg.sampler, condition="teacher"),
                RECON_SECTIONS,
            )
        )
    if with_diffusion:
        baseline_cfg = variant(routings[0])

        def train_baseline(what: str, folder: str, baseline: MindhierConfig) -> None:
            stages.cfg = baseline
            stages.train(
                f"{tag}{what}",
                run_dir / folder,
                DIFFUSION_SECTIONS,
                lambda resume: train_diffusion(
                    baseline,
                    data_dir,
                    encoder_dir,
                    tokenizer_dir,
                    run_dir / folder,
                    subjects=(subject,),
                    resume=resume,
                    device=stages.device,
                    progress=progress,
                ),
            )

        train_baseline("diffusion baseline", PIPELINE_DIFFUSION, baseline_cfg)
        rows.append(
            (
                PIPELINE_DIFFUSION,
                baseline_cfg,
                lambda out: reconstruct(out, run_dir / PIPELINE_DIFFUSION, cfg.ddim, determinism=repeats),
                DIFFUSION_RECON_SECTIONS,
            )
        )
        if cfg.demo.oracle_row:  # its honest upper bound, as the generator's: trained on the teacher's features
            # (from a start: fine-tuned on the seen images' features with the FLOPs of the generator oracle's
            # demo.oracle_steps, as that oracle is)
            td, tg = baseline_cfg.train_diffusion, baseline_cfg.train_generator
            if td.init and not td.steps:  # the generator oracle's budget: demo.oracle_steps (0: as it starts)
                tg = dataclasses.replace(tg, steps=cfg.demo.oracle_steps)
                td = dataclasses.replace(td, match_generator_steps=0)
            oracle_baseline = dataclasses.replace(
                baseline_cfg, train_generator=tg, train_diffusion=dataclasses.replace(td, condition="teacher")
            )
            train_baseline("diffusion oracle", PIPELINE_DIFFUSION_ORACLE, oracle_baseline)
            rows.append(
                (
                    PIPELINE_DIFFUSION_ORACLE,
                    oracle_baseline,
                    lambda out: reconstruct(out, run_dir / PIPELINE_DIFFUSION_ORACLE, cfg.ddim, condition="teacher"),
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
        if name in routings or name in (
            PIPELINE_DIFFUSION,
            PIPELINE_DIFFUSION_ORACLE,
            PIPELINE_ORACLE,
            PIPELINE_LOW_LEVEL,
        ):
            metrics = format_metrics(read_json(eval_dir / METRICS_FILE, "metrics record"), brief=True)
            lines.append(f"{tag}{name}:\n" + metrics.split("\n", 1)[1])
    stages.cfg = cfg
    return lines
