"""Trained runs on disk: load a run folder's config and model for evaluation or later stages."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mindhier.checkpoint import config_differences, load_state_strict, load_weights, read_state_dict
from mindhier.config import MindhierConfig, TokenizerConfig, from_dict, nsd_paper, to_dict
from mindhier.errors import ConfigError
from mindhier.fileio import read_json
from mindhier.models.brain_encoder import BrainEncoder, EncoderShapes
from mindhier.models.tokenizer import Tokenizer


def resolve_input(run_dir: str | Path, stored: str) -> Path:
    """A path recorded in a run folder: relative to that folder (so run folders can move together)."""
    path = Path(stored)
    return path if path.is_absolute() else (Path(run_dir) / path).resolve()


def relative_input(run_dir: str | Path, path: str | Path) -> str:
    import os

    return os.path.relpath(Path(path).resolve(), Path(run_dir).resolve())


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


def load_tokenizer(
    path: str | Path, cfg: TokenizerConfig | None = None, expected: TokenizerConfig | None = None
) -> Tokenizer:
    """A tokenizer in eval mode, from a run folder or from a VQ-VAE weights file.

    A run folder brings its own config; `expected`, when given, must equal it (a checkpoint of another
    config is refused, naming the differing fields). A file (`.safetensors`, or a `.pth` state dict read
    with `weights_only=True`) is loaded strictly into `cfg` — by default the `nsd-paper` tokenizer, i.e.
    the VQ-VAE VAR and Switti publish (`vae_ch160v4096z32.pth`, `VQVAE-Switti/vqvae.safetensors`).
    """
    from mindhier.train.tokenizer import TOKENIZER_WEIGHTS

    p = Path(path)
    if p.is_dir():
        run_cfg = load_run_config(p).tokenizer
        if expected is not None and expected != run_cfg:
            differences = config_differences(to_dict(run_cfg), to_dict(expected), "tokenizer.")
            raise ConfigError(
                f"tokenizer {p} was trained with another config ({', '.join(differences[:5])}); "
                "use a matching run or retrain"
            )
        model = Tokenizer(run_cfg)
        load_weights(p / TOKENIZER_WEIGHTS, model)
    else:
        model = Tokenizer(cfg or nsd_paper().tokenizer)
        state = read_state_dict(p, "tokenizer weights")
        hits = "quantize.ema_vocab_hit_SV"
        if hits in state and state[hits].shape != model.quantize.ema_vocab_hit_SV.shape:
            # usage statistics for another scale list (VAR's 256-px checkpoint): not weights, keep ours
            state[hits] = model.quantize.ema_vocab_hit_SV.clone()
        load_state_strict(model, state, str(p))
    return model.eval()


@dataclass(frozen=True)
class GeneratorRunFiles:
    run_dir: Path
    cfg: MindhierConfig
    shapes: Any  # GeneratorShapes
    model: Any  # ScaleAR (or LatentDiT for the diffusion baseline), eval mode, CPU
    inputs: dict[str, Any]  # encoder run, tokenizer run, token cache, routing


def load_generator(run_dir: str | Path, routing: str | None = None) -> GeneratorRunFiles:
    """A trained generator; `routing`, when given, must be the one it was trained with."""
    from mindhier.models.scale_ar import GeneratorShapes, ScaleAR
    from mindhier.train.generator import GENERATOR_WEIGHTS, INPUTS_FILE, SHAPES_FILE

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"run folder not found: {run_dir}; train one with `mindhier train generator --out {run_dir}`")
    cfg = load_run_config(run_dir)
    if routing is not None and routing != cfg.generator.routing:
        raise ConfigError(
            f"generator {run_dir} was trained with routing {cfg.generator.routing}, not {routing}: routing is part "
            "of what a generator learns — train one with that routing"
        )
    shapes = GeneratorShapes.from_json(read_json(run_dir / SHAPES_FILE, "generator shapes"))
    model = ScaleAR(cfg.generator, shapes)
    load_weights(run_dir / GENERATOR_WEIGHTS, model)
    return GeneratorRunFiles(run_dir, cfg, shapes, model.eval(), read_json(run_dir / INPUTS_FILE, "generator inputs"))


@dataclass(frozen=True)
class InitReport:
    loaded: list[str]  # keys taken from the checkpoint
    new: list[str]  # our keys left at their fresh initialisation (absent or of another shape there)
    ignored: list[str]  # checkpoint keys we have no use for (text pooler, crop conditioning, buffers)


def load_generator_init(model, path: str | Path) -> InitReport:
    """Start a generator from a local Switti checkpoint the way the paper does: every key whose name and
    shape match is loaded; the modules MindHier adds (fMRI pooler, cross-attention key/value projections
    and context norms of another width) keep their fresh initialisation. Returns what was (not) loaded."""
    state = read_state_dict(path, "Switti checkpoint")
    ours = model.state_dict()
    loaded = sorted(k for k in ours if k in state and state[k].shape == ours[k].shape)
    new = sorted(set(ours) - set(loaded))
    ignored = sorted(k for k in state if k not in ours or state[k].shape != ours[k].shape)
    model.load_state_dict({k: state[k] for k in loaded}, strict=False)
    return InitReport(loaded, new, ignored)


def is_diffusion_run(run_dir: str | Path) -> bool:
    from mindhier.train.diffusion import SHAPES_FILE

    return (Path(run_dir) / SHAPES_FILE).is_file()


def load_diffusion(run_dir: str | Path) -> GeneratorRunFiles:
    """A trained diffusion baseline (best-on-val weights) with its config, shapes and inputs."""
    from mindhier.models.diffusion import DiffusionShapes, LatentDiT
    from mindhier.train.diffusion import DIFFUSION_WEIGHTS, INPUTS_FILE, SHAPES_FILE, resolved_model

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"run folder not found: {run_dir}; train one with `mindhier train diffusion --out {run_dir}`")
    cfg = load_run_config(run_dir)
    shapes = DiffusionShapes.from_json(read_json(run_dir / SHAPES_FILE, "diffusion shapes"))
    model = LatentDiT(resolved_model(run_dir), shapes)
    load_weights(run_dir / DIFFUSION_WEIGHTS, model)
    return GeneratorRunFiles(run_dir, cfg, shapes, model.eval(), read_json(run_dir / INPUTS_FILE, "diffusion inputs"))
