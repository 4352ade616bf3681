"""Trained runs on disk: load a run folder's config and model for evaluation or later stages."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mindhier.checkpoint import load_weights
from mindhier.config import MindhierConfig, from_dict
from mindhier.errors import ConfigError
from mindhier.fileio import read_json
from mindhier.models.brain_encoder import BrainEncoder, EncoderShapes


def load_run_config(run_dir: str | Path) -> MindhierConfig:
    record = read_json(Path(run_dir) / "config.json", "run config")
    if "config" not in record:
        raise ConfigError(f"{Path(run_dir) / 'config.json'} is not a mindhier run config (no 'config' key)")
    return from_dict(MindhierConfig, record["config"])


@dataclass(frozen=True)
class EncoderRunFiles:
    run_dir: Path
    cfg: MindhierConfig
    shapes: EncoderShapes
    model: BrainEncoder  # eval mode, on the CPU
    features: dict[str, Any]  # where its teacher targets came from: path, key, teacher description


def load_encoder(run_dir: str | Path, weights: str = "encoder.safetensors") -> EncoderRunFiles:
    """A trained encoder (best-on-val weights by default) with its config and shapes."""
    from mindhier.train.encoder import FEATURES_FILE, SHAPES_FILE

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"run folder not found: {run_dir}; train one with `mindhier train encoder --out {run_dir}`")
    cfg = load_run_config(run_dir)
    shapes = EncoderShapes.from_json(read_json(run_dir / SHAPES_FILE, "encoder shapes"))
    model = BrainEncoder(cfg.encoder, shapes)
    load_weights(run_dir / weights, model)
    model.eval()
    return EncoderRunFiles(run_dir, cfg, shapes, model, read_json(run_dir / FEATURES_FILE, "feature-cache record"))
