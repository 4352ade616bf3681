"""Stage 2: the multi-scale tokenizer, the scale-wise generator, their training and the sampler (config
sections `tokenizer`, `train_tokenizer`, `generator`, `train_generator`, `sampler`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from mindhier.config.checks import check_range, check_schedule
from mindhier.config.loop import LoopConfig
from mindhier.errors import ConfigError


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
        check_range("tokenizer.image_px", self.image_px, 8, 4096)
        if not self.channel_mult or any(m < 1 for m in self.channel_mult):
            raise ConfigError("tokenizer.channel_mult needs positive multipliers, e.g. 1,2,2; use positive multipliers")
        factor = 2 ** (len(self.channel_mult) - 1)
        if self.image_px % factor or self.image_px // factor != self.scales[-1]:
            raise ConfigError(
                f"tokenizer.scales must end at the latent side image_px / {factor} = {self.image_px / factor:g}, "
                f"got {list(self.scales)}; make the last scale the latent side"
            )
        if list(self.scales) != sorted(set(self.scales)) or self.scales[0] < 1:
            raise ConfigError(
                f"tokenizer.scales must be strictly increasing sides, got {list(self.scales)};"
                " list increasing sides, e.g. 1,2,3,4"
            )
        for name in ("channels", "res_blocks", "norm_groups", "latent_channels", "phi_convs"):
            check_range(f"tokenizer.{name}", getattr(self, name), 1, 100_000)
        check_range("tokenizer.vocab", self.vocab, 2, 1_000_000)
        check_range("tokenizer.phi_ratio", self.phi_ratio, 0.0, 1.0)
        check_range("tokenizer.beta", self.beta, 0.0, 100.0)

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
        check_schedule("train_tokenizer", self.schedule)
        check_range("train_tokenizer.steps", self.steps, 0, 10_000_000)  # 0: the start weights (init) as they are
        if self.steps == 0 and not self.init:
            raise ConfigError(
                "train_tokenizer.steps=0 keeps the start weights: it needs train_tokenizer.init (e.g. prior);"
                " set train_tokenizer.init or steps >= 1"
            )
        check_range("train_tokenizer.batch_size", self.batch_size, 1, 100_000)
        check_range("train_tokenizer.lr", self.lr, 1e-8, 1.0)
        check_range("train_tokenizer.perceptual_blocks", self.perceptual_blocks, 1, 16)
        for name in ("eval_every", "checkpoint_every"):
            check_range(f"train_tokenizer.{name}", getattr(self, name), 1, 10_000_000)


CONDITIONS = ("brain", "teacher")  # what a generator is conditioned on: brain encoder levels | teacher levels
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
    # none: the context tokens are an unordered set (Switti; CLIP's patch tokens carry their place in their content);
    # rope: each level's grid tokens are rotated at their cell's place in the scale tokens' RoPE frame, the global
    # token unrotated, and the scale tokens' queries by theirs — a scale token attends by relative place (needs rope)
    context_positions: str = "none"
    # none: the condition enters through cross-attention (and the pooled vector) only, as in MindHier; add: the routed
    # levels' grids, resampled to each scale's side, are added to its tokens at their place (layers/condition_maps.py)
    context_maps: str = "none"
    norm_eps: float = 1e-6
    cfg_dropout: float = 0.1  # training: share of samples whose voxels are zeroed (the null condition)

    def __post_init__(self) -> None:
        check_range("generator.depth", self.depth, 1, 1000)
        check_range("generator.width", self.width, 4, 100_000)
        check_range("generator.heads", self.heads, 1, 1000)
        if self.width % self.heads or (self.width // self.heads) % 4:
            raise ConfigError(
                f"generator.width / generator.heads must be a whole number divisible by 4 (2-D RoPE), "
                f"got {self.width} / {self.heads}; choose width and heads to fit"
            )
        if self.routing not in ROUTING_MODES:
            raise ConfigError(
                f"generator.routing must be one of {', '.join(ROUTING_MODES)}, got {self.routing!r}; use one of those"
            )
        if self.positions not in ("rope", "learned"):
            raise ConfigError(
                f"generator.positions must be rope or learned, got {self.positions!r}; use rope or learned"
            )
        if self.context_positions not in ("none", "rope"):
            raise ConfigError(
                f"generator.context_positions must be none or rope, got {self.context_positions!r}; use none or rope"
            )
        if self.context_positions == "rope" and self.positions != "rope":
            raise ConfigError(
                "generator.context_positions=rope places the context in the scale tokens' RoPE frame; "
                "set generator.positions=rope too"
            )
        if self.context_maps not in ("none", "add"):
            raise ConfigError(f"generator.context_maps must be none or add, got {self.context_maps!r}; use none or add")
        check_range("generator.cfg_dropout", self.cfg_dropout, 0.0, 1.0)


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
        check_schedule("train_generator", self.schedule)
        bad = [r for r in self.routings if r not in ROUTING_MODES]
        if bad:
            raise ConfigError(
                f"train_generator.routings must name routings among {', '.join(ROUTING_MODES)}, got {bad};"
                " use only those"
            )
        if self.condition not in CONDITIONS:
            raise ConfigError(
                f"train_generator.condition must be one of {', '.join(CONDITIONS)}, got {self.condition!r};"
                " use one of those"
            )
        check_range("train_generator.steps", self.steps, 0, 10_000_000)  # 0: the start weights (init) as they are
        if self.steps == 0 and not self.init:
            raise ConfigError(
                "train_generator.steps=0 keeps the start weights: it needs train_generator.init;"
                " set train_generator.init (e.g. prior) or steps >= 1"
            )
        check_range("train_generator.batch_size", self.batch_size, 1, 1_000_000)
        check_range("train_generator.lr", self.lr, 1e-8, 1.0)
        for name in ("eval_every", "checkpoint_every"):
            check_range(f"train_generator.{name}", getattr(self, name), 1, 10_000_000)


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
    prune_from: int = 0  # 1-based scale from which the blocks see only the pivotal tokens (FastVAR; 0 = never)
    prune_keep: float = 1.0  # the fraction of tokens kept at those scales (the rest restored from the cache)
    # the first scales' tokens from the encoder's low-level image (encoder.low_level_px; models/low_level.py), the
    # rest sampled from the condition; 0 = every scale sampled (the paper)
    low_level_scales: int = 0

    def __post_init__(self) -> None:
        if self.precision not in ("fp32", "bf16"):
            raise ConfigError(f"sampler.precision must be fp32 or bf16, got {self.precision!r}; use fp32 or bf16")
        check_range("sampler.cfg_scale", self.cfg_scale, 0.0, 100.0)
        check_range("sampler.cfg_off_from", self.cfg_off_from, 0, 1000)
        check_range("sampler.top_k", self.top_k, 0, 1_000_000)
        check_range("sampler.top_p", self.top_p, 1e-6, 1.0)
        check_range("sampler.temperature", self.temperature, 1e-3, 100.0)
        check_range("sampler.samples", self.samples, 1, 1000)
        check_range("sampler.prune_keep", self.prune_keep, 1e-3, 1.0)
        check_range("sampler.low_level_scales", self.low_level_scales, 0, 1000)
        if self.prune_from == 1 or self.prune_from < 0:
            raise ConfigError(
                f"sampler.prune_from must be 0 (off) or a scale ≥ 2 (pruned tokens are restored from the previous "
                f"scale), got {self.prune_from}; set 0 or a scale of at least 2"
            )
