"""The stages every decoder of a pipeline shares: teacher features, the Stage-1 encoder (trained and evaluated),
the tokenizer and the stimulus tokens."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from mindhier import run_layout
from mindhier.config import MindhierConfig
from mindhier.fileio import write_json
from mindhier.pipeline.stages import ENCODER_SECTIONS, TOKENIZER_SECTIONS, Stages
from mindhier.progress import ProgressFn
from mindhier.run_layout import PIPELINE_ENCODER, PIPELINE_TOKENIZER

if TYPE_CHECKING:
    from mindhier.data.token_cache import TokenCache


def stimulus_tokens(
    data_dir: Path, tokenizer_dir: Path, device: str = "cpu", progress: ProgressFn | None = None
) -> TokenCache:
    """Every stimulus's token maps under the tokenizer run in `tokenizer_dir` (the cache is reused when it exists)."""
    from mindhier.data.token_cache import build_token_cache
    from mindhier.runs import load_tokenizer
    from mindhier.tokenizer_source import tokenizer_source

    source = tokenizer_source(tokenizer_dir)
    tokenizer = load_tokenizer(source, device=device)
    return build_token_cache(data_dir, tokenizer, source.identity(), progress=progress)


def shared_stages(
    cfg: MindhierConfig, root: Path, data_dir: Path, stages: Stages, progress: ProgressFn | None
) -> tuple[Path, Path, list[str]]:
    """Teacher features, the encoder (trained and evaluated) and the tokenizer (with the stimulus tokens)."""
    from mindhier.data.feature_cache import build_feature_cache
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
    stages.run("stimulus tokens", lambda: stimulus_tokens(data_dir, tokenizer_dir, stages.device, progress))
    return encoder_dir, tokenizer_dir, [format_encoder_eval(evaluation)]
