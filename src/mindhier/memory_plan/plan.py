"""The byte arithmetic of the memory plan: per-GPU bytes of every trainable stage under DDP and FSDP2, with and
without activation checkpointing, and the micro-batch that fits.

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

Activations come from `activations.py` (per sample, with and without checkpointing). They scale linearly with
the micro-batch b, so a stage fits when

    fixed + b · activations_per_sample ≤ usable = gpu_memory · (1 − RESERVE_FRACTION)

where the reserve covers the CUDA context, allocator fragmentation and the loss (logits, softmax), which are
not measured. Every term is counted as held at the same time: an upper estimate of the peak. The largest
fitting b is the micro-batch; reaching the config's global batch G then takes ⌈G / (N · b)⌉ accumulation steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from mindhier.config import MindhierConfig
from mindhier.errors import ConfigError
from mindhier.memory_plan.activations import ActivationProfile, model_activations
from mindhier.memory_plan.stages import DEFAULT_VOXELS, StageSpec, block_modules, count_parameters, stage_specs

DEFAULT_GPU_TFLOPS = 989.0  # H100 / H200 SXM, dense bf16
DEFAULT_MFU = 0.35  # a typical model-FLOPs utilisation of transformer training (not measured here)
RESERVE_FRACTION = 0.10  # of each GPU's memory: CUDA context, allocator fragmentation, the loss
STRATEGIES = ("ddp", "fsdp")
GIB = 2**30

# bytes per parameter
FP32, BF16 = 4, 2
ADAMW_STATES = 2 * FP32  # exp_avg and exp_avg_sq


# ------------------------------------------------------------------------------------------------- results


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
    steps: int  # 0: the diffusion baseline's steps are matched to the generator's training FLOPs
    activations: ActivationProfile  # batch 1

    @property
    def training_flops_per_sample(self) -> int:
        """Forward + backward ≈ 3 × the forward's matmul/convolution/attention FLOPs (backward: two products each)."""
        return 3 * self.activations.forward_flops


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
class StageTime:
    """The expected wall-clock time of one stage's training run: an estimate from counted FLOPs, never measured."""

    stage: str
    steps: int
    training_flops: int  # steps × global batch × training FLOPs per sample (frozen models and optimiser not counted)
    hours: float  # training_flops / (GPUs × peak × MFU)


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
    gpu_tflops: float = DEFAULT_GPU_TFLOPS  # peak dense bf16 TFLOP/s of one GPU
    mfu: float = DEFAULT_MFU  # the fraction of it training is assumed to reach
    times: tuple[StageTime, ...] = ()

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


# ------------------------------------------------------------------------------------------ parameter counts


def _matmul_parameters(model: nn.Module) -> int:
    layers = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
    return sum(count_parameters(m) for m in model.modules() if isinstance(m, layers))


def fsdp_shard_elements(model: nn.Module, gpus: int) -> int:
    """Elements of the largest rank's shard: FSDP2 splits each parameter along dim 0, padded to N equal parts."""
    total = 0
    for p in model.parameters():
        if p.dim() == 0:
            total += 1
        else:
            total += math.ceil(p.shape[0] / gpus) * (p.numel() // p.shape[0])
    return total


def summarize_stage(spec: StageSpec, gpus: int) -> StageSummary:
    """Parameter counts (trainable, per block, sharded, frozen) and activations of one sample; one meta build."""
    with torch.device("meta"):
        model = spec.build()
        frozen = [(name, count_parameters(build())) for name, build in spec.frozen]
    blocks = block_modules(model)
    block_params = [count_parameters(block) for block in blocks]
    parameters = count_parameters(model)
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
        steps=spec.steps,
        activations=model_activations(spec, model, 1),  # last: it casts the model to bf16
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


def stage_times(stages: tuple[StageSummary, ...], gpus: int, gpu_tflops: float, mfu: float) -> tuple[StageTime, ...]:
    """Expected hours of every stage: its training FLOPs at `mfu` of `gpus` × `gpu_tflops`. The diffusion
    baseline with `steps` 0 is matched to the generator's training FLOPs, so it takes the generator's time."""
    rate = gpus * gpu_tflops * 1e12 * mfu  # FLOP/s
    flops = {s.name: s.steps * s.global_batch * s.training_flops_per_sample for s in stages}
    times = []
    for stage in stages:
        total = flops[stage.name] if stage.steps else flops.get("generator", 0)
        steps = stage.steps or round(total / max(1, stage.global_batch * stage.training_flops_per_sample))
        times.append(StageTime(stage.name, steps, total, total / rate / 3600))
    return tuple(times)


def plan_memory(
    cfg: MindhierConfig,
    gpus: int,
    gpu_memory_gib: float,
    voxels: int = DEFAULT_VOXELS,
    gpu_tflops: float = DEFAULT_GPU_TFLOPS,
    mfu: float = DEFAULT_MFU,
) -> MemoryPlan:
    """Per-GPU memory of every trainable stage on `gpus` GPUs of `gpu_memory_gib` GiB each (see the module doc),
    and each stage's expected hours at `mfu` of `gpu_tflops` peak TFLOP/s per GPU."""
    if gpus < 1:
        raise ConfigError(f"--gpus must be at least 1, got {gpus}; pass 1 or more")
    if not gpu_memory_gib > 0:
        raise ConfigError(f"--gpu-memory must be positive (GiB per GPU), got {gpu_memory_gib}; pass a positive size")
    if not gpu_tflops > 0 or not 0 < mfu <= 1:
        raise ConfigError(
            f"--gpu-tflops must be positive and --mfu in (0, 1], got {gpu_tflops} and {mfu};"
            " pass positive, finite values"
        )
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
        gpu_tflops=gpu_tflops,
        mfu=mfu,
        times=stage_times(tuple(stages), gpus, gpu_tflops, mfu),
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
