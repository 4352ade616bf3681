"""The memory plan as text and as data: the fixed-width table `mindhier plan` prints, and its JSON record."""

from __future__ import annotations

import dataclasses

from mindhier.memory_plan.disk import total_disk_bytes
from mindhier.memory_plan.plan import GIB, RESERVE_FRACTION, MemoryPlan


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
    if plan.teacher is not None:
        lines += ["", _teacher_line(plan)]
    if plan.times:
        lines += [
            "",
            f"expected time (an estimate, not a measurement: counted training FLOPs ÷ ({plan.gpus} GPU(s) × "
            f"{plan.gpu_tflops:g} TFLOP/s × MFU {plan.mfu:g}), or bytes read ÷ {plan.read_gbps:g} GB/s, whichever "
            "is larger):",
            f"{'stage':<10} {'steps':>8} {'global batch':>12} {'training PFLOP':>15} {'teacher PFLOP':>14} "
            f"{'compute h':>9} {'read TB':>8} {'read h':>7} {'hours':>6} {'bound':>8} {'epoch GB':>9}",
        ]
        for stage, time in zip(plan.stages, plan.times, strict=True):
            lines.append(
                f"{time.stage:<10} {time.steps:>8} {stage.global_batch:>12} {time.training_flops / 1e15:>15.1f} "
                f"{time.teacher_flops / 1e15:>14.1f} {time.compute_hours:>9.2f} {time.read_bytes / 1e12:>8.2f} "
                f"{time.read_hours:>7.2f} {time.hours:>6.2f} {time.bound:>8} {time.working_set_bytes / 1e9:>9.2f}"
            )
        lines += [
            "- training FLOPs per sample = 3 × the forward's matmul, convolution and attention FLOPs (torch's flop "
            "counter on the meta device) + the teacher's forward when it runs in the step; elementwise ops and the "
            "optimiser not counted; diffusion steps 0 = matched to the generator's FLOPs",
            "- read: betas, cached targets or stimuli, tokens of every sample of every step; epoch GB = the distinct "
            "bytes one subject's epoch reads: a node whose RAM holds them serves later epochs from the page cache, "
            "and then reading binds only the first epoch",
        ]
    if plan.disk:
        lines += ["", _disk_table(plan)]
    return "\n".join(lines)


def _teacher_line(plan: MemoryPlan) -> str:
    t = plan.teacher
    mode = (
        "on the fly (teacher.cache=false): it runs in every encoder step"
        if plan.teacher_on_the_fly
        else "cached (teacher.cache=true): its features are read in every encoder step"
    )
    return (
        f"teacher {t.name}, {mode}; {t.parameters:,} parameters run, {t.forward_flops_per_image / 1e9:.1f} GFLOP "
        f"forward per image, inference peak ≈ {t.activation_bytes_per_image / 2**20:.1f} MiB per image (estimate); "
        f"its cache would hold {t.feature_bytes_per_image / 1e6:.2f} MB per image, a stimulus is "
        f"{t.image_bytes / 1e6:.2f} MB"
    )


def _disk_table(plan: MemoryPlan) -> str:
    lines = [
        f"disk per step of the recipe (an estimate from shapes; {plan.subjects} subject(s)):",
        f"{'step':<26} {'per':<22} {'GB':>8}  what",
    ]
    for row in plan.disk:
        lines.append(f"{row.step:<26} {row.per:<22} {row.bytes / 1e9:>8.2f}  {row.what}")
    total = total_disk_bytes(plan.disk, plan.subjects)
    lines.append(
        f"{'total':<26} {f'{plan.subjects} subject(s), 2 splits':<22} {total / 1e9:>8.2f}  optional rows left out"
    )
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
    for time, data in zip(plan.times, record["times"], strict=True):
        data["bound"] = time.bound
    record["disk_total_bytes"] = total_disk_bytes(plan.disk, plan.subjects)
    return record
