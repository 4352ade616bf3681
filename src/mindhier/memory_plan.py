"""Per-GPU training memory of every trainable stage under DDP and FSDP2, with and without activation checkpointing.

Nothing here is a hard-coded size: every model is built from the config on the meta device (shapes, no data),
its parameters are counted, and a forward pass on meta tensors measures the activations autograd keeps.

Per GPU, for P trainable parameters on N GPUs (bf16 autocast, AdamW with two fp32 states):

    DDP    parameters 4·P   gradients 4·P   optimizer 8·P          (fp32, replicated on every GPU)
           transient  2·P_mm                the bf16 copies autocast makes of every matmul weight (P_mm: the
                                            Linear/Conv parameters); it caches them for the whole forward pass
                    + 4·P  (N > 1 only)     DDP's gradient buckets: with `gradient_as_bucket_view=False`
                                            (PyTorch's default, which the trainers keep) every gradient is also
                                            copied into a flat fp32 bucket for the all-reduce
    FSDP2  parameters 4·P/N gradients 4·P/N optimizer 8·P/N        (`fully_shard` per transformer block and once
                                                                    at the root; fp32 master weights sharded along
                                                                    dim 0 and padded, so ⌈rows/N⌉ rows per GPU)
           transient  2·R + 2·2·B_max + 4·U_max
                    R: parameters outside the blocks (the root unit: its bf16 copy is kept from forward to backward)
                    B_max: the largest block (its bf16 parameters, twice: the block computing and the one prefetched)
                    U_max = max(R, B_max): the largest unit's unsharded fp32 gradients before the reduce-scatter
    frozen models     4 B per parameter, replicated (the generator and diffusion stages hold the Stage-1 encoder and
                      the tokenizer; Stage 1 holds nothing: the teacher's features are cached on disk)

On one GPU the trainers run the plain module whatever the strategy (`train/parallel.wrap_model`), so both rows
are DDP's without the buckets.

Activations are measured, for ONE sample, as the bytes of the tensors autograd saves for backward
(`torch.autograd.graph.saved_tensors_hooks`), each storage counted once, parameters and buffers not counted,
during a forward with the parameters in bf16 and the matmuls computed in bf16 as autocast would (`_MetaAutocast`;
attention as the fused kernel a GPU runs, which keeps q, k, v, the output and the log-sum-exp, not the weights).
With checkpointing on (one checkpoint per block), what stays is

    (saved outside the blocks) + (the inputs of every block, which checkpointing keeps) + (one block's saved
    tensors, recomputed during its backward: the largest block's)

and forward hooks on the blocks attribute every saved tensor to the block that saved it. Activations scale
linearly with the micro-batch b, so a stage fits when

    fixed + b · activations_per_sample ≤ usable = gpu_memory · (1 − RESERVE_FRACTION)

where the reserve covers the CUDA context, allocator fragmentation and the loss (logits, softmax), which are
not measured. Every term is counted as held at the same time: an upper estimate of the peak. The largest
fitting b is the micro-batch; reaching the config's global batch G then takes ⌈G / (N · b)⌉ accumulation steps.

Shape letters: B batch, V voxels, L tokens, c_v latent channels, h/w latent side, M levels, Q tokens per level,
Y level width, P pooled width.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from mindhier.config import MindhierConfig, TeacherConfig
from mindhier.errors import ConfigError
from mindhier.models.brain_encoder import BrainEncoder, EncoderShapes
from mindhier.models.diffusion import DiffusionShapes, LatentDiT, match_parameters
from mindhier.models.scale_ar import GeneratorShapes, ScaleAR
from mindhier.models.tokenizer import Tokenizer

DEFAULT_VOXELS = 15724  # NSD subject 1's nsdgeneral voxels
PLAN_SUBJECT = 1  # the encoder's input layer is built for this subject (only its voxel count matters)
RESERVE_FRACTION = 0.10  # of each GPU's memory: CUDA context, allocator fragmentation, the loss
STRATEGIES = ("ddp", "fsdp")
GIB = 2**30

# bytes per parameter
FP32, BF16 = 4, 2
ADAMW_STATES = 2 * FP32  # exp_avg and exp_avg_sq


# ------------------------------------------------------------------------------------------------- results


@dataclass(frozen=True)
class ActivationProfile:
    """Saved-for-backward bytes of one forward pass on `batch` samples."""

    batch: int
    saved_bytes: int  # everything autograd keeps (checkpointing off)
    outside_bytes: int  # saved outside the blocks
    block_input_bytes: int  # inputs of all blocks not already counted outside (kept under checkpointing)
    largest_block_bytes: int  # the largest one block saves (held again while that block is recomputed)
    blocks: int

    @property
    def checkpointed_bytes(self) -> int:
        return self.outside_bytes + self.block_input_bytes + self.largest_block_bytes

    def bytes(self, checkpointing: bool) -> int:
        return self.checkpointed_bytes if checkpointing else self.saved_bytes


@dataclass(frozen=True)
class StageSummary:
    """One trainable stage on `gpus` GPUs: what it trains, what it keeps frozen, its activations per sample."""

    name: str  # encoder | generator | diffusion
    title: str  # e.g. "Stage 1: brain encoder"
    model: str  # the trainable network and its size-defining settings
    parameters: int  # trainable
    matmul_parameters: int  # in Linear / Conv layers: the weights autocast copies to bf16
    outside_block_parameters: int  # R: the FSDP root unit
    largest_block_parameters: int  # B_max
    blocks: int
    gpus: int
    fsdp_shard_parameters: int  # elements of the largest rank's FSDP shard on `gpus` GPUs
    frozen_models: tuple[str, ...]
    frozen_parameters: int
    global_batch: int
    activations: ActivationProfile  # batch 1


@dataclass(frozen=True)
class PlanRow:
    """Per-GPU bytes of one stage under one strategy, and the micro-batch that fits."""

    stage: str
    strategy: str  # ddp | fsdp
    checkpointing: bool
    parameter_bytes: int
    gradient_bytes: int
    optimizer_bytes: int
    transient_bytes: int  # DDP: autocast copies + gradient buckets; FSDP: unsharded units
    frozen_bytes: int
    activation_bytes_per_sample: int
    micro_batch: int  # the largest per-GPU micro-batch that fits; 0 = does not fit
    accumulation_steps: int | None  # ⌈global / (N · micro)⌉; None when it does not fit

    @property
    def fixed_bytes(self) -> int:
        """Everything that does not grow with the micro-batch."""
        return (
            self.parameter_bytes + self.gradient_bytes + self.optimizer_bytes + self.transient_bytes + self.frozen_bytes
        )

    @property
    def fits(self) -> bool:
        return self.micro_batch > 0


@dataclass(frozen=True)
class MemoryPlan:
    preset: str
    gpus: int
    gpu_memory_bytes: int
    reserve_bytes: int
    voxels: int
    stages: tuple[StageSummary, ...]
    rows: tuple[PlanRow, ...]
    assumptions: tuple[str, ...]

    @property
    def usable_bytes(self) -> int:
        return self.gpu_memory_bytes - self.reserve_bytes

    def row(self, stage: str, strategy: str, checkpointing: bool) -> PlanRow:
        for row in self.rows:
            if (row.stage, row.strategy, row.checkpointing) == (stage, strategy, checkpointing):
                return row
        raise KeyError(f"no row for {stage}/{strategy}/checkpointing={checkpointing}")

    def stage(self, name: str) -> StageSummary:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise KeyError(f"no stage {name!r}")


# ------------------------------------------------------------------------------------------- teacher shapes


@dataclass(frozen=True)
class TeacherShapes:
    """The teacher sizes the encoder and the generator are built with (no weights needed)."""

    queries: int  # Q: tokens per level
    level_dims: tuple[int, ...]  # D_m, shallow → deep
    text_tokens: int  # 0 = no text side
    text_dim: int


def teacher_shapes(teacher: TeacherConfig) -> TeacherShapes:
    """Level and text shapes of the configured teacher, without its weights where that is possible.

    EfficientNet-Lite0 ships with the package, so its levels are read from the network itself. CLIP's are
    derived from the open_clip architecture config (a plain ViT: (image / patch)² + 1 tokens, each projected to
    `embed_dim`; text: `context_length` tokens of the text width); only ViT-L-14 is known without open_clip.
    """
    if teacher.name == "efficientnet-lite0":
        from mindhier.teachers import build_teacher

        levels = build_teacher(teacher).levels
        return TeacherShapes(levels[0].tokens, tuple(level.dim for level in levels), 0, 0)
    if teacher.name == "clip":
        return _clip_shapes(teacher)
    raise ConfigError(f"the memory plan knows no teacher {teacher.name!r}; use efficientnet-lite0 or clip")


# open_clip's ViT-L-14 config (model_configs/ViT-L-14.json), for machines without open_clip
_VIT_L_14 = {
    "embed_dim": 768,
    "vision_cfg": {"image_size": 224, "layers": 24, "width": 1024, "patch_size": 14},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 768, "heads": 12, "layers": 12},
}


def _open_clip_config(name: str) -> dict | None:
    """open_clip's architecture config `name`, read from its model_configs folder: importing open_clip takes
    seconds (it imports its CoCa and Hugging Face towers), and a config file is all the plan needs."""
    spec = importlib.util.find_spec("open_clip")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "model_configs" / f"{name}.json"
        if path.is_file():
            return json.loads(path.read_text())
    return _VIT_L_14 if name in ("ViT-L-14", "ViT-L-14-quickgelu") else None


def _clip_shapes(teacher: TeacherConfig) -> TeacherShapes:
    from mindhier.teachers.base import resolve_layers
    from mindhier.teachers.clip import mappings_for_depth

    model_cfg = (
        None if "/" in teacher.clip_model or ":" in teacher.clip_model else _open_clip_config(teacher.clip_model)
    )
    vision = (model_cfg or {}).get("vision_cfg", {})
    text = (model_cfg or {}).get("text_cfg", {})
    # CLIPTeacher reads all 1 + grid² tokens after ln_post and proj; other towers have no such layers
    plain_vit = all(isinstance(vision.get(key), int) for key in ("image_size", "patch_size", "layers", "width")) and (
        not any(vision.get(key) for key in _NOT_PLAIN_VIT)
    )
    text_ok = not teacher.text or (
        all(isinstance(text.get(key), int) for key in ("context_length", "width")) and not text.get("hf_model_name")
    )
    if model_cfg is None or not plain_vit or not text_ok:
        raise ConfigError(
            f"the memory plan cannot size teacher.clip_model={teacher.clip_model!r} without its weights; it knows "
            "open_clip's plain ViT architectures such as ViT-L-14"
        )
    layers = resolve_layers(teacher, vision["layers"], mappings_for_depth(vision["layers"]))
    grid = vision["image_size"] // vision["patch_size"]
    dim = int(model_cfg["embed_dim"])  # the visual projection's output
    text_tokens, text_dim = (text["context_length"], text["width"]) if teacher.text else (0, 0)
    return TeacherShapes(grid * grid + 1, (dim,) * len(layers), text_tokens, text_dim)


_NOT_PLAIN_VIT = ("timm_model_name", "attentional_pool")  # what `teachers/clip.py` refuses


# ------------------------------------------------------------------------------------------------- stages


@dataclass(frozen=True)
class StageSpec:
    """A trainable stage as the planner sees it: a meta-device model, its forward inputs, its blocks."""

    name: str
    title: str
    build: Callable[[], nn.Module]  # on the current default device (the planner calls it under meta)
    inputs: Callable[[int], tuple]  # batch → forward arguments (built under meta)
    describe: Callable[[nn.Module], str]
    frozen: tuple[tuple[str, Callable[[], nn.Module]], ...]
    global_batch: int


def block_modules(model: nn.Module) -> list[nn.Module]:
    """The transformer blocks each wrapped by `fully_shard` and by a checkpoint: every `blocks` and `text_blocks`."""
    blocks: list[nn.Module] = []
    for name in ("blocks", "text_blocks"):
        blocks += list(getattr(model, name, None) or [])
    return blocks


def stage_specs(cfg: MindhierConfig, voxels: int = DEFAULT_VOXELS) -> tuple[StageSpec, ...]:
    """Stage 1 (encoder), Stage 2 (generator) and the diffusion baseline, sized from the config."""
    if voxels < 1:
        raise ConfigError(f"--voxels must be at least 1, got {voxels}")
    teacher = teacher_shapes(cfg.teacher)
    if len(teacher.level_dims) != cfg.encoder.depth:
        raise ConfigError(
            f"teacher gives {len(teacher.level_dims)} levels for an encoder of depth {cfg.encoder.depth}; "
            "set teacher.layers to encoder.depth layers"
        )
    enc_shapes = EncoderShapes(
        subject_voxels=((PLAN_SUBJECT, voxels),),
        level_dims=teacher.level_dims,
        queries=teacher.queries,
        text_tokens=teacher.text_tokens,
        text_dim=teacher.text_dim,
    )
    tc = cfg.tokenizer
    gen_shapes = GeneratorShapes(
        vocab=tc.vocab,
        latent_channels=tc.latent_channels,
        scales=tuple(tc.scales),
        n_levels=cfg.encoder.depth,
        level_tokens=teacher.queries,
        context_width=cfg.encoder.width,
        pooled_width=teacher.level_dims[-1],
    )
    dif_shapes = DiffusionShapes(
        latent_channels=tc.latent_channels,
        latent_side=tc.scales[-1],
        level_tokens=teacher.queries,
        context_width=cfg.encoder.width,
        pooled_width=teacher.level_dims[-1],
    )
    dif_cfg = cfg.diffusion
    if dif_cfg.matched:  # as `train/diffusion.plan_budget` sizes it: to the generator's parameter count
        with torch.device("meta"):
            gen_params = _count(ScaleAR(cfg.generator, gen_shapes))
        dif_cfg = match_parameters(cfg.diffusion, dif_shapes, gen_params)

    def encoder() -> nn.Module:
        return BrainEncoder(cfg.encoder, enc_shapes)

    frozen = (("brain encoder", encoder), ("tokenizer", lambda: Tokenizer(tc)))
    Q, Y, P, M = teacher.queries, cfg.encoder.width, teacher.level_dims[-1], cfg.encoder.depth
    return (
        StageSpec(
            name="encoder",
            title="Stage 1: brain encoder",
            build=encoder,
            inputs=lambda b: ([(PLAN_SUBJECT, torch.randn(b, voxels))],),  # [(subject, voxels_BV)]
            describe=lambda m: (
                f"BrainEncoder {voxels} voxels → {'/'.join(map(str, cfg.encoder.hidden_dims))} → "
                f"{cfg.encoder.latent_tokens}×{Y}, {M} levels × {Q} queries"
                + (f", text {cfg.encoder.text_queries} queries" if m.has_text else "")
            ),
            frozen=(),
            global_batch=cfg.train_encoder.batch_size,
        ),
        StageSpec(
            name="generator",
            title="Stage 2: scale-wise generator",
            build=lambda: ScaleAR(cfg.generator, gen_shapes),
            inputs=lambda b: (
                torch.randn(b, gen_shapes.n_tokens - gen_shapes.scales[0] ** 2, tc.latent_channels),  # [B, L − 1, c_v]
                torch.randn(b, M, Q, Y),  # [B, M, Q, Y]
                torch.randn(b, P),  # [B, P]
            ),
            describe=lambda m: (
                f"ScaleAR depth {cfg.generator.depth} width {cfg.generator.width}, {gen_shapes.n_tokens} tokens"
            ),
            frozen=frozen,
            global_batch=cfg.train_generator.batch_size,
        ),
        StageSpec(
            name="diffusion",
            title="Baseline: latent diffusion",
            build=lambda: LatentDiT(dif_cfg, dif_shapes),
            inputs=lambda b: (
                torch.randn(b, tc.latent_channels, tc.scales[-1], tc.scales[-1]),  # [B, c_v, h, w]
                torch.zeros(b, dtype=torch.long),  # timesteps [B]
                torch.randn(b, Q, Y),  # terminal level [B, Q, Y]
                torch.randn(b, P),  # [B, P]
            ),
            describe=lambda m: (
                f"LatentDiT depth {dif_cfg.depth} width {dif_cfg.width}"
                + (" (matched to the generator)" if cfg.diffusion.matched else "")
                + f", {tc.scales[-1] ** 2} tokens"
            ),
            frozen=frozen,
            global_batch=cfg.train_diffusion.batch_size,
        ),
    )


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _matmul_parameters(model: nn.Module) -> int:
    layers = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
    return sum(_count(m) for m in model.modules() if isinstance(m, layers))


def fsdp_shard_elements(model: nn.Module, gpus: int) -> int:
    """Elements of the largest rank's shard: FSDP2 splits each parameter along dim 0, padded to N equal parts."""
    total = 0
    for p in model.parameters():
        if p.dim() == 0:
            total += 1
        else:
            total += math.ceil(p.shape[0] / gpus) * (p.numel() // p.shape[0])
    return total


# ------------------------------------------------------------------------------------------- activations


_LOWER_PRECISION = {
    F.linear,
    F.conv1d,
    F.conv2d,
    F.conv3d,
    F.scaled_dot_product_attention,
    torch.matmul,
    torch.mm,
    torch.bmm,
    torch.addmm,
    torch.baddbmm,
    torch.einsum,
    torch.Tensor.matmul,
    torch.Tensor.__matmul__,
}
_FULL_PRECISION = {F.layer_norm, F.group_norm, F.softmax, F.log_softmax}


class _MetaAutocast(TorchFunctionMode):
    """bf16 autocast for meta tensors (torch.autocast only acts on CPU/CUDA tensors): matmul-like ops get bf16
    inputs, normalisations and softmax fp32 inputs, as CUDA autocast casts them. Parameters and buffers are left
    alone: the planner has already made them bf16, so no weight copies appear among the activations."""

    def __init__(self, keep: set[int]):
        super().__init__()
        self.keep = keep

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.scaled_dot_product_attention:
            return self.fused_attention(*args, **kwargs)
        dtype = torch.bfloat16 if func in _LOWER_PRECISION else torch.float32 if func in _FULL_PRECISION else None
        if dtype is not None:

            def cast(x: Any) -> Any:
                if isinstance(x, torch.Tensor) and x.is_floating_point() and id(x) not in self.keep:
                    return x.to(dtype)
                return x

            args, kwargs = _map_tensors(cast, args), _map_tensors(cast, kwargs)
        return func(*args, **kwargs)

    def fused_attention(
        self, query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False
    ) -> torch.Tensor:
        """SDPA as the GPU runs it: a fused kernel that keeps q, k, v, the output and the log-sum-exp for backward.

        On meta, `F.scaled_dot_product_attention` takes the math path and materialises [B, H, l, S] attention
        weights, which a GPU never stores. The memory-efficient kernel (the one CUDA picks for a boolean mask;
        flash keeps the same tensors) saves what the GPU saves. Its additive mask is built from the boolean mask
        once per call, does not grow with the batch, and is not counted.
        """
        if enable_gqa:
            raise ValueError("the memory plan does not model grouped-query attention")
        q, k, v = (t.to(torch.bfloat16) for t in (query, key, value))
        bias = None
        if attn_mask is not None:
            bias = attn_mask
            if attn_mask.dtype == torch.bool:
                bias = torch.zeros(attn_mask.shape, dtype=q.dtype, device=q.device).masked_fill(
                    ~attn_mask, float("-inf")
                )
            self.keep.add(id(bias))
            bias = bias.expand(*q.shape[:-1], k.shape[-2])
        out = torch.ops.aten._scaled_dot_product_efficient_attention(
            q, k, v, bias, True, dropout_p, is_causal, scale=scale
        )
        return out[0]


def _map_tensors(fn: Callable[[torch.Tensor], Any], obj: Any) -> Any:
    """`fn` applied to every tensor in nested tuples, lists and dicts (the arguments of a torch function)."""
    if isinstance(obj, torch.Tensor):
        return fn(obj)
    if isinstance(obj, (list, tuple)):
        return type(obj)(_map_tensors(fn, item) for item in obj)
    if isinstance(obj, dict):
        return {key: _map_tensors(fn, item) for key, item in obj.items()}
    return obj


def _tensors(obj: Any) -> Iterator[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (list, tuple)):
        for item in obj:
            yield from _tensors(item)
    elif isinstance(obj, dict):
        for item in obj.values():
            yield from _tensors(item)


def measure_activations(model: nn.Module, args: tuple, blocks: list[nn.Module]) -> ActivationProfile:
    """Saved-for-backward bytes of `model(*args)`, a meta-device model in training mode with bf16 parameters.

    Every saved tensor is counted by the storage it views (its `_base`), once: q, k and v chunks of one
    projection keep that whole projection alive. Parameters, buffers and views of them are not activations.
    """
    keep = {id(t) for t in (*model.parameters(), *model.buffers())}
    seen: dict[int, torch.Tensor] = {}  # id of a counted storage base → the tensor (kept alive so ids stay unique)
    per_block = [0] * len(blocks)
    outside: set[int] = set()
    outside_bytes = 0
    block_inputs: dict[int, torch.Tensor] = {}
    active: list[int] = []  # the block now running (hooks push and pop)

    def base_of(t: torch.Tensor) -> torch.Tensor:
        return t._base if t._base is not None else t

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal outside_bytes
        base = base_of(t)
        key = id(base)
        if key in keep or key in seen:
            return t
        seen[key] = base
        size = base.numel() * base.element_size()
        if active:
            per_block[active[-1]] += size
        else:
            outside.add(key)
            outside_bytes += size
        return t

    def pre_hook(index: int):
        def hook(module, hook_args, hook_kwargs):
            for t in _tensors((hook_args, hook_kwargs)):
                base = base_of(t)
                if id(base) not in keep:
                    block_inputs.setdefault(id(base), base)
            active.append(index)

        return hook

    def post_hook(module, hook_args, output):
        active.pop()

    handles = []
    for i, block in enumerate(blocks):
        handles.append(block.register_forward_pre_hook(pre_hook(i), with_kwargs=True))
        handles.append(block.register_forward_hook(post_hook))
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), _MetaAutocast(keep):
            model(*args)
    finally:
        for handle in handles:
            handle.remove()
    batch = next(t for t in _tensors(args) if t.dim() > 0).shape[0]
    inputs = sum(t.numel() * t.element_size() for key, t in block_inputs.items() if key not in outside)
    return ActivationProfile(
        batch=batch,
        saved_bytes=outside_bytes + sum(per_block),
        outside_bytes=outside_bytes,
        block_input_bytes=inputs,
        largest_block_bytes=max(per_block, default=0),
        blocks=len(blocks),
    )


def stage_activations(spec: StageSpec, batch: int = 1) -> ActivationProfile:
    """`measure_activations` of one stage's trainable model on `batch` samples."""
    with torch.device("meta"):
        model = spec.build()
    return _activations(spec, model, batch)


def _activations(spec: StageSpec, model: nn.Module, batch: int) -> ActivationProfile:
    # bf16 parameters: what autocast computes with; training mode: dropout keeps its masks
    model = model.to(torch.bfloat16).train()
    with torch.device("meta"):
        args = spec.inputs(batch)
    return measure_activations(model, args, block_modules(model))


def summarize_stage(spec: StageSpec, gpus: int) -> StageSummary:
    """Parameter counts (trainable, per block, sharded, frozen) and activations of one sample; one meta build."""
    with torch.device("meta"):
        model = spec.build()
        frozen = [(name, _count(build())) for name, build in spec.frozen]
    blocks = block_modules(model)
    block_params = [_count(block) for block in blocks]
    parameters = _count(model)
    return StageSummary(
        name=spec.name,
        title=spec.title,
        model=spec.describe(model),
        parameters=parameters,
        matmul_parameters=_matmul_parameters(model),
        outside_block_parameters=parameters - sum(block_params),
        largest_block_parameters=max(block_params, default=0),
        blocks=len(blocks),
        gpus=gpus,
        fsdp_shard_parameters=fsdp_shard_elements(model, gpus),
        frozen_models=tuple(name for name, _ in frozen),
        frozen_parameters=sum(count for _, count in frozen),
        global_batch=spec.global_batch,
        activations=_activations(spec, model, 1),  # last: it casts the model to bf16
    )


# ---------------------------------------------------------------------------------------------------- plan


def _micro_batch(usable: int, fixed: int, per_sample: int) -> int:
    if per_sample <= 0:
        raise ValueError("a stage without activations cannot be planned")
    return max(0, (usable - fixed) // per_sample)


def stage_rows(stage: StageSummary, usable_bytes: int, strategies: tuple[str, ...] = STRATEGIES) -> list[PlanRow]:
    """One row per strategy × checkpointing off/on, on the stage's `gpus` GPUs with `usable_bytes` each."""
    gpus, shard_elements = stage.gpus, stage.fsdp_shard_parameters
    rows = []
    for strategy in strategies:
        if strategy not in STRATEGIES:
            raise ConfigError(f"unknown strategy {strategy!r}; choose from {', '.join(STRATEGIES)}")
        # one process trains the plain module whatever the strategy (`train/parallel.wrap_model`): no DDP
        # buckets, no shards, and autocast's weight copies as under DDP
        if strategy == "ddp" or gpus == 1:
            params, grads, optim = FP32 * stage.parameters, FP32 * stage.parameters, ADAMW_STATES * stage.parameters
            buckets = FP32 * stage.parameters if gpus > 1 else 0
            transient = BF16 * stage.matmul_parameters + buckets
        else:
            params, grads, optim = FP32 * shard_elements, FP32 * shard_elements, ADAMW_STATES * shard_elements
            largest_unit = max(stage.outside_block_parameters, stage.largest_block_parameters)
            transient = (
                BF16 * stage.outside_block_parameters + 2 * BF16 * stage.largest_block_parameters + FP32 * largest_unit
            )
        frozen = FP32 * stage.frozen_parameters
        fixed = params + grads + optim + transient + frozen
        for checkpointing in (False, True):
            per_sample = stage.activations.bytes(checkpointing)
            micro = _micro_batch(usable_bytes, fixed, per_sample)
            rows.append(
                PlanRow(
                    stage=stage.name,
                    strategy=strategy,
                    checkpointing=checkpointing,
                    parameter_bytes=params,
                    gradient_bytes=grads,
                    optimizer_bytes=optim,
                    transient_bytes=transient,
                    frozen_bytes=frozen,
                    activation_bytes_per_sample=per_sample,
                    micro_batch=micro,
                    accumulation_steps=math.ceil(stage.global_batch / (gpus * micro)) if micro else None,
                )
            )
    return rows


def plan_memory(cfg: MindhierConfig, gpus: int, gpu_memory_gib: float, voxels: int = DEFAULT_VOXELS) -> MemoryPlan:
    """Per-GPU memory of every trainable stage on `gpus` GPUs of `gpu_memory_gib` GiB each (see the module doc)."""
    if gpus < 1:
        raise ConfigError(f"--gpus must be at least 1, got {gpus}")
    if not gpu_memory_gib > 0:
        raise ConfigError(f"--gpu-memory must be positive (GiB per GPU), got {gpu_memory_gib}")
    memory = int(gpu_memory_gib * GIB)
    reserve = int(memory * RESERVE_FRACTION)
    stages, rows = [], []
    for spec in stage_specs(cfg, voxels):
        stages.append(summarize_stage(spec, gpus))
        rows += stage_rows(stages[-1], memory - reserve)
    return MemoryPlan(
        preset=cfg.preset,
        gpus=gpus,
        gpu_memory_bytes=memory,
        reserve_bytes=reserve,
        voxels=voxels,
        stages=tuple(stages),
        rows=tuple(rows),
        assumptions=_assumptions(gpus),
    )


def _assumptions(gpus: int) -> tuple[str, ...]:
    if gpus == 1:
        strategies: tuple[str, ...] = (
            "1 GPU: the trainers run the plain module whatever the strategy, so the ddp and fsdp rows agree: fp32 "
            "parameters 4 B + gradients 4 B + AdamW states 8 B per parameter; transient = autocast's bf16 copies "
            "of the Linear/Conv weights (2 B)",
        )
    else:
        strategies = (
            "DDP: bf16 autocast, fp32 parameters 4 B + gradients 4 B + AdamW states 8 B per parameter on every GPU; "
            "transient = autocast's bf16 copies of the Linear/Conv weights (2 B) + DDP's fp32 gradient buckets "
            "(4 B, gradient_as_bucket_view=False)",
            f"FSDP2: fully_shard per block and at the root, bf16 parameters, fp32 reduce; 16 B per parameter / {gpus} "
            "(dim-0 shards, padded); transient = root bf16 + 2 blocks bf16 (prefetch) + the largest unit's fp32 "
            "gradients",
        )
    return (
        f"reserve: {RESERVE_FRACTION:.0%} of each GPU for the CUDA context, allocator fragmentation and the loss "
        "(logits, softmax: not measured)",
        *strategies,
        "frozen models: fp32 (4 B per parameter), replicated; the encoder stage reads cached teacher features",
        "activations: saved-for-backward bytes of one sample, measured on the meta device with bf16 matmuls and "
        "fused attention; checkpointing = one checkpoint per block (outside + block inputs + one block recomputed)",
        "all terms are counted as held together (an upper estimate of the peak); micro = the largest per-GPU batch "
        "that fits, accum = ⌈global batch / (GPUs · micro)⌉",
    )


# -------------------------------------------------------------------------------------------------- output


def _gib(n: int) -> str:
    return f"{n / GIB:.2f}"


def format_plan(plan: MemoryPlan) -> str:
    """A fixed-width table of per-GPU memory (GiB; MiB when every entry is under 1 GiB), a line per stage above
    it and one per assumption below it."""
    largest = max((row.fixed_bytes for row in plan.rows), default=0)
    unit, scale = ("GiB", GIB) if largest >= GIB else ("MiB", 2**20)
    lines = [
        f"training memory plan: preset {plan.preset}, {plan.gpus} GPU(s) × {plan.gpu_memory_bytes / GIB:g} GiB; "
        f"usable {_gib(plan.usable_bytes)} GiB per GPU after a {_gib(plan.reserve_bytes)} GiB reserve "
        f"({RESERVE_FRACTION:.0%}); encoder input {plan.voxels} voxels",
        "",
    ]
    for stage in plan.stages:
        frozen = f"{', '.join(stage.frozen_models)} ({stage.frozen_parameters:,})" if stage.frozen_models else "nothing"
        lines.append(
            f"{stage.title}: {stage.model}; {stage.parameters:,} trainable parameters "
            f"({stage.blocks} block{'s' if stage.blocks != 1 else ''}); frozen: {frozen}; "
            f"global batch {stage.global_batch}"
        )
    header = (
        f"{'stage':<10} {'strategy':<8} {'ckpt':<4} {'params':>8} {'grads':>8} {'optim':>8} {'transient':>9} "
        f"{'frozen':>8} {'act/sample':>10} {'fixed':>8} {'micro':>12} {'accum':>5}"
    )
    lines += ["", f"per GPU, {unit}:", header, "-" * len(header)]
    for row in plan.rows:
        micro, accum = (str(row.micro_batch), str(row.accumulation_steps)) if row.fits else ("does not fit", "-")
        cells = (row.parameter_bytes, row.gradient_bytes, row.optimizer_bytes)
        lines.append(
            f"{row.stage:<10} {row.strategy:<8} {'on' if row.checkpointing else 'off':<4} "
            + " ".join(f"{n / scale:>8.2f}" for n in cells)
            + f" {row.transient_bytes / scale:>9.2f} {row.frozen_bytes / scale:>8.2f}"
            f" {row.activation_bytes_per_sample / scale:>10.3f} {row.fixed_bytes / scale:>8.2f} {micro:>12} {accum:>5}"
        )
    lines += ["", "assumptions:"] + [f"- {line}" for line in plan.assumptions]
    return "\n".join(lines)


def plan_record(plan: MemoryPlan) -> dict:
    """The plan as JSON-ready data: byte counts as integers, plus the derived totals."""
    record = dataclasses.asdict(plan)
    record["usable_bytes"] = plan.usable_bytes
    record["reserve_fraction"] = RESERVE_FRACTION
    for stage, data in zip(plan.stages, record["stages"], strict=True):
        data["activations"]["checkpointed_bytes"] = stage.activations.checkpointed_bytes
    for row, data in zip(plan.rows, record["rows"], strict=True):
        data["fixed_bytes"] = row.fixed_bytes
        data["fits"] = row.fits
    record["assumptions"] = list(plan.assumptions)
    return record
