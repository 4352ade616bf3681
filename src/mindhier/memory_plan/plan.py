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
                      the tokenizer; Stage 1 holds the teacher only with `teacher.cache=false`, then 4 + 2 B per
                      parameter: its weights and autocast's bf16 copies, plus its inference peak per sample)
    targets           Stage 1 holds the teacher's targets of every sample in fp32, cached or not

Hours are the larger of two estimates: the training FLOPs (the teacher's forward included when it runs in the
step) at the assumed MFU, and the bytes the step reads (betas, cached targets or stimuli, tokens) at the node's
assumed read rate; which one binds is printed. Disk per step of the recipe: `disk.py`.

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
from mindhier.memory_plan.disk import (
    NSD_STIMULI_PER_SUBJECT,
    NSD_SUBJECTS,
    NSD_SUBJECTS_MAX,
    NSD_TRIALS_PER_SUBJECT,
    DiskRow,
    disk_rows,
)
from mindhier.memory_plan.stages import (
    BETA_BYTES,
    DEFAULT_VOXELS,
    TOKEN_BYTES,
    StageSpec,
    block_modules,
    count_parameters,
    stage_specs,
)
from mindhier.memory_plan.teacher_cost import TeacherCost, teacher_cost

DEFAULT_GPU_TFLOPS = 989.0  # H100 / H200 SXM, dense bf16
DEFAULT_MFU = 0.35  # a typical model-FLOPs utilisation of transformer training (not measured here)
DEFAULT_READ_GBPS = 2.0  # GB/s one node reads training data at (a local NVMe; a network file system is often less)
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
    read_bytes_per_sample: int = 0  # from disk, per sample of a step
    target_bytes_per_sample: int = 0  # the teacher's targets held in the step (float32)
    teacher_parameters: int = 0  # the teacher on the fly: its frozen weights on every GPU (else 0)
    teacher_activation_bytes_per_sample: int = 0  # its inference peak per sample (bf16; an estimate)
    teacher_flops_per_sample: int = 0  # its forward FLOPs per sample

    @property
    def training_flops_per_sample(self) -> int:
        """Forward + backward ≈ 3 × the forward's matmul/convolution/attention FLOPs (backward: two products each),
        plus the teacher's forward when it runs in the step."""
        return 3 * self.activations.forward_flops + self.teacher_flops_per_sample


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
    """The expected wall-clock time of one stage's training run: an estimate from counted FLOPs and bytes read,
    never measured."""

    stage: str
    steps: int
    training_flops: int  # steps × global batch × training FLOPs per sample (the teacher's forward included)
    hours: float  # the larger of compute_hours and read_hours
    teacher_flops: int = 0  # the teacher's share of training_flops (on the fly)
    compute_hours: float = 0.0  # training_flops / (GPUs × peak × MFU)
    read_bytes: int = 0  # steps × global batch × bytes read per sample
    read_hours: float = 0.0  # read_bytes / the node's read rate
    working_set_bytes: int = 0  # what one epoch reads: RAM to keep it in the page cache, or re-read from disk

    @property
    def bound(self) -> str:
        return "reading" if self.read_hours > self.compute_hours else "compute"


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
    teacher: TeacherCost | None = None
    teacher_on_the_fly: bool = False  # `teacher.cache=false`
    read_gbps: float = DEFAULT_READ_GBPS  # GB/s one node reads its training data at
    disk: tuple[DiskRow, ...] = ()
    subjects: int = NSD_SUBJECTS
    chosen: tuple[tuple[str, str, bool], ...] = ()  # (stage, strategy, checkpointing) the config trains with

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


def summarize_stage(spec: StageSpec, gpus: int, teacher: TeacherCost | None = None) -> StageSummary:
    """Parameter counts (trainable, per block, sharded, frozen) and activations of one sample; one meta build.
    `teacher`: the teacher's cost, counted in a stage that runs it on the fly."""
    runs_teacher = spec.teacher_on_the_fly and teacher is not None
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
        read_bytes_per_sample=spec.read_bytes_per_sample,
        target_bytes_per_sample=spec.target_bytes_per_sample,
        teacher_parameters=teacher.parameters if runs_teacher else 0,
        teacher_activation_bytes_per_sample=teacher.activation_bytes_per_image if runs_teacher else 0,
        teacher_flops_per_sample=teacher.forward_flops_per_image if runs_teacher else 0,
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
        # frozen models in fp32; a teacher on the fly also gets autocast's bf16 copies of its weights
        frozen = FP32 * stage.frozen_parameters + (FP32 + BF16) * stage.teacher_parameters
        fixed = params + grads + optim + transient + frozen
        for checkpointing in (False, True):
            per_sample = (
                stage.activations.bytes(checkpointing)
                + stage.target_bytes_per_sample
                + stage.teacher_activation_bytes_per_sample
            )
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


def stage_times(
    stages: tuple[StageSummary, ...],
    gpus: int,
    gpu_tflops: float,
    mfu: float,
    read_gbps: float = DEFAULT_READ_GBPS,
    working_sets: dict[str, int] | None = None,
) -> tuple[StageTime, ...]:
    """Expected hours of every stage: the larger of its training FLOPs at `mfu` of `gpus` × `gpu_tflops` and its
    bytes read at `read_gbps`. The diffusion baseline with `steps` 0 is matched to the generator's training FLOPs.
    `working_sets`: the distinct bytes a stage reads in one epoch (recorded, not used in the hours)."""
    rate = gpus * gpu_tflops * 1e12 * mfu  # FLOP/s
    flops = {s.name: s.steps * s.global_batch * s.training_flops_per_sample for s in stages}
    times = []
    for stage in stages:
        total = flops[stage.name] if stage.steps else flops.get("generator", 0)
        steps = stage.steps or round(total / max(1, stage.global_batch * stage.training_flops_per_sample))
        read = steps * stage.global_batch * stage.read_bytes_per_sample
        compute_hours, read_hours = total / rate / 3600, read / (read_gbps * 1e9) / 3600
        times.append(
            StageTime(
                stage=stage.name,
                steps=steps,
                training_flops=total,
                hours=max(compute_hours, read_hours),
                teacher_flops=steps * stage.global_batch * stage.teacher_flops_per_sample,
                compute_hours=compute_hours,
                read_bytes=read,
                read_hours=read_hours,
                working_set_bytes=(working_sets or {}).get(stage.name, 0),
            )
        )
    return tuple(times)


def plan_memory(
    cfg: MindhierConfig,
    gpus: int,
    gpu_memory_gib: float,
    voxels: int = DEFAULT_VOXELS,
    gpu_tflops: float = DEFAULT_GPU_TFLOPS,
    mfu: float = DEFAULT_MFU,
    read_gbps: float = DEFAULT_READ_GBPS,
    subjects: int = NSD_SUBJECTS,
) -> MemoryPlan:
    """Per-GPU memory of every trainable stage on `gpus` GPUs of `gpu_memory_gib` GiB each (see the module doc),
    each stage's expected hours at `mfu` of `gpu_tflops` peak TFLOP/s per GPU or at `read_gbps` GB/s of reading,
    whichever binds, and the disk each step of the recipe takes for `subjects` NSD subjects."""
    if gpus < 1:
        raise ConfigError(f"--gpus must be at least 1, got {gpus}; pass 1 or more")
    if not gpu_memory_gib > 0:
        raise ConfigError(f"--gpu-memory must be positive (GiB per GPU), got {gpu_memory_gib}; pass a positive size")
    if not gpu_tflops > 0 or not 0 < mfu <= 1:
        raise ConfigError(
            f"--gpu-tflops must be positive and --mfu in (0, 1], got {gpu_tflops} and {mfu};"
            " pass positive, finite values"
        )
    if not read_gbps > 0 or not 1 <= subjects <= NSD_SUBJECTS_MAX:
        raise ConfigError(
            f"--read-gbps must be positive and --subjects 1 to {NSD_SUBJECTS_MAX}, got {read_gbps} and {subjects};"
            " pass a positive rate and a subject count"
        )
    memory = int(gpu_memory_gib * GIB)
    reserve = int(memory * RESERVE_FRACTION)
    teacher = teacher_cost(cfg.teacher)
    stages, rows = [], []
    for spec in stage_specs(cfg, voxels):
        stages.append(summarize_stage(spec, gpus, teacher))
        rows += stage_rows(stages[-1], memory - reserve)
    # one subject's epoch reads its trials' betas and, for its stimuli, the targets or images (encoder), tokens
    betas = NSD_TRIALS_PER_SUBJECT * voxels * BETA_BYTES
    per_image = teacher.feature_bytes_per_image if cfg.teacher.cache else teacher.image_bytes
    n_tokens = sum(side * side for side in cfg.tokenizer.scales)
    epoch = {
        "encoder": betas + NSD_STIMULI_PER_SUBJECT * per_image,
        "generator": betas + NSD_STIMULI_PER_SUBJECT * n_tokens * TOKEN_BYTES,
        "diffusion": betas,
    }
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
        times=stage_times(tuple(stages), gpus, gpu_tflops, mfu, read_gbps, epoch),
        teacher=teacher,
        teacher_on_the_fly=not cfg.teacher.cache,
        read_gbps=read_gbps,
        disk=disk_rows(cfg, tuple(stages), teacher, voxels, subjects),
        subjects=subjects,
        chosen=tuple(
            (name, loop.strategy, loop.activation_checkpointing)
            for name, loop in (
                ("encoder", cfg.train_encoder),
                ("generator", cfg.train_generator),
                ("diffusion", cfg.train_diffusion),
            )
        ),
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
        "frozen models: fp32 (4 B per parameter), replicated; the encoder stage holds the teacher's targets (fp32) "
        "per sample, and with teacher.cache=false the teacher itself (fp32 + autocast's bf16 copies) and its "
        "inference peak (3 × its largest bf16 intermediate, an estimate)",
        "activations: saved-for-backward bytes of one sample, measured on the meta device with bf16 matmuls and "
        "fused attention; checkpointing = one checkpoint per block (outside + block inputs + one block recomputed)",
        "all terms are counted as held together (an upper estimate of the peak); micro = the largest per-GPU batch "
        "that fits, accum = ⌈global batch / (GPUs · micro)⌉",
    )
