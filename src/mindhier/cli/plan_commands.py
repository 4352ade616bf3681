"""The `plan` subcommand: per-GPU training memory of every stage under DDP and FSDP, expected hours, the teacher's
cost and the disk of every step (`mindhier.memory_plan`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from mindhier.cli.options import add_config_options, bounded_int, positive_float, resolve_config
from mindhier.records import MAX_DIMENSION

DEFAULT_VOXELS = 15724  # NSD subject 1; kept equal to memory_plan.DEFAULT_VOXELS (a test checks)
# kept equal to memory_plan.plan's (a test checks): importing it here would load torch for every command
DEFAULT_GPU_TFLOPS = 989.0  # H100 / H200 SXM, dense bf16
DEFAULT_MFU = 0.35
DEFAULT_READ_GBPS = 2.0
DEFAULT_SUBJECTS = 4  # NSD subjects 1, 2, 5, 7


def add_plan_parser(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add `plan` to the `mindhier` subcommands (`commands`: the parser's `add_subparsers()` object)."""
    p = commands.add_parser(
        "plan",
        help="per-GPU training memory of every stage under DDP and FSDP, and the micro-batch that fits",
        description="Builds every trainable model on the meta device (no weights, no data) and prints, per stage, "
        "strategy and activation checkpointing, the per-GPU memory and the largest micro-batch that fits.",
    )
    p.add_argument(
        "--gpus",
        type=bounded_int(1, 1_000_000, "GPUs in one job"),
        required=True,
        metavar="N",
        help="GPUs the stage trains on",
    )
    p.add_argument(
        "--gpu-memory",
        type=positive_float(100_000, "GiB of one GPU"),
        required=True,
        metavar="GB",
        help="memory of one GPU, GiB",
    )
    p.add_argument(
        "--voxels",
        type=bounded_int(1, MAX_DIMENSION, "voxels of one subject"),
        default=DEFAULT_VOXELS,
        help=f"voxels of the encoder's subject (default {DEFAULT_VOXELS})",
    )
    p.add_argument(
        "--gpu-tflops",
        type=positive_float(1_000_000, "TFLOP/s of one GPU"),
        default=DEFAULT_GPU_TFLOPS,
        metavar="T",
        help=f"peak dense bf16 TFLOP/s of one GPU, for the expected hours (default {DEFAULT_GPU_TFLOPS:g}: H100/H200)",
    )
    p.add_argument(
        "--mfu",
        type=positive_float(1.0, "a utilisation"),
        default=DEFAULT_MFU,
        help=f"model-FLOPs utilisation assumed for the expected hours (default {DEFAULT_MFU:g})",
    )
    p.add_argument(
        "--read-gbps",
        type=positive_float(10_000, "GB/s of reading"),
        default=DEFAULT_READ_GBPS,
        metavar="R",
        help=f"GB/s one node reads training data at, for the expected hours (default {DEFAULT_READ_GBPS:g}: a local "
        "NVMe; network storage is often slower)",
    )
    p.add_argument(
        "--subjects",
        type=bounded_int(1, 8, "NSD subjects"),
        default=DEFAULT_SUBJECTS,
        help=f"NSD subjects the recipe trains, for the disk table (default {DEFAULT_SUBJECTS}: subjects 1, 2, 5, 7)",
    )
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the plan as JSON")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --json or --record file")
    p.add_argument(
        "--record",
        type=Path,
        metavar="FILE",
        help="also write the plan's headline figures as a result file (e.g. results/plan.json; README tables)",
    )
    # the planner is for paper-scale runs; the demo's models fit anywhere
    add_config_options(p, default_preset="nsd-paper")
    p.set_defaults(func=cmd_plan)
    return p


def cmd_plan(args: argparse.Namespace) -> int:
    from mindhier.cli.record import ResultRecorder
    from mindhier.fileio import refuse_existing, write_json
    from mindhier.memory_plan import format_plan, plan_memory, plan_record
    from mindhier.result_numbers import plan_numbers

    recorder = ResultRecorder(args, "plan")
    if args.json:
        refuse_existing(args.json, args.overwrite, "plan file")
    cfg = resolve_config(args)
    plan = plan_memory(
        cfg,
        args.gpus,
        args.gpu_memory,
        voxels=args.voxels,
        gpu_tflops=args.gpu_tflops,
        mfu=args.mfu,
        read_gbps=args.read_gbps,
        subjects=args.subjects,
    )
    print(format_plan(plan))
    if args.json:
        write_json(args.json, plan_record(plan))
        print(f"wrote {args.json}")
    written = recorder.finish(lambda: plan_numbers(plan_record(plan)))
    if written is not None:
        print(f"wrote {written}")
    return 0
