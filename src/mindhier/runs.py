"""Trained runs on disk: load a run folder's config and model for evaluation, sampling or later stages.

Every loader checks the run's kind (`config.json`, `run_layout`), loads its weights strictly, and returns
the model in eval mode on the `device` asked for. File names come from `run_layout` only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mindhier import run_layout
from mindhier.checkpoint import config_differences, load_state_strict, load_weights, read_state_dict
from mindhier.config import MindhierConfig, TokenizerConfig, from_dict, to_dict
from mindhier.errors import ConfigError, WeightsError
from mindhier.fileio import read_json
from mindhier.models.brain_encoder import BrainEncoder, EncoderShapes
from mindhier.models.condition_calibration import ConditionCalibration, load_calibration
from mindhier.models.low_level import LowLevelDecoder, load_low_level
from mindhier.models.tokenizer import Tokenizer
from mindhier.records import parse_record
from mindhier.run_layout import load_run_config
from mindhier.tokenizer_source import TokenizerSource, tokenizer_source


@dataclass(frozen=True)
class EncoderRunFiles:
    run_dir: Path
    cfg: MindhierConfig
    shapes: EncoderShapes
    model: BrainEncoder  # eval mode, on the device asked for
    features: dict[str, Any]  # where its teacher targets came from: path, key, teacher description
    calibration: ConditionCalibration | None = None  # alignment.calibration=moments: its fitted statistics
    low_level: LowLevelDecoder | None = None  # encoder.low_level_px > 0: its ridge voxels → image decoder


def load_encoder(
    run_dir: str | Path, weights: str | None = None, device: str | torch.device = "cpu"
) -> EncoderRunFiles:
    """A trained encoder (best-on-val weights unless `weights` names another file) with its config and shapes."""
    run_dir = Path(run_dir)
    run_layout.expect_kind(run_dir, "encoder")
    cfg = load_run_config(run_dir)
    shapes = parse_record(run_dir / run_layout.shapes_file("encoder"), "encoder shapes", EncoderShapes.from_json)
    model = BrainEncoder(cfg.encoder, shapes)
    load_weights(run_dir / (weights or run_layout.weights_file("encoder")), model)
    model.to(device).eval()
    features = read_json(run_dir / run_layout.FEATURES, "feature-cache record")
    calibration = None
    if cfg.alignment.calibration != "none":
        path = _fitted_file(
            run_dir, run_layout.CONDITION_CALIBRATION, f"alignment.calibration={cfg.alignment.calibration}"
        )
        calibration = load_calibration(path)
        dims = shapes.level_dims
        expected = (dims[-1],) * len(dims) if cfg.alignment.supervision == "single" else dims
        if calibration.level_dims != expected or set(calibration.predicted) != set(shapes.voxels):
            raise ConfigError(f"{path} does not match the encoder's levels and subjects; retrain the encoder")
    low_level = None
    if cfg.encoder.low_level_px:
        low_level = load_low_level(
            _fitted_file(run_dir, run_layout.LOW_LEVEL, f"encoder.low_level_px={cfg.encoder.low_level_px}")
        )
        if low_level.px != cfg.encoder.low_level_px or set(low_level.subjects) != set(shapes.voxels):
            raise ConfigError(f"{path} does not match the encoder's config and subjects; retrain the encoder")
    return EncoderRunFiles(run_dir, cfg, shapes, model, features, calibration, low_level)


def _fitted_file(run_dir: Path, name: str, setting: str) -> Path:
    """A file an encoder run fits after training when its config asks for it (`train/calibrate.py`,
    `train/low_level_fit.py`); written before the run's summary, so only an older or interrupted run lacks it."""
    path = run_dir / name
    if not path.exists():
        raise ConfigError(
            f"the encoder run {run_dir} has {setting} but no {name} (an older or interrupted run); retrain it, or "
            "resume it with --resume"
        )
    return path


def load_tokenizer(
    path: str | Path | TokenizerSource,
    cfg: TokenizerConfig | None = None,
    expected: TokenizerConfig | None = None,
    device: str | torch.device = "cpu",
) -> Tokenizer:
    """A tokenizer in eval mode, from a run folder, a VQ-VAE weights file or a fetched one by name
    (`mindhier.tokenizer_source`).

    A run folder brings its own config; `expected`, when given, must equal it (a checkpoint of another
    config is refused, naming the differing fields). A file (`.safetensors`, or a `.pth` state dict read
    with `weights_only=True`) is loaded strictly into `cfg` — by default the `nsd-paper` tokenizer, i.e.
    the VQ-VAE VAR and Switti publish (`vae_ch160v4096z32.pth`, `VQVAE-Switti/model.safetensors`).
    """
    source = path if isinstance(path, TokenizerSource) else tokenizer_source(path, cfg)
    if source.run_dir is not None:
        if expected is not None and expected != source.cfg:
            differences = config_differences(to_dict(source.cfg), to_dict(expected), "tokenizer.")
            raise ConfigError(
                f"tokenizer {source.run_dir} was trained with another config ({', '.join(differences[:5])}); "
                "use a matching run or retrain"
            )
        model = Tokenizer(source.cfg)
        load_weights(source.weights, model)
    else:
        model = Tokenizer(source.cfg)
        state = read_state_dict(source.weights, "tokenizer weights")
        hits = "quantize.ema_vocab_hit_SV"
        if hits in state and state[hits].shape != model.quantize.ema_vocab_hit_SV.shape:
            # usage statistics for another scale list (VAR's 256-px checkpoint): not weights, keep ours
            state[hits] = model.quantize.ema_vocab_hit_SV.clone()
        load_state_strict(model, state, str(source.weights))
    return model.to(device).eval()


@dataclass(frozen=True)
class GeneratorRunFiles:
    run_dir: Path
    cfg: MindhierConfig
    shapes: Any  # GeneratorShapes
    model: Any  # ScaleAR (or LatentDiT for the diffusion baseline), eval mode, on the device asked for
    inputs: dict[str, Any]  # encoder run, tokenizer run, token cache, routing


def load_generator(
    run_dir: str | Path, routing: str | None = None, device: str | torch.device = "cpu", weights: str | None = None
) -> GeneratorRunFiles:
    """A trained generator; `routing`, when given, must be the one it was trained with."""
    from mindhier.models.scale_ar import GeneratorShapes, ScaleAR

    run_dir = Path(run_dir)
    run_layout.expect_kind(run_dir, "generator")
    cfg = load_run_config(run_dir)
    if routing is not None and routing != cfg.generator.routing:
        raise ConfigError(
            f"generator {run_dir} was trained with routing {cfg.generator.routing}, not {routing} (routing is part "
            "of what a generator learns); train one with that routing"
        )
    shapes = parse_record(run_dir / run_layout.shapes_file("generator"), "generator shapes", GeneratorShapes.from_json)
    model = ScaleAR(cfg.generator, shapes)
    load_weights(run_dir / (weights or run_layout.weights_file("generator")), model)
    inputs = read_json(run_dir / run_layout.INPUTS, "generator inputs")
    return GeneratorRunFiles(run_dir, cfg, shapes, model.to(device).eval(), inputs)


@dataclass(frozen=True)
class InitReport:
    loaded: list[str]  # keys taken from the checkpoint
    new: list[str]  # our keys left at their fresh initialisation (the modules MindHier adds, where they differ)
    ignored: list[str]  # checkpoint keys we have no use for (text pooler, crop conditioning, buffers)

    def record(self) -> dict[str, int]:
        return {"loaded": len(self.loaded), "new": len(self.new), "ignored": len(self.ignored)}


def load_generator_init(model, path: str | Path | dict[str, torch.Tensor], source: str = "") -> InitReport:
    """Start a generator from a Switti checkpoint the way the paper does: every key of ours is taken from it,
    except that the modules MindHier adds (`SWITTI_NEW_MODULES`: fMRI pooler, cross-attention key/value
    projections and context norms of another width) keep their fresh initialisation where the checkpoint has
    none of their shape. Any other key missing or of another shape means the checkpoint is not a Switti of
    this size: refused, naming the key. Returns what was (not) loaded. `path`: a file, or its tensors."""
    from mindhier.models.scale_ar import SWITTI_NEW_MODULES

    source = source or str(path)
    state = path if isinstance(path, dict) else read_state_dict(path, "Switti checkpoint")
    ours = model.state_dict()
    fits = {k for k in ours if k in state and state[k].shape == ours[k].shape}
    added = {k for k in ours if any(part in k for part in SWITTI_NEW_MODULES)}
    wrong = sorted(k for k in set(ours) - fits - added if k in state)
    absent = sorted(k for k in set(ours) - fits - added if k not in state)
    if wrong:
        key = wrong[0]
        more = f" (and {len(wrong) - 1} more)" if len(wrong) > 1 else ""
        raise WeightsError(
            f"Switti checkpoint {source} does not fit this generator: {key} is {list(state[key].shape)} there and "
            f"{list(ours[key].shape)} here{more}; use a checkpoint of this size (nsd-paper: Switti-512) or no --init"
        )
    if absent:
        more = f" (and {len(absent) - 1} more)" if len(absent) > 1 else ""
        raise WeightsError(
            f"Switti checkpoint {source} lacks {absent[0]}{more}; it is not a Switti generator checkpoint"
        )
    loaded = sorted(fits)
    model.load_state_dict({k: state[k] for k in loaded}, strict=False)
    return InitReport(loaded, sorted(set(ours) - fits), sorted(k for k in state if k not in fits))


def is_diffusion_run(run_dir: str | Path) -> bool:
    return run_layout.run_kind(run_dir) == "diffusion"


def load_diffusion(
    run_dir: str | Path, device: str | torch.device = "cpu", weights: str | None = None
) -> GeneratorRunFiles:
    """A trained diffusion baseline (best-on-val weights) with its config, shapes and inputs."""
    from mindhier.models.diffusion import DiffusionShapes, LatentDiT

    run_dir = Path(run_dir)
    run_layout.expect_kind(run_dir, "diffusion")
    cfg = load_run_config(run_dir)
    shapes = parse_record(run_dir / run_layout.shapes_file("diffusion"), "diffusion shapes", DiffusionShapes.from_json)
    backbone = from_dict(type(cfg.diffusion), read_json(run_dir / run_layout.DIFFUSION_MODEL, "diffusion model"))
    model = LatentDiT(backbone, shapes)
    load_weights(run_dir / (weights or run_layout.weights_file("diffusion")), model)
    inputs = read_json(run_dir / run_layout.INPUTS, "diffusion inputs")
    return GeneratorRunFiles(run_dir, cfg, shapes, model.to(device).eval(), inputs)


def load_decoder(run_dir: str | Path, device: str | torch.device = "cpu") -> GeneratorRunFiles:
    """The Stage-2 decoder of a run folder, whichever kind it is (generator or diffusion baseline)."""
    kind = run_layout.run_kind(run_dir)
    if kind == "generator":
        return load_generator(run_dir, device=device)
    if kind == "diffusion":
        return load_diffusion(run_dir, device=device)
    raise ConfigError(f"{run_dir} is a {kind} run, not a generator or diffusion run; pass a Stage-2 run folder")
