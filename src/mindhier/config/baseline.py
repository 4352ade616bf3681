"""The latent diffusion baseline, its training and its DDIM sampler (config sections `diffusion`,
`train_diffusion`, `ddim`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from mindhier.config.checks import check_range
from mindhier.config.loop import LoopConfig
from mindhier.errors import ConfigError

DECODE_MODES = ("quantized", "continuous")


@dataclass(frozen=True)
class DiffusionConfig:
    """The latent diffusion baseline (a DiT over the tokenizer's continuous latent, `models/diffusion.py`);
    latent size from the tokenizer, context width and terminal tokens from the encoder."""

    depth: int = 3  # transformer blocks
    width: int = 96  # D (the `matched` search replaces width, then depth)
    heads: int = 4
    mlp_ratio: float = 4.0  # MLP hidden = int(width · mlp_ratio)
    matched: bool = True  # size the backbone to the scale-wise generator's parameter count (within 5 %)
    timesteps: int = 1000  # T of the forward process
    beta_start: float = 1e-4  # linear β schedule (Ho et al. 2020, §4)
    beta_end: float = 0.02
    cfg_dropout: float = 0.1  # training: share of samples whose voxels are zeroed (the null condition)
    decode: str = "quantized"  # quantized: f → multi-scale quantizer → decoder (what the decoder was trained on)

    def __post_init__(self) -> None:
        check_range("diffusion.depth", self.depth, 1, 1000)
        check_range("diffusion.width", self.width, 4, 100_000)
        check_range("diffusion.heads", self.heads, 1, 1000)
        if self.width % self.heads or self.width % 4:
            raise ConfigError(
                f"diffusion.width must be divisible by diffusion.heads and by 4 (2-D sin-cos positions), "
                f"got {self.width} / {self.heads}; choose width and heads to fit"
            )
        check_range("diffusion.mlp_ratio", self.mlp_ratio, 0.25, 64.0)
        check_range("diffusion.timesteps", self.timesteps, 2, 100_000)
        if not 0 < self.beta_start < self.beta_end < 1:
            raise ConfigError(
                f"diffusion needs 0 < beta_start < beta_end < 1, got {self.beta_start} and {self.beta_end};"
                " set values that satisfy it"
            )
        check_range("diffusion.cfg_dropout", self.cfg_dropout, 0.0, 1.0)
        if self.decode not in DECODE_MODES:
            raise ConfigError(
                f"diffusion.decode must be one of {', '.join(DECODE_MODES)}, got {self.decode!r}; use one of those"
            )


@dataclass(frozen=True)
class DiffusionTrainConfig(LoopConfig):
    """Baseline optimisation: AdamW(0.9, 0.999), constant rate after warm-up, clipping; ε-prediction loss."""

    section: ClassVar[str] = "train_diffusion"

    # 0: as many steps as match the scale-wise generator's training FLOPs — none when the generator trains none
    # (train_generator.steps=0: both decoders' start weights as they are, which needs init)
    steps: int = 0
    match_generator_steps: int = 0  # the generator steps matched when steps=0 (0: train_generator.steps)
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 40
    grad_clip: float = 1.0
    eval_every: int = 200  # steps between val noise-prediction losses (best kept)
    checkpoint_every: int = 200
    seed: int = 0
    init: str = ""  # start weights: "" random, "prior" (the shipped diffusion prior), a diffusion run or weights file
    # brain: the frozen encoder's condition; teacher: the teacher's features of the seen images (the oracle row)
    condition: str = "brain"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("train_diffusion.steps", self.steps, 0, 10_000_000)
        check_range("train_diffusion.match_generator_steps", self.match_generator_steps, 0, 10_000_000)
        check_range("train_diffusion.batch_size", self.batch_size, 1, 1_000_000)
        check_range("train_diffusion.lr", self.lr, 1e-8, 1.0)
        if self.condition not in ("brain", "teacher"):
            raise ConfigError(
                f"train_diffusion.condition must be brain or teacher, got {self.condition!r}; use one of those"
            )
        for name in ("eval_every", "checkpoint_every"):
            check_range(f"train_diffusion.{name}", getattr(self, name), 1, 10_000_000)


@dataclass(frozen=True)
class DdimConfig:
    """DDIM sampling of the baseline (Song et al. 2021)."""

    steps: int = 50  # denoising steps, "trailing" spacing over the T training timesteps
    cfg_scale: float = 2.0  # ε = (1 + w)·ε_cond − w·ε_uncond (Ho & Salimans 2022), w constant over steps
    eta: float = 0.0  # 0: deterministic DDIM; 1: DDPM-like ancestral noise
    seed: int = 0
    precision: str = "fp32"  # fp32 | bf16: the denoiser under bf16 autocast, as `sampler.precision` for the generator

    def __post_init__(self) -> None:
        check_range("ddim.steps", self.steps, 1, 100_000)
        check_range("ddim.cfg_scale", self.cfg_scale, 0.0, 100.0)
        check_range("ddim.eta", self.eta, 0.0, 1.0)
        if self.precision not in ("fp32", "bf16"):
            raise ConfigError(f"ddim.precision must be fp32 or bf16, got {self.precision!r}; use fp32 or bf16")
