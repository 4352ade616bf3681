"""`mindhier demo`: the main job on the embedded default world.

It runs the stages that exist, in order, and says which are still to come:

1. data — simulate the default subject on `scenes` (or use `--data`), validate and summarise it;
2. teacher features — EfficientNet-Lite0's hierarchy for every stimulus (cached beside the data);
3. Stage 1 — train the hierarchical fMRI encoder, then evaluate it on the test split;
4. Stage 2a — train the multi-scale VQ tokenizer on the training stimuli and cache every stimulus's tokens.

A finished stage is reused when the config sections it depends on are unchanged (compared by hash);
an interrupted encoder run is resumed; `fresh=True` recomputes everything.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from mindhier.config import MindhierConfig, config_hash, save_resolved, to_dict
from mindhier.data import layout
from mindhier.data.info import describe_dataset, format_summary
from mindhier.fileio import read_json, write_json
from mindhier.progress import ProgressFn

PENDING_STAGES = (
    "generators (coarse_to_fine, static_terminal)",
    "reconstruction",
    "image evaluation",
    "report",
)
DATA_SECTIONS = ("stimuli", "simulator")
ENCODER_SECTIONS = ("stimuli", "simulator", "data", "teacher", "encoder", "alignment", "train_encoder")
TOKENIZER_SECTIONS = ("stimuli", "simulator", "data", "tokenizer", "train_tokenizer")


@dataclass(frozen=True)
class DemoResult:
    run_dir: Path
    data_dir: Path
    simulated: bool  # False when a finished dataset was reused or --data was given
    encoder_trained: bool  # False when a finished encoder run was reused
    lines: list[str]  # what the CLI prints; the last line names the run's summary file


def section_key(cfg: MindhierConfig | dict, sections: tuple[str, ...]) -> str:
    """Hash of the named config sections (of a config or of a saved config dict)."""
    as_dict = cfg if isinstance(cfg, dict) else to_dict(cfg)
    return config_hash({name: as_dict.get(name) for name in sections})


def data_key(cfg: MindhierConfig) -> str:
    """What the simulated dataset depends on."""
    return section_key(cfg, DATA_SECTIONS)


def _saved_config(folder: Path) -> dict | None:
    config_file = folder / layout.CONFIG
    return read_json(config_file, "stage config").get("config", {}) if config_file.is_file() else None


def _data_reusable(data_dir: Path, cfg: MindhierConfig) -> bool:
    saved = _saved_config(data_dir)
    return (
        saved is not None
        and (data_dir / layout.MANIFEST).is_file()
        and section_key(saved, DATA_SECTIONS) == data_key(cfg)
    )


def _stage_state(run_dir: Path, cfg: MindhierConfig, sections: tuple[str, ...]) -> str:
    """'finished', 'partial' (resumable), or 'absent' (missing or made with another config)."""
    saved = _saved_config(run_dir)
    if saved is None or section_key(saved, sections) != section_key(cfg, sections):
        return "absent"
    if (run_dir / "train_summary.json").is_file():
        return "finished"
    return "partial" if (run_dir / "train_state.pt").is_file() else "absent"


def _train_stage(run_dir: Path, cfg: MindhierConfig, sections: tuple[str, ...], fresh: bool, train) -> bool:
    """Reuse, resume or (re)train one stage's run folder; True when training ran."""
    state = "absent" if fresh else _stage_state(run_dir, cfg, sections)
    if state == "absent" and run_dir.exists():
        shutil.rmtree(run_dir)  # made with another config (or --fresh): retrain from scratch
    if state != "finished":
        train(resume=state == "partial")
    return state != "finished"


def run_demo(
    cfg: MindhierConfig,
    out: str | Path,
    data: str | Path | None = None,
    fresh: bool = False,
    progress: ProgressFn | None = None,
) -> DemoResult:
    from mindhier.data.feature_cache import build_feature_cache
    from mindhier.data.simulator import simulate
    from mindhier.data.token_cache import build_token_cache
    from mindhier.metrics.encoder_eval import evaluate_encoder, format_encoder_eval
    from mindhier.teachers import build_teacher
    from mindhier.train.encoder import train_encoder
    from mindhier.train.tokenizer import train_tokenizer

    run_dir = Path(out)
    lines = []
    simulated = False
    if data is None:
        data_dir = run_dir / "data"
        if fresh or not _data_reusable(data_dir, cfg):
            simulate(cfg, data_dir, overwrite=True, progress=progress)
            simulated = True
        lines.append(("simulated" if simulated else "reused") + f" dataset {data_dir}")
    else:
        data_dir = Path(data)
        lines.append(f"dataset {data_dir}")
    summary = describe_dataset(data_dir, cfg.data)
    lines.append(format_summary(summary))
    run_dir.mkdir(parents=True, exist_ok=True)
    save_resolved(cfg, run_dir / layout.CONFIG)
    write_json(run_dir / "data_info.json", summary)

    cache = build_feature_cache(data_dir, build_teacher(cfg.teacher), overwrite=fresh, progress=progress)
    lines.append(f"{'reused' if cache.reused else 'computed'} teacher features {cache.path}")

    encoder_dir = run_dir / "encoder"
    encoder_trained = _train_stage(
        encoder_dir,
        cfg,
        ENCODER_SECTIONS,
        fresh,
        lambda resume: train_encoder(cfg, data_dir, encoder_dir, resume=resume, progress=progress),
    )
    lines.append(("trained" if encoder_trained else "reused") + f" encoder {encoder_dir}")
    evaluation = evaluate_encoder(encoder_dir, data_dir, progress=progress)
    write_json(encoder_dir / "encoder_eval.json", evaluation)
    lines.append(format_encoder_eval(evaluation))

    tokenizer_dir = run_dir / "tokenizer"
    tokenizer_trained = _train_stage(
        tokenizer_dir,
        cfg,
        TOKENIZER_SECTIONS,
        fresh,
        lambda resume: train_tokenizer(cfg, data_dir, tokenizer_dir, resume=resume, progress=progress),
    )
    tokenizer_summary = read_json(tokenizer_dir / "train_summary.json", "tokenizer summary")
    final = ", ".join(f"{k} {v:.3f}" for k, v in tokenizer_summary.get("final_val", {}).items())
    lines.append(("trained" if tokenizer_trained else "reused") + f" tokenizer {tokenizer_dir} (val: {final})")
    tokens = build_token_cache(data_dir, tokenizer_dir, progress=progress)
    lines.append(f"{'reused' if tokens.reused else 'computed'} stimulus tokens {tokens.path}")

    lines.append("still to come in the demo: " + ", ".join(PENDING_STAGES))
    lines.append(f"summary: {encoder_dir / 'encoder_eval.json'}")
    return DemoResult(run_dir, data_dir, simulated, encoder_trained, lines)
