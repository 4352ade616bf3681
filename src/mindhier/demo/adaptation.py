"""`mindhier eval adaptation`: how much data does a new subject need, given a model shared across subjects?

    data (the preset's simulated subjects, or --data) → teacher features → a shared encoder on
    `adaptation.shared_subjects` → the tokenizer (the shipped prior) → a shared generator fine-tuned on the pooled
    brain inputs of the shared subjects → for each session budget of the held-out subject (its first 1, 2, 4
    sessions, and all of them): the shared encoder adapted to it (`mindhier adapt`), and the same architecture
    trained from scratch on the same sessions (Stage 1's own recipe and budget) → for every encoder: test
    retrieval (per image, so it can be bootstrapped and paired) and, through the one shared generator,
    reconstructions scored by the evaluator, with its reference rows (the tokenizer ceiling, the teacher-feature
    oracle, the shuffled-brain control of the one-session adapted encoder) → report with the curves.

Every arm decodes through the same shared generator (it only sees encoder levels, which all encoders align to the
same teacher), so arms differ only in their encoder. Stages are reused when their config is unchanged, as in the
demo (`pipeline.stages.Stages`). The folder layout: `data/`, `shared/{encoder,generator}/`, `tokenizer/`,
`adapted/<budget>/`, `scratch/<budget>/`, `recons/<arm>/`, `eval/<arm>/`, `retrieval.json`, `stage_times.json`,
`report/`.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from mindhier import run_layout
from mindhier.config import MindhierConfig, save_resolved
from mindhier.data import layout
from mindhier.errors import ConfigError
from mindhier.fileio import write_json
from mindhier.pipeline.shared_stages import stimulus_tokens
from mindhier.pipeline.stages import (
    DATA_SECTIONS,
    ENCODER_SECTIONS,
    GENERATOR_SECTIONS,
    RECON_SECTIONS,
    TOKENIZER_SECTIONS,
    Stages,
    made_with,
)
from mindhier.progress import ProgressFn
from mindhier.report.adaptation import RETRIEVAL_FILE, arm_name, budget_name
from mindhier.run_layout import PIPELINE_CEILING, PIPELINE_CONTROL, PIPELINE_ORACLE
from mindhier.sampling import PIPELINE_BATCH

SHARED_DIR, ADAPTED_DIR, SCRATCH_DIR = "shared", "adapted", "scratch"
STUDY_SECTIONS = ("adaptation",)


def budget_sessions(count: int) -> tuple[int, ...]:
    return () if count == 0 else tuple(range(1, count + 1))


@dataclass(frozen=True)
class StudyResult:
    root: Path
    report: Path
    lines: list[str]


def _with_sessions(cfg: MindhierConfig, count: int) -> MindhierConfig:
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, sessions=budget_sessions(count)))


def test_retrieval(encoder_run: Path, data_dir: Path, subject: int, seed: int = 0) -> dict[str, list[float]]:
    """Per-image test retrieval of an encoder (MindEye's protocol, `metrics.retrieval.retrieval_hits`)."""
    from mindhier.data.feature_cache import build_feature_cache
    from mindhier.data.nsd import open_dataset
    from mindhier.data.subject_items import subject_items
    from mindhier.data.target_lookup import TargetLookup
    from mindhier.metrics.retrieval import retrieval_hits
    from mindhier.models.brain_encoder import encode_in_batches
    from mindhier.runs import load_encoder
    from mindhier.teachers import build_teacher

    run = load_encoder(encoder_run)
    with open_dataset(data_dir, run.cfg.data, subjects=[subject], expected_voxels=run.shapes.voxels) as dataset:
        test = subject_items(dataset, subject, "test")
    cache = build_feature_cache(data_dir, build_teacher(run.cfg.teacher))
    out = encode_in_batches(run.model, test.voxels_NV, subject)
    target = TargetLookup(cache).get(test.images_N)[-1]
    hits = retrieval_hits(out.terminal_BQD, target, generator=torch.Generator().manual_seed(seed))
    return {
        "images": test.images_N.tolist(),
        "brain_to_image": hits["brain_to_image_N"].tolist(),
        "image_to_brain": hits["image_to_brain_N"].tolist(),
    }


def run_adaptation_study(
    cfg: MindhierConfig,
    out: str | Path,
    data: str | Path | None = None,
    fresh: bool = False,
    progress: ProgressFn | None = None,
    judge_cache: str | Path | None = None,
    device: str = "cpu",
    batch_size: int = PIPELINE_BATCH,
) -> StudyResult:
    """Run the adaptation study into `out` (see the module docstring)."""
    from mindhier.data.feature_cache import build_feature_cache
    from mindhier.data.simulator import simulate
    from mindhier.metrics.extractors import build_extractors
    from mindhier.metrics.judge import get_judge
    from mindhier.report.adaptation import build_adaptation_report
    from mindhier.sampling.reconstruct import Reconstructor, write_reconstructions, write_tokenizer_ceiling
    from mindhier.teachers import build_teacher
    from mindhier.train.adapt import adapt_encoder
    from mindhier.train.encoder import train_encoder
    from mindhier.train.generator import train_generator
    from mindhier.train.tokenizer import train_tokenizer

    study = cfg.adaptation
    subjects = (*study.shared_subjects, study.held_out)
    root = Path(out)
    if root.is_dir() and any(root.iterdir()) and not (root / run_layout.PIPELINE_MARKER).is_file():
        raise ConfigError(
            f"{root} is not empty and is not a study folder (no {run_layout.PIPELINE_MARKER}); the study replaces its "
            "stage folders, so choose an empty or new --out"
        )
    root.mkdir(parents=True, exist_ok=True)
    write_json(root / run_layout.PIPELINE_MARKER, {"format": "mindhier-adaptation-study"})
    stages = Stages(cfg, fresh, device, batch_size)
    lines: list[str] = []
    if data is None:
        missing = [s for s in subjects if s not in cfg.simulator.subjects]
        if missing:
            raise ConfigError(
                f"the study needs subjects {list(subjects)} but simulator.subjects is {list(cfg.simulator.subjects)}; "
                "use --preset adapt or simulate them"
            )
        data_dir = root / run_layout.PIPELINE_DATA
        reuse = not fresh and (data_dir / layout.MANIFEST).is_file() and made_with(data_dir, cfg, DATA_SECTIONS)
        stages.run("simulate", lambda: simulate(cfg, data_dir, overwrite=True, progress=progress), reused=reuse)
    else:
        data_dir = Path(data)
    save_resolved(cfg, root / layout.CONFIG)

    teacher = build_teacher(cfg.teacher, device=device)
    stages.run("teacher features", lambda: build_feature_cache(data_dir, teacher, progress=progress))
    shared_encoder = root / SHARED_DIR / run_layout.PIPELINE_ENCODER
    stages.train(
        "shared encoder",
        shared_encoder,
        (*ENCODER_SECTIONS, *STUDY_SECTIONS),
        lambda resume: train_encoder(
            cfg,
            data_dir,
            shared_encoder,
            subjects=study.shared_subjects,
            resume=resume,
            device=device,
            progress=progress,
        ),
    )
    encoders: dict[str, Path] = {}
    for count in study.sessions:
        limited = _with_sessions(cfg, count)
        stages.cfg = limited
        adapted, scratch = root / ADAPTED_DIR / budget_name(count), root / SCRATCH_DIR / budget_name(count)
        stages.train(
            f"adapt {budget_name(count)}",
            adapted,
            (*ENCODER_SECTIONS, "adapt", *STUDY_SECTIONS),
            lambda resume, c=limited, a=adapted: adapt_encoder(
                c, shared_encoder, data_dir, study.held_out, a, resume=resume, device=device, progress=progress
            ),
        )
        stages.train(
            f"scratch {budget_name(count)}",
            scratch,
            (*ENCODER_SECTIONS, *STUDY_SECTIONS),
            lambda resume, c=limited, s=scratch: train_encoder(
                c, data_dir, s, subjects=(study.held_out,), resume=resume, device=device, progress=progress
            ),
        )
        encoders[arm_name("adapted", count)] = adapted
        encoders[arm_name("scratch", count)] = scratch
    stages.cfg = cfg

    started = time.perf_counter()
    retrieval = {name: test_retrieval(run, data_dir, study.held_out) for name, run in encoders.items()}
    write_json(root / RETRIEVAL_FILE, {"subject": study.held_out, "split": "test", "arms": retrieval})
    stages.record["test retrieval"] = {"seconds": round(time.perf_counter() - started, 2)}

    if study.reconstruct:  # the decoder every arm shares, then every arm's reconstructions
        tokenizer_dir = root / run_layout.PIPELINE_TOKENIZER
        stages.train(
            "tokenizer",
            tokenizer_dir,
            TOKENIZER_SECTIONS,
            lambda resume: train_tokenizer(
                cfg, data_dir, tokenizer_dir, resume=resume, device=device, progress=progress
            ),
        )
        stages.run("stimulus tokens", lambda: stimulus_tokens(data_dir, tokenizer_dir, device, progress))
        shared_generator = root / SHARED_DIR / "generator"
        stages.train(
            "shared generator",
            shared_generator,
            (*GENERATOR_SECTIONS, *STUDY_SECTIONS),
            lambda resume: train_generator(
                cfg,
                data_dir,
                shared_encoder,
                tokenizer_dir,
                shared_generator,
                subjects=study.shared_subjects,
                resume=resume,
                device=device,
                progress=progress,
            ),
        )
        # the oracle row's generator learned from teacher features (an honest upper bound): the prior as it is, or
        # fine-tuned for demo.oracle_steps; without a prior, trained from scratch with the shared generator's budget
        oracle_generator = root / SHARED_DIR / "generator-oracle"
        tc = cfg.train_generator
        oracle_train = dataclasses.replace(
            tc, condition="teacher", steps=cfg.demo.oracle_steps if tc.init else tc.steps
        )
        oracle_cfg = dataclasses.replace(cfg, train_generator=oracle_train)
        stages.cfg = oracle_cfg
        stages.train(
            "oracle generator",
            oracle_generator,
            (*GENERATOR_SECTIONS, *STUDY_SECTIONS),
            lambda resume: train_generator(
                oracle_cfg,
                data_dir,
                shared_encoder,
                tokenizer_dir,
                oracle_generator,
                subjects=study.shared_subjects,
                resume=resume,
                device=device,
                progress=progress,
            ),
        )
        stages.cfg = cfg
        judge = get_judge(Path(judge_cache), progress=progress) if judge_cache is not None else None
        extractors = build_extractors(device=device)
        truth_features: dict = {}

        def reconstruct(out_dir: Path, encoder_run: Path, generator: Path = shared_generator, **options) -> None:
            reconstructor = Reconstructor.from_runs(generator, encoder_run, tokenizer_dir, cfg.sampler, device)
            write_reconstructions(
                reconstructor,
                data_dir,
                out_dir,
                study.held_out,
                seed=cfg.sampler.seed,
                overwrite=True,
                progress=progress,
                batch_size=batch_size,
                **options,
            )

        first_adapted = encoders[arm_name("adapted", study.sessions[0])]
        scratch_sections = (*RECON_SECTIONS, *STUDY_SECTIONS)  # what a row made without an adapted encoder uses
        adapted_sections = (*scratch_sections, "adapt")
        rows = [
            (
                name,
                lambda o, r=run: reconstruct(o, r),
                adapted_sections if name.startswith("adapted") else scratch_sections,
            )
            for name, run in encoders.items()
        ]
        rows += [
            (  # the held-out subject's encoder only names the subject: the condition is the teacher's features
                PIPELINE_ORACLE,
                lambda o: reconstruct(o, first_adapted, oracle_generator, condition="teacher"),
                adapted_sections,
            ),
            (PIPELINE_CONTROL, lambda o: reconstruct(o, first_adapted, shuffle_brain=True), adapted_sections),
            (
                PIPELINE_CEILING,
                lambda o: write_tokenizer_ceiling(
                    tokenizer_dir, data_dir, o, study.held_out, overwrite=True, device=device
                ),
                scratch_sections,
            ),
        ]
        for name, make, sections in rows:
            stages.scored_row(
                "",
                root,
                name,
                sections,
                make,
                data_dir,
                extractors=extractors,
                judge=judge,
                truth_features=truth_features,
            )
    write_json(root / run_layout.PIPELINE_STAGE_TIMES, stages.record)
    report, summary_lines = build_adaptation_report(root, root / run_layout.PIPELINE_REPORT, overwrite=True)
    lines += summary_lines
    lines.append(f"report: {report}")
    return StudyResult(root, report, lines)
