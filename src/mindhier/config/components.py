"""The component configs: one frozen, typed dataclass per component, composed into `MindhierConfig`.

Defaults are the `demo` sizes (2 CPU cores); a comment on every non-obvious field gives its unit or meaning.
Each dataclass checks its own values and raises `ConfigError` naming the field and the valid range.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from mindhier.errors import ConfigError

ROI_NAMES = ("V1", "V2", "V3", "hV4", "LO", "higher")
# seeds from here on belong to the package's own scene streams (the scene judge's, the priors' pretraining), so
# no simulated dataset ever shows one of their images
RESERVED_SEEDS = 1_000_000


@dataclass(frozen=True)
class StimulusConfig:
    """Which images the synthetic subject sees."""

    source: str = "scenes"  # "scenes" | "photos" | "folder:PATH"
    size: int = 64  # side of the square stimulus images, pixels

    def __post_init__(self) -> None:
        if not (self.source in ("scenes", "photos") or self.source.startswith("folder:")):
            raise ConfigError(f"stimuli.source must be scenes, photos or folder:PATH, got {self.source!r}")
        if self.source == "folder:":
            raise ConfigError("stimuli.source folder: needs a path, e.g. folder:/data/nsd_stimuli")
        _check_range("stimuli.size", self.size, 8, 4096)


@dataclass(frozen=True)
class SimulatorConfig:
    """The synthetic brain: a voxel-wise encoding model with an NSD-like design (docs/method.md §2.4)."""

    subjects: tuple[int, ...] = (1,)  # subject ids (1..99); each gets its own voxels and weights
    n_train: int = 4000  # unique training images, each shown once
    n_test: int = 100  # unique test images, each shown `test_repeats` times
    test_repeats: int = 3  # presentations of every test image (NSD: 3)
    session_trials: int = 750  # trials per scan session (NSD: 750); betas are z-scored per session
    voxels_min: int = 2000  # each subject's voxel count is drawn uniformly from [voxels_min, voxels_max]
    voxels_max: int = 4000
    roi_fractions: tuple[float, ...] = (0.20, 0.16, 0.14, 0.12, 0.12, 0.26)  # share of V1 V2 V3 hV4 LO higher
    ncsnr_min: float = 0.2  # per-voxel noise-ceiling SNR (signal sd / noise sd), drawn uniformly
    ncsnr_max: float = 1.0
    drift_sd: float = 0.3  # slow drift per session and voxel (offset + linear trend), in noise-sd units
    retina_px: int = 64  # images are resampled to this side before the early-visual filter bank
    feature_grid: int = 32  # receptive fields are evaluated on this grid of the visual field
    compressive_exponent: float = 0.5  # CSS nonlinearity of early and mid voxels: response = drive ** n
    semantic_px: int = 128  # input side of EfficientNet-Lite2 for the semantic voxels
    category_weight: float = 0.5  # share of semantic-voxel variance driven by object categories (scenes)
    image_store: str = "png"  # "png": images/image_000000.png ...; "hdf5": one float16 array like MindEye2
    seed: int = 0  # everything (stimuli, subjects, noise) follows from this seed

    def __post_init__(self) -> None:
        if not self.subjects:
            raise ConfigError("simulator.subjects must name at least one subject, e.g. 1 or 1,2")
        for s in self.subjects:
            _check_range("simulator.subjects", s, 1, 99)
        if len(set(self.subjects)) != len(self.subjects):
            raise ConfigError(f"simulator.subjects has duplicates: {list(self.subjects)}")
        _check_range("simulator.n_train", self.n_train, 1, 10_000_000)
        _check_range("simulator.n_test", self.n_test, 2, 1_000_000)
        _check_range("simulator.test_repeats", self.test_repeats, 1, 100)
        _check_range("simulator.session_trials", self.session_trials, 10, 100_000)
        _check_range("simulator.voxels_min", self.voxels_min, len(ROI_NAMES) * 4, 1_000_000)
        _check_range("simulator.voxels_max", self.voxels_max, self.voxels_min, 1_000_000)
        if len(self.roi_fractions) != len(ROI_NAMES) or any(f <= 0 for f in self.roi_fractions):
            raise ConfigError(
                f"simulator.roi_fractions needs {len(ROI_NAMES)} positive shares for {', '.join(ROI_NAMES)}"
            )
        if abs(sum(self.roi_fractions) - 1.0) > 1e-6:
            raise ConfigError(f"simulator.roi_fractions must sum to 1, got {sum(self.roi_fractions):.4f}")
        if not 0 < self.ncsnr_min <= self.ncsnr_max:
            raise ConfigError("simulator.ncsnr_min/ncsnr_max must satisfy 0 < ncsnr_min <= ncsnr_max")
        _check_range("simulator.drift_sd", self.drift_sd, 0.0, 100.0)
        _check_range("simulator.retina_px", self.retina_px, 16, 1024)
        _check_range("simulator.feature_grid", self.feature_grid, 4, self.retina_px)
        if self.retina_px % self.feature_grid:
            raise ConfigError("simulator.retina_px must be a multiple of simulator.feature_grid")
        _check_range("simulator.compressive_exponent", self.compressive_exponent, 0.05, 1.0)
        _check_range("simulator.semantic_px", self.semantic_px, 32, 1024)
        _check_range("simulator.category_weight", self.category_weight, 0.0, 1.0)
        if not 0 <= self.seed < RESERVED_SEEDS:
            raise ConfigError(
                f"simulator.seed must be in 0..{RESERVED_SEEDS - 1:,} (larger seeds are the package's own scene "
                f"streams: the scene judge's and the priors' pretraining), got {self.seed}"
            )
        if self.image_store not in ("png", "hdf5"):
            raise ConfigError(f"simulator.image_store must be png or hdf5, got {self.image_store!r}")


TEACHER_NAMES = ("efficientnet-lite0", "clip")
LAYER_MAPPINGS = ("balanced", "early", "late")


@dataclass(frozen=True)
class TeacherConfig:
    """The frozen vision network whose feature hierarchy the brain encoder is aligned to (docs/method.md §3.2).

    Layer ℓ is the output of block ℓ counted from 1 (CLIP: transformer block; EfficientNet: MBConv block).
    """

    name: str = "efficientnet-lite0"  # "efficientnet-lite0" (embedded, real weights) | "clip" (open_clip)
    mapping: str = "balanced"  # named layer mapping g_m: balanced | early | late (ignored when `layers` is set)
    layers: tuple[int, ...] = ()  # explicit 1-based layers, shallow to deep; the last is the terminal level
    grid: int = 4  # EfficientNet: every level pooled to grid×grid tokens plus one global token (Q = grid² + 1)
    input_px: int = 128  # EfficientNet input side (images are resized to it); CLIP uses its own preprocessing
    clip_model: str = "ViT-L-14"  # open_clip architecture name
    clip_weights: str = "openai"  # open_clip pretrained tag (resolved in the local cache) or a local weights file
    text: bool = False  # also compute caption features with CLIP's text tower (clip only)

    def __post_init__(self) -> None:
        if self.name not in TEACHER_NAMES:
            raise ConfigError(f"teacher.name must be one of {', '.join(TEACHER_NAMES)}, got {self.name!r}")
        if self.mapping not in LAYER_MAPPINGS:
            raise ConfigError(f"teacher.mapping must be one of {', '.join(LAYER_MAPPINGS)}, got {self.mapping!r}")
        if any(layer < 1 for layer in self.layers) or list(self.layers) != sorted(set(self.layers)):
            raise ConfigError(f"teacher.layers must be increasing 1-based layer numbers, got {list(self.layers)}")
        _check_range("teacher.grid", self.grid, 1, 64)
        _check_range("teacher.input_px", self.input_px, 32, 1024)
        if self.text and self.name != "clip":
            raise ConfigError("teacher.text needs teacher.name=clip (only CLIP has a text tower here)")


@dataclass(frozen=True)
class DataConfig:
    """How a dataset in the MindEye2 layout is split and averaged when read."""

    val_fraction: float = 0.05  # share of unique training images held out as `val`
    split_seed: int = 0  # seeds the choice of the `val` images
    test_repeats: int = 3  # test trials per image after MindEye2's duplication of missing repeats

    def __post_init__(self) -> None:
        _check_range("data.val_fraction", self.val_fraction, 0.0, 0.5)
        _check_range("data.test_repeats", self.test_repeats, 1, 100)


SUPERVISION_MODES = ("cascaded", "terminal_only", "single")
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

    def __post_init__(self) -> None:
        if not self.hidden_dims:
            raise ConfigError("encoder.hidden_dims needs at least one width (the per-subject input layer)")
        for width in self.hidden_dims:
            _check_range("encoder.hidden_dims", width, 1, 1_000_000)
        _check_range("encoder.latent_tokens", self.latent_tokens, 1, 4096)
        _check_range("encoder.width", self.width, 4, 16384)
        _check_range("encoder.depth", self.depth, 1, 64)
        _check_range("encoder.heads", self.heads, 1, 256)
        if self.width % self.heads:
            raise ConfigError(f"encoder.width {self.width} must be divisible by encoder.heads {self.heads}")
        _check_range("encoder.ffn_dim", self.ffn_dim, 1, 1_000_000)
        _check_range("encoder.dropout", self.dropout, 0.0, 0.9)
        _check_range("encoder.text_queries", self.text_queries, 0, 4096)


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

    def __post_init__(self) -> None:
        if self.supervision not in SUPERVISION_MODES:
            raise ConfigError(
                f"alignment.supervision must be one of {', '.join(SUPERVISION_MODES)}, got {self.supervision!r}"
            )
        _check_range("alignment.mse_weight", self.mse_weight, 0.0, 1e6)
        _check_range("alignment.softclip_weight", self.softclip_weight, 0.0, 1e6)
        _check_range("alignment.temperature", self.temperature, 1e-5, 10.0)
        _check_range("alignment.text_weight", self.text_weight, 0.0, 1e6)


STRATEGIES = ("ddp", "fsdp")
PRECISIONS = ("auto", "fp32", "bf16")
LOG_SINKS = ("tensorboard", "wandb")


@dataclass(frozen=True)
class LoopConfig:
    """How a training loop runs, shared by every stage (README "Many GPUs"): process wrapping, precision,
    activation checkpointing, gradient accumulation and extra log sinks. Nothing here changes the objective:
    N processes with the same global batch reproduce one process (within floating-point tolerance)."""

    section: ClassVar[str] = "train"  # the config section name, for messages
    strategy: str = "ddp"  # ddp (replicated) | fsdp (FSDP2 fully_shard per block; one process trains unsharded)
    precision: str = "auto"  # auto (bf16 autocast on CUDA, fp32 on CPU) | fp32 | bf16 (fp32 master weights)
    activation_checkpointing: bool = False  # recompute each block's activations in the backward pass
    micro_batch: int = 0  # rows per forward on one process (0 = its whole share); the rest is accumulated
    log_sinks: tuple[str, ...] = ()  # besides log.jsonl: tensorboard | wandb (optional extras)

    def __post_init__(self) -> None:
        where = self.section
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"{where}.strategy must be one of {', '.join(STRATEGIES)}, got {self.strategy!r}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"{where}.precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        _check_range(f"{where}.micro_batch", self.micro_batch, 0, 1_000_000)
        bad = [s for s in self.log_sinks if s not in LOG_SINKS]
        if bad:
            raise ConfigError(f"{where}.log_sinks must name sinks among {', '.join(LOG_SINKS)}, got {bad}")


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
        _check_range("train_encoder.steps", self.steps, 4, 10_000_000)  # OneCycle needs two steps per phase
        _check_range("train_encoder.batch_size", self.batch_size, 2, 1_000_000)
        _check_range("train_encoder.lr", self.lr, 1e-8, 1.0)
        _check_range("train_encoder.weight_decay", self.weight_decay, 0.0, 10.0)
        _check_range("train_encoder.pct_start", self.pct_start, 0.0, 0.99)
        _check_range("train_encoder.grad_clip", self.grad_clip, 0.0, 1e6)
        _check_range("train_encoder.eval_every", self.eval_every, 1, 10_000_000)
        _check_range("train_encoder.checkpoint_every", self.checkpoint_every, 1, 10_000_000)


@dataclass(frozen=True)
class TokenizerConfig:
    """The multi-scale residual VQ tokenizer (VAR's VQ-VAE, docs/method.md §5.1); images in [-1, 1]."""

    image_px: int = 32  # side of the images it encodes (stimuli are resized to it)
    channels: int = 24  # base width of the conv encoder/decoder
    channel_mult: tuple[int, ...] = (1, 2, 4)  # width multipliers per resolution; downsampling 2^(len − 1)
    res_blocks: int = 1  # residual blocks per resolution (the decoder has one more)
    attention: bool = False  # self-attention at the lowest resolution and in the middle (VAR: yes)
    norm_groups: int = 8  # GroupNorm groups (VAR: 32)
    latent_channels: int = 16  # C_vae: code dimension
    vocab: int = 512  # codebook size Z
    scales: tuple[int, ...] = (1, 2, 3, 4, 6, 8)  # token-map sides, coarse to fine; the last is the latent side
    phi_convs: int = 4  # φ convs shared across scales
    phi_ratio: float = 0.5  # φ(h) = (1 − ρ)·h + ρ·conv(h)
    beta: float = 0.25  # commitment weight

    def __post_init__(self) -> None:
        _check_range("tokenizer.image_px", self.image_px, 8, 4096)
        if not self.channel_mult or any(m < 1 for m in self.channel_mult):
            raise ConfigError("tokenizer.channel_mult needs positive multipliers, e.g. 1,2,2")
        factor = 2 ** (len(self.channel_mult) - 1)
        if self.image_px % factor or self.image_px // factor != self.scales[-1]:
            raise ConfigError(
                f"tokenizer.scales must end at the latent side image_px / {factor} = {self.image_px / factor:g}, "
                f"got {list(self.scales)}"
            )
        if list(self.scales) != sorted(set(self.scales)) or self.scales[0] < 1:
            raise ConfigError(f"tokenizer.scales must be strictly increasing sides, got {list(self.scales)}")
        for name in ("channels", "res_blocks", "norm_groups", "latent_channels", "phi_convs"):
            _check_range(f"tokenizer.{name}", getattr(self, name), 1, 100_000)
        _check_range("tokenizer.vocab", self.vocab, 2, 1_000_000)
        _check_range("tokenizer.phi_ratio", self.phi_ratio, 0.0, 1.0)
        _check_range("tokenizer.beta", self.beta, 0.0, 100.0)

    @property
    def downsample(self) -> int:
        return 2 ** (len(self.channel_mult) - 1)


@dataclass(frozen=True)
class TokenizerTrainConfig(LoopConfig):
    """Tokenizer optimisation: AdamW at a constant rate after a short warm-up."""

    section: ClassVar[str] = "train_tokenizer"

    steps: int = 600
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 0.0
    warmup_steps: int = 50
    l1_weight: float = 1.0  # |x − x̂| on [-1, 1] images
    l2_weight: float = 1.0  # (x − x̂)²
    perceptual_weight: float = 0.1  # distance of EfficientNet-Lite0's first blocks' features (0 = off)
    perceptual_blocks: int = 3  # Lite0 blocks used by the perceptual term, run at the images' native size
    vq_weight: float = 1.0
    dead_code_every: int = 50  # steps between dead-code restarts (0 = never)
    dead_code_threshold: float = 0.03  # EMA hits per step below which a code counts as dead
    grad_clip: float = 1.0
    eval_every: int = 300  # steps between val reconstructions (figure + metrics; best val kept)
    checkpoint_every: int = 300
    seed: int = 0
    schedule: str = "constant"  # after warm-up: constant | cosine (decays to a tenth at the last step)
    init: str = ""  # start from: "" (random) | prior (the pretrained embedded-world tokenizer) | a run or weights file

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_schedule("train_tokenizer", self.schedule)
        _check_range("train_tokenizer.steps", self.steps, 0, 10_000_000)  # 0: the start weights (init) as they are
        if self.steps == 0 and not self.init:
            raise ConfigError(
                "train_tokenizer.steps=0 keeps the start weights: it needs train_tokenizer.init (e.g. prior)"
            )
        _check_range("train_tokenizer.batch_size", self.batch_size, 1, 100_000)
        _check_range("train_tokenizer.lr", self.lr, 1e-8, 1.0)
        _check_range("train_tokenizer.perceptual_blocks", self.perceptual_blocks, 1, 16)
        for name in ("eval_every", "checkpoint_every"):
            _check_range(f"train_tokenizer.{name}", getattr(self, name), 1, 10_000_000)


ROUTING_MODES = ("coarse_to_fine", "fine_to_coarse", "all_levels", "static_terminal")


@dataclass(frozen=True)
class GeneratorConfig:
    """The scale-wise autoregressive generator (Switti-style, docs/method.md §5); vocabulary and scales come from
    the tokenizer, context width and levels from the encoder."""

    depth: int = 3  # transformer blocks
    width: int = 128  # D
    heads: int = 4  # head dim = width / heads (2-D RoPE needs it divisible by 4)
    ffn_mult: float = 8 / 3  # SwiGLU hidden = int(width · ffn_mult)
    routing: str = "coarse_to_fine"  # coarse_to_fine | fine_to_coarse | all_levels | static_terminal
    block_causal: bool = False  # self-attention across scales (False: within each scale, Switti's default)
    positions: str = "rope"  # rope (2-D axial) | learned (absolute embedding per token)
    rope_theta: float = 10_000.0
    rope_size: float = 128.0  # every scale's grid is stretched over [0, rope_size]
    norm_eps: float = 1e-6
    cfg_dropout: float = 0.1  # training: share of samples whose voxels are zeroed (the null condition)

    def __post_init__(self) -> None:
        _check_range("generator.depth", self.depth, 1, 1000)
        _check_range("generator.width", self.width, 4, 100_000)
        _check_range("generator.heads", self.heads, 1, 1000)
        if self.width % self.heads or (self.width // self.heads) % 4:
            raise ConfigError(
                f"generator.width / generator.heads must be a whole number divisible by 4 (2-D RoPE), "
                f"got {self.width} / {self.heads}"
            )
        if self.routing not in ROUTING_MODES:
            raise ConfigError(f"generator.routing must be one of {', '.join(ROUTING_MODES)}, got {self.routing!r}")
        if self.positions not in ("rope", "learned"):
            raise ConfigError(f"generator.positions must be rope or learned, got {self.positions!r}")
        _check_range("generator.cfg_dropout", self.cfg_dropout, 0.0, 1.0)


@dataclass(frozen=True)
class GeneratorTrainConfig(LoopConfig):
    """Stage-2 optimisation: AdamW(0.9, 0.95), constant rate after warm-up, clipping (docs/method.md §5.5)."""

    section: ClassVar[str] = "train_generator"

    steps: int = 250
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.0
    warmup_steps: int = 40
    grad_clip: float = 1.0
    eval_every: int = 125  # steps between val per-scale token accuracy (best val loss kept)
    checkpoint_every: int = 125
    seed: int = 0
    schedule: str = "constant"  # after warm-up: constant | cosine (decays to a tenth at the last step)
    condition: str = "brain"  # brain (frozen encoder) | teacher (the teacher's features of the seen image: oracle)
    init: str = ""  # start from: "" (random) | prior (the pretrained embedded-world generator) | a run or weights file
    routings: tuple[str, ...] = ()  # several: each step draws one (a prior for every routing); empty: generator.routing

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_schedule("train_generator", self.schedule)
        bad = [r for r in self.routings if r not in ROUTING_MODES]
        if bad:
            raise ConfigError(
                f"train_generator.routings must name routings among {', '.join(ROUTING_MODES)}, got {bad}"
            )
        if self.condition not in CONDITIONS:
            raise ConfigError(
                f"train_generator.condition must be one of {', '.join(CONDITIONS)}, got {self.condition!r}"
            )
        _check_range("train_generator.steps", self.steps, 1, 10_000_000)
        _check_range("train_generator.batch_size", self.batch_size, 1, 1_000_000)
        _check_range("train_generator.lr", self.lr, 1e-8, 1.0)
        for name in ("eval_every", "checkpoint_every"):
            _check_range(f"train_generator.{name}", getattr(self, name), 1, 10_000_000)


@dataclass(frozen=True)
class SamplerConfig:
    """Scale-by-scale sampling (docs/method.md §6.3)."""

    cfg_scale: float = 3.0  # guidance t_k = cfg_scale · (k − 1)/(K − 1): off at scale 1, full at scale K
    cfg_off_from: int = 0  # 1-based scale from which guidance is switched off (0 = never)
    top_k: int = 0  # keep the k most likely tokens (0 = all)
    top_p: float = 1.0  # nucleus: smallest set with this probability mass (1 = all)
    temperature: float = 1.0
    samples: int = 1  # S samples per brain input; the first is reported unless a brain-only rule selects
    seed: int = 0
    precision: str = "fp32"  # fp32 | bf16 (blocks under bf16 autocast; logits, filtering and draws in fp32)

    def __post_init__(self) -> None:
        if self.precision not in ("fp32", "bf16"):
            raise ConfigError(f"sampler.precision must be fp32 or bf16, got {self.precision!r}")
        _check_range("sampler.cfg_scale", self.cfg_scale, 0.0, 100.0)
        _check_range("sampler.cfg_off_from", self.cfg_off_from, 0, 1000)
        _check_range("sampler.top_k", self.top_k, 0, 1_000_000)
        _check_range("sampler.top_p", self.top_p, 1e-6, 1.0)
        _check_range("sampler.temperature", self.temperature, 1e-3, 100.0)
        _check_range("sampler.samples", self.samples, 1, 1000)


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
        _check_range("diffusion.depth", self.depth, 1, 1000)
        _check_range("diffusion.width", self.width, 4, 100_000)
        _check_range("diffusion.heads", self.heads, 1, 1000)
        if self.width % self.heads or self.width % 4:
            raise ConfigError(
                f"diffusion.width must be divisible by diffusion.heads and by 4 (2-D sin-cos positions), "
                f"got {self.width} / {self.heads}"
            )
        _check_range("diffusion.mlp_ratio", self.mlp_ratio, 0.25, 64.0)
        _check_range("diffusion.timesteps", self.timesteps, 2, 100_000)
        if not 0 < self.beta_start < self.beta_end < 1:
            raise ConfigError(
                f"diffusion needs 0 < beta_start < beta_end < 1, got {self.beta_start} and {self.beta_end}"
            )
        _check_range("diffusion.cfg_dropout", self.cfg_dropout, 0.0, 1.0)
        if self.decode not in DECODE_MODES:
            raise ConfigError(f"diffusion.decode must be one of {', '.join(DECODE_MODES)}, got {self.decode!r}")


@dataclass(frozen=True)
class DiffusionTrainConfig(LoopConfig):
    """Baseline optimisation: AdamW(0.9, 0.999), constant rate after warm-up, clipping; ε-prediction loss."""

    section: ClassVar[str] = "train_diffusion"

    steps: int = 0  # 0: as many steps as match the scale-wise generator's training FLOPs (train_generator)
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 40
    grad_clip: float = 1.0
    eval_every: int = 200  # steps between val noise-prediction losses (best kept)
    checkpoint_every: int = 200
    seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_range("train_diffusion.steps", self.steps, 0, 10_000_000)
        _check_range("train_diffusion.batch_size", self.batch_size, 1, 1_000_000)
        _check_range("train_diffusion.lr", self.lr, 1e-8, 1.0)
        for name in ("eval_every", "checkpoint_every"):
            _check_range(f"train_diffusion.{name}", getattr(self, name), 1, 10_000_000)


@dataclass(frozen=True)
class DdimConfig:
    """DDIM sampling of the baseline (Song et al. 2021)."""

    steps: int = 50  # denoising steps, "trailing" spacing over the T training timesteps
    cfg_scale: float = 2.0  # ε = (1 + w)·ε_cond − w·ε_uncond (Ho & Salimans 2022), w constant over steps
    eta: float = 0.0  # 0: deterministic DDIM; 1: DDPM-like ancestral noise
    seed: int = 0

    def __post_init__(self) -> None:
        _check_range("ddim.steps", self.steps, 1, 100_000)
        _check_range("ddim.cfg_scale", self.cfg_scale, 0.0, 100.0)
        _check_range("ddim.eta", self.eta, 0.0, 1.0)


@dataclass(frozen=True)
class DemoConfig:
    """What `mindhier demo` runs beyond the stage configs."""

    routings: tuple[str, ...] = ("coarse_to_fine", "static_terminal")  # one generator each, same budget
    seeds: tuple[int, ...] = ()  # several: generators, reconstructions and evaluations repeat per seed
    # brain: generators fine-tuned on brain data; teacher: also on the teacher's features of the seen images (oracle
    # conditioning, evaluated with the test images' features) — the routing study's two arms
    conditions: tuple[str, ...] = ("brain",)
    oracle_row: bool = True  # the first routing's brain generator also given the test images' teacher features
    consistency_samples: int = 4  # R samples of every brain input for the consistency measures (0 = none)
    tokenizer_steps_off_domain: int = 300  # fine-tuning steps of the tokenizer prior on stimuli that are not scenes

    def __post_init__(self) -> None:
        bad = [r for r in self.routings if r not in ROUTING_MODES]
        if not self.routings or bad:
            raise ConfigError(
                f"demo.routings must name routings among {', '.join(ROUTING_MODES)}, got {list(self.routings)}"
            )
        if not self.conditions or any(c not in ("brain", "teacher") for c in self.conditions):
            raise ConfigError(f"demo.conditions must name brain and/or teacher, got {list(self.conditions)}")
        if self.consistency_samples == 1 or not 0 <= self.consistency_samples <= 64:
            raise ConfigError(f"demo.consistency_samples must be 0 or 2..64, got {self.consistency_samples}")
        _check_range("demo.tokenizer_steps_off_domain", self.tokenizer_steps_off_domain, 1, 1_000_000)


@dataclass(frozen=True)
class MindhierConfig:
    """Everything a run needs, composed from the component configs."""

    preset: str = "demo"  # the preset this config started from (informational)
    stimuli: StimulusConfig = field(default_factory=StimulusConfig)
    simulator: SimulatorConfig = field(default_factory=SimulatorConfig)
    data: DataConfig = field(default_factory=DataConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    encoder: BrainEncoderConfig = field(default_factory=BrainEncoderConfig)
    alignment: AlignmentConfig = field(default_factory=AlignmentConfig)
    train_encoder: EncoderTrainConfig = field(default_factory=EncoderTrainConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    train_tokenizer: TokenizerTrainConfig = field(default_factory=TokenizerTrainConfig)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    train_generator: GeneratorTrainConfig = field(default_factory=GeneratorTrainConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    train_diffusion: DiffusionTrainConfig = field(default_factory=DiffusionTrainConfig)
    ddim: DdimConfig = field(default_factory=DdimConfig)
    demo: DemoConfig = field(default_factory=DemoConfig)

    def __post_init__(self) -> None:
        n_levels = len(self.teacher.layers) or NAMED_MAPPING_LEVELS
        if n_levels != self.encoder.depth:
            raise ConfigError(
                f"encoder.depth ({self.encoder.depth}) must equal the number of teacher layers ({n_levels}): "
                "one encoder level per teacher level"
            )


SCHEDULES = ("constant", "cosine")
CONDITIONS = ("brain", "teacher")


def _check_schedule(section: str, schedule: str) -> None:
    if schedule not in SCHEDULES:
        raise ConfigError(f"{section}.schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}")


def _check_range(name: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low} and {high}, got {value}")
