"""The memory plan as text and as data: the fixed-width table `mindhier plan` prints, and its JSON record."""

from __future__ import annotations

import dataclasses

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
    if plan.times:
        lines += [
            "",
            f"expected time (an estimate, not a measurement: counted training FLOPs ÷ ({plan.gpus} GPU(s) × "
            f"{plan.gpu_tflops:g} TFLOP/s × MFU {plan.mfu:g})):",
            f"{'stage':<10} {'steps':>8} {'global batch':>12} {'training PFLOP':>15} {'hours':>8}",
        ]
        for stage, time in zip(plan.stages, plan.times, strict=True):
            lines.append(
                f"{time.stage:<10} {time.steps:>8} {stage.global_batch:>12} {time.training_flops / 1e15:>15.1f} "
                f"{time.hours:>8.1f}"
            )
        lines.append(
            "- training FLOPs per sample = 3 × the forward's matmul, convolution and attention FLOPs (torch's flop "
            "counter on the meta device); frozen models, elementwise ops and the optimiser not counted; diffusion "
            "steps 0 = matched to the generator's FLOPs"
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
    return record
