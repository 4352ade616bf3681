"""Stage 1: the hierarchical brain encoder, its alignment losses and its training (config sections `encoder`,
`alignment`, `train_encoder`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from mindhier.config.checks import check_range
from mindhier.config.loop import LoopConfig
from mindhier.errors import ConfigError

SUPERVISION_MODES = ("cascaded", "terminal_only", "single")
CALIBRATIONS = ("none", "moments")  # alignment.calibration (models/condition_calibration.py)
NAMED_MAPPING_LEVELS = 4  # every named layer mapping picks four layers


@dataclass(frozen=True)
class BrainEncoderConfig:
    """The hierarchical fMRI encoder (docs/method.md §3.1); the query count Q comes from the teacher's tokens.

    voxels → per-subject Linear(V_s → hidden[0]) → GELU → shared [Linear → GELU]… → Linear(→ X·D)
    → X latent tokens + position embedding → `depth` cascaded post-norm decoder layers over Q queries
    → levels e_1..e_M (M = depth) → token-wise heads to the teacher dims, and a projected terminal output.
    """

    hidden_dims: tuple[int, ...] = (512, 512)  # widths of the voxel MLP (the first is the per-subject layer's)
    latent_tokens: int = 16  # X: tokens the MLP output is split into (the decoder's memory)
    width: int = 64  # D: token width of the decoder and of every level e_m
    depth: int = 4  # M: cascaded decoder layers = levels, one per teacher layer
    heads: int = 4
    ffn_dim: int = 128
    # The paper uses 0.1 (nsd-paper keeps it). The demo default is 0: on 2 CPU cores drawing dropout masks
    # costs a third of a training step, and at the demo's size it did not change test retrieval (measured).
    dropout: float = 0.0
    text_queries: int = 0  # queries of the optional text branch (paper: 77); 0 = no text branch
    # a ridge low-level decoder voxels → a low_level_px² image, fitted after training (models/low_level.py); 0 = none
    low_level_px: int = 0

    def __post_init__(self) -> None:
        if not self.hidden_dims:
            raise ConfigError(
                "encoder.hidden_dims needs at least one width (the per-subject input layer);"
                " set encoder.hidden_dims, e.g. 256"
            )
        for width in self.hidden_dims:
            check_range("encoder.hidden_dims", width, 1, 1_000_000)
        check_range("encoder.latent_tokens", self.latent_tokens, 1, 4096)
        check_range("encoder.width", self.width, 4, 16384)
        check_range("encoder.depth", self.depth, 1, 64)
        check_range("encoder.heads", self.heads, 1, 256)
        if self.width % self.heads:
            raise ConfigError(
                f"encoder.width {self.width} must be divisible by encoder.heads {self.heads};"
                " choose a width that heads divides"
            )
        check_range("encoder.ffn_dim", self.ffn_dim, 1, 1_000_000)
        check_range("encoder.dropout", self.dropout, 0.0, 0.9)
        check_range("encoder.text_queries", self.text_queries, 0, 4096)
        check_range("encoder.low_level_px", self.low_level_px, 0, 256)


@dataclass(frozen=True)
class AlignmentConfig:
    """Hierarchy-to-hierarchy alignment (docs/method.md §3.3–4): which levels are supervised, and how.

    Each alignment term is ‖n(a) − n(b)‖² for L2-normalised flattened token sequences: the paper's MSE
    times the sequence's element count (its scale 2·10⁵ is that count for CLIP-L, 257·768 ≈ 197,376).
    """

    supervision: str = "cascaded"  # cascaded | terminal_only | single (see losses.py)
    mse_weight: float = 1.0
    softclip_weight: float = 1.0
    temperature: float = 0.005  # SoftCLIP τ (paper: 0.005)
    text_weight: float = 1.0  # weight of the text terms, when the teacher has a text side
    # none: the decoder reads the predicted levels as they are (the paper); moments: moment-matched per level and
    # channel to the teacher's features (models/condition_calibration.py), fitted on the val split after training
    calibration: str = "none"

    def __post_init__(self) -> None:
        if self.supervision not in SUPERVISION_MODES:
            raise ConfigError(
                f"alignment.supervision must be one of {', '.join(SUPERVISION_MODES)}, got {self.supervision!r};"
                " use one of those"
            )
        check_range("alignment.mse_weight", self.mse_weight, 0.0, 1e6)
        check_range("alignment.softclip_weight", self.softclip_weight, 0.0, 1e6)
        check_range("alignment.temperature", self.temperature, 1e-5, 10.0)
        check_range("alignment.text_weight", self.text_weight, 0.0, 1e6)
        if self.calibration not in CALIBRATIONS:
            raise ConfigError(
                f"alignment.calibration must be one of {', '.join(CALIBRATIONS)}, got {self.calibration!r};"
                " use one of those"
            )


@dataclass(frozen=True)
class EncoderTrainConfig(LoopConfig):
    """Stage-1 optimisation: AdamW + OneCycle over a fixed number of steps (docs/method.md §3.4)."""

    section: ClassVar[str] = "train_encoder"

    steps: int = 800  # optimizer steps; the OneCycle schedule spans them
    batch_size: int = 128  # global batch (split evenly across ranks)
    lr: float = 1e-3  # OneCycle peak learning rate
    weight_decay: float = 0.01  # on weight matrices; biases and norms are not decayed
    pct_start: float = 0.1  # share of steps spent warming up
    grad_clip: float = 1.0  # max global grad norm (0 = off)
    eval_every: int = 200  # steps between val evaluations (the best val checkpoint is kept)
    checkpoint_every: int = 400  # steps between resumable checkpoints
    seed: int = 0  # initialisation, batch order and dropout

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("train_encoder.steps", self.steps, 4, 10_000_000)  # OneCycle needs two steps per phase
        check_range("train_encoder.batch_size", self.batch_size, 2, 1_000_000)
        check_range("train_encoder.lr", self.lr, 1e-8, 1.0)
        check_range("train_encoder.weight_decay", self.weight_decay, 0.0, 10.0)
        check_range("train_encoder.pct_start", self.pct_start, 0.0, 0.99)
        check_range("train_encoder.grad_clip", self.grad_clip, 0.0, 1e6)
        check_range("train_encoder.eval_every", self.eval_every, 1, 10_000_000)
        check_range("train_encoder.checkpoint_every", self.checkpoint_every, 1, 10_000_000)
